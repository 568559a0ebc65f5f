"""The apt tasks' guard: plugins/filter/packages.py."""

from __future__ import annotations

import importlib.util
import re

import yaml

from ops import REPO_ROOT

_spec = importlib.util.spec_from_file_location(
    "course_ops_filter_packages", REPO_ROOT / "plugins" / "filter" / "packages.py")
assert _spec is not None and _spec.loader is not None
packages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(packages)

FACTS = {"course_ops_packages": "munge\nslurmd"}


def test_installed_packages_are_not_missing() -> None:
    assert packages.missing_packages(["munge", "slurmd"], FACTS) == []
    assert packages.missing_packages("munge", FACTS) == []


def test_a_package_not_installed_is_missing() -> None:
    assert packages.missing_packages(["munge", "slurm-client"], FACTS) == ["slurm-client"]
    assert packages.missing_packages("podman", FACTS) == ["podman"]


def test_a_version_or_an_architecture_is_left_to_apt() -> None:
    assert packages.missing_packages(["munge=0.5.15", "slurmd:amd64"], FACTS) == [
        "munge=0.5.15", "slurmd:amd64"]


def test_without_package_facts_every_package_is_missing() -> None:
    assert packages.missing_packages(["munge"], {}) == ["munge"]
    assert packages.missing_packages(["munge"], None) == ["munge"]
    assert packages.missing_packages("munge", {"packages": "?"}) == ["munge"]


def test_the_names_dpkg_packages_sets_are_read_as_installed() -> None:
    facts = {"course_ops_packages": "munge\nslurmd\n"}
    assert packages.missing_packages(["munge", "slurmd", "slurm-client"], facts) == [
        "slurm-client"]
    # an empty system: every package is missing, not "unknown"
    assert packages.missing_packages("munge", {"course_ops_packages": ""}) == ["munge"]
    # package_facts' mapping is not what the roles read: with it alone, nothing is known
    mapping = {"packages": {"munge": [{"version": "0.5.15"}]}}
    assert packages.missing_packages(["munge"], mapping) == ["munge"]


_mspec = importlib.util.spec_from_file_location(
    "course_ops_module_dpkg_packages", REPO_ROOT / "plugins" / "modules" / "dpkg_packages.py")
assert _mspec is not None and _mspec.loader is not None
dpkg_packages = importlib.util.module_from_spec(_mspec)
_mspec.loader.exec_module(dpkg_packages)


def test_dpkg_packages_lists_only_what_dpkg_calls_installed() -> None:
    """dpkg-query's lines (status, name): a package removed with its configuration kept
    or half-installed is not installed, so its apt task runs and puts it back."""
    out = ("installed munge\n"
           "config-files unattended-upgrades\n"
           "installed slurmd\n"
           "half-installed podman\n"
           "not-installed curl\n"
           "installed munge\n"  # multi-arch: one name
           "\n")
    assert dpkg_packages.installed(out) == "munge\nslurmd"
    names = {"course_ops_packages": dpkg_packages.installed(out)}
    assert packages.missing_packages(["munge", "unattended-upgrades", "podman"], names) == [
        "unattended-upgrades", "podman"]


def test_dpkg_packages_asks_dpkg_for_the_status_and_the_name() -> None:
    assert dpkg_packages.FORMAT == r"${db:Status-Status} ${Package}\n"


def test_the_filter_is_registered_under_its_name() -> None:
    assert packages.FilterModule().filters() == {"missing_packages": packages.missing_packages}


def _tasks(node: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(node, list):
        for item in node:
            found += _tasks(item)
    elif isinstance(node, dict):
        if "ansible.builtin.apt" in node:
            found.append(node)
        for key in ("block", "rescue", "always"):
            found += _tasks(node.get(key))
    return found


def test_every_apt_install_of_the_roles_is_guarded_by_what_it_installs() -> None:
    """An apt task that installs is skipped only when its own packages are installed: its
    guard names the same packages (or the same variable) as its ``name``."""
    seen = 0
    for path in sorted((REPO_ROOT / "roles").glob("*/tasks/*.yml")):
        for task in _tasks(yaml.safe_load(path.read_text())):
            apt = task["ansible.builtin.apt"]
            assert isinstance(apt, dict)
            if apt.get("state", "present") != "present" or "name" not in apt:
                continue
            seen += 1
            when = task.get("when")
            conditions = when if isinstance(when, list) else [when]
            guard = next((c for c in conditions if "missing_packages" in str(c)), None)
            assert guard is not None, f"{path}: {task['name']} has no missing_packages guard"
            name = str(apt["name"])
            m = re.fullmatch(r"\{\{ (\w+) \}\}", name)
            subject = m.group(1) if m else repr(name)
            assert str(guard).startswith(f"{subject} |"), (path, task["name"], guard)
    assert seen >= 18
