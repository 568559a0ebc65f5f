"""`ops verify`: the specs split into pytest sessions by host, each spec on its own hosts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ops import REPO_ROOT
from ops.verify import SPECS, pytest_argv


def test_one_session_gives_each_spec_its_own_targets() -> None:
    targets = {"common": "local://,ssh://ctl", "gpu_servers": "ssh://gpu1"}
    p = subprocess.run(
        [sys.executable, "-m", "pytest", str(SPECS / "test_common.py"),
         str(SPECS / "test_gpu_servers.py"), f"--ops-targets={json.dumps(targets)}",
         "--collect-only", "-q", "-p", "no:cacheprovider", "-o", "addopts="],
        capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    ids = [ln for ln in p.stdout.splitlines() if "::" in ln]

    def hosts(spec: str) -> set[str]:  # the target in an id: [local], [ssh://ctl-chrony]
        return {next(h for h in ("local", "ssh://ctl", "ssh://gpu1") if f"[{h}" in ln)
                for ln in ids if f"test_{spec}.py" in ln}

    assert hosts("common") == {"local", "ssh://ctl"}
    assert hosts("gpu_servers") == {"ssh://gpu1"}


def test_a_spec_without_targets_is_a_usage_error() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "pytest", str(SPECS / "test_common.py"),
         '--ops-targets={"gpu": "local://"}', "--collect-only", "-q", "-p",
         "no:cacheprovider", "-o", "addopts="],
        capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert p.returncode != 0 and "--ops-targets names no targets for common" in p.stderr + \
        p.stdout


def test_argv_is_one_session_for_every_spec(tmp_path: Path) -> None:
    argv = pytest_argv(tmp_path, ["common", "gpu"], {"common": "ansible://all",
                                                     "gpu": "ansible://gpu_servers"},
                       tmp_path / "j.xml", None, 0, tmp_path / "ssh_config")
    assert [a for a in argv if a.endswith(".py")] == [str(SPECS / "test_common.py"),
                                                      str(SPECS / "test_gpu.py")]
    assert not [a for a in argv if a.startswith("--hosts")]
    given = next(a for a in argv if a.startswith("--ops-targets="))
    assert json.loads(given.split("=", 1)[1]) == {"common": "ansible://all",
                                                   "gpu": "ansible://gpu_servers"}


def test_every_check_names_its_host_even_when_skipped(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from ops import report

    junit = tmp_path / "gpu.xml"
    p = subprocess.run(
        [sys.executable, "-m", "pytest", str(SPECS / "test_gpu.py"), "--hosts=local://",
         f"--junit-xml={junit}", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "--expect-gpus=0"], capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert junit.is_file(), p.stdout + p.stderr
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert cases and any(c.find("skipped") is not None for c in cases)
    assert {report.host_of(c) for c in cases} == {"local"}


HOSTS = """\
all:
  children:
    slurm_controller:
      hosts:
        ctl: {ansible_host: 127.0.0.1, ansible_port: 2201}
    registry:
      hosts:
        ctl:
    gpu_servers:
      hosts:
        gpu1: {ansible_host: 127.0.0.1, ansible_port: 2202}
        gpu2: {ansible_host: 127.0.0.1, ansible_port: 2203}
        gpu3: {ansible_host: 127.0.0.1, ansible_port: 2204}
"""


def _inventory(tmp_path: Path):  # noqa: ANN202
    from ops import inventory

    (tmp_path / "hosts.yml").write_text(HOSTS)
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("accounts_roster: r.csv\n")
    return inventory.load(tmp_path)


def test_sessions_check_each_host_once_each_spec_on_its_own_hosts(tmp_path: Path) -> None:
    from ops.verify import hostless_elsewhere, sessions

    inv = _inventory(tmp_path)
    specs = ["common", "gpu", "slurm", "registry", "hub"]
    split = sessions(inv, specs)
    # one session per host, in inventory order; a spec only where it has hosts
    assert split == [
        {"common": "ansible://ctl", "slurm": "ansible://ctl", "registry": "ansible://ctl",
         "hub": "ansible://ctl"},  # the hub falls back to the controller
        {"common": "ansible://gpu1", "gpu": "ansible://gpu1", "slurm": "ansible://gpu1"},
        {"common": "ansible://gpu2", "gpu": "ansible://gpu2", "slurm": "ansible://gpu2"},
        {"common": "ansible://gpu3", "gpu": "ansible://gpu3", "slurm": "ansible://gpu3"},
    ]
    # the host-less checks of a spec run in its first session only
    assert hostless_elsewhere(split) == [[], ["common", "slurm"], ["common", "gpu", "slurm"],
                                         ["common", "gpu", "slurm"]]
    # fewer sessions than hosts: each takes several, every host still in exactly one
    two = sessions(inv, specs, limit=2)
    assert [t["common"] for t in two] == ["ansible://ctl,ansible://gpu2",
                                          "ansible://gpu1,ansible://gpu3"]
    assert two[0]["gpu"] == "ansible://gpu2" and "registry" not in two[1]


def test_a_hostless_check_runs_in_one_session_only(tmp_path: Path) -> None:
    """--ops-hostless-elsewhere deselects the spec's checks that run on no host (the
    registry's, seen from here) and keeps its checks of a host."""
    def collected(*extra: str) -> list[str]:
        p = subprocess.run(
            [sys.executable, "-m", "pytest", str(SPECS / "test_registry.py"),
             "--hosts=local://", "--collect-only", "-q", "-p", "no:cacheprovider",
             "-o", "addopts=", *extra],
            capture_output=True, text=True, cwd=REPO_ROOT, check=False)
        assert p.returncode == 0, p.stdout + p.stderr
        return [ln for ln in p.stdout.splitlines() if "::" in ln]

    every = collected()
    hostless = [t for t in every if "[local" not in t]
    assert hostless and len(hostless) < len(every)
    assert collected("--ops-hostless-elsewhere=registry") == [
        t for t in every if t not in hostless]
    assert collected("--ops-hostless-elsewhere=gpu") == every


def test_several_sessions_exit_with_the_gravest_code(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    from ops.verify import _run_sessions

    def session(code: int, said: str) -> list[str]:
        return [sys.executable, "-c", f"print({said!r}); raise SystemExit({code})"]

    assert _run_sessions([session(0, "a"), session(0, "b")]) == 0
    assert capsys.readouterr().out == "a\nb\n"  # each session's output whole, in order
    assert _run_sessions([session(0, "a"), session(1, "b"), session(4, "c")]) == 4
    assert _run_sessions([session(1, "a"), session(5, "b")]) == 1
    assert _run_sessions([session(0, "a"), session(5, "b")]) == 0
    assert _run_sessions([session(5, "a"), session(5, "b")]) == 5
