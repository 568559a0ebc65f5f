"""The lab tests: a lab of their own (not the developer's), brought up once per module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ops import REPO_ROOT

#: The lab tests' lab; OPS_TEST_LAB names another, so two checkouts can test side by side
#: on one Docker engine.
LAB_NAME = os.environ.get("OPS_TEST_LAB", "course-ops-test")


def ops(inv: Path, *args: str, check: bool = True, timeout: int = 900,
        **kw: object) -> subprocess.CompletedProcess[str]:
    """Run the real CLI, as a user would."""
    p = subprocess.run([sys.executable, "-m", "ops", "-i", str(inv), *args],
                       capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
                       **kw)  # type: ignore[call-overload]
    if check and p.returncode != 0:
        raise AssertionError(f"ops {' '.join(args)} exited {p.returncode}\n"
                             f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}")
    return p


def verify_with_faults(inv: Path, area: str, junit: Path, *args: str) -> set[str]:
    """`ops verify AREA` on a lab with faults made by the test: it must fail; the names of
    the checks that failed (or errored), for the test to compare with its faults."""
    import xml.etree.ElementTree as ET

    p = ops(inv, "verify", area, "--junit", str(junit), *args, check=False)
    assert p.returncode == 1, f"ops verify {area} exited {p.returncode}\n{p.stderr[-2000:]}"
    return {c.get("name", "") for c in ET.parse(junit).getroot().iter("testcase")
            if c.find("failure") is not None or c.find("error") is not None}


def docker_exec(node: str, *argv: str) -> str:
    return subprocess.run(["docker", "exec", f"{LAB_NAME}-{node}", *argv], check=True,
                          capture_output=True, text=True).stdout


#: An inventory whose lab is up and provisioned already (a developer's; OPS_TEST_LAB must
#: name its lab): the tests use it as it is and leave it up. Unset (CI): each lab is made
#: for the tests and removed after them.
EXISTING = os.environ.get("OPS_TEST_INVENTORY")


def _lab(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN202
    """A copy of inventory/lab with a lab name of its own, brought up; down at the end."""
    if EXISTING:
        yield Path(EXISTING).resolve()
        return
    inv = tmp_path_factory.mktemp("inventory") / "lab"
    shutil.copytree(REPO_ROOT / "inventory" / "lab" / "group_vars", inv / "group_vars")
    shutil.copy(REPO_ROOT / "inventory" / "lab" / "roster.csv", inv / "roster.csv")
    all_yml = inv / "group_vars" / "all.yml"
    data = yaml.safe_load(all_yml.read_text())
    data["lab_name"] = LAB_NAME
    all_yml.write_text(yaml.safe_dump(data, allow_unicode=True))
    ops(inv, "lab", "up")
    try:
        yield inv
    finally:
        ops(inv, "lab", "down", check=False)


@pytest.fixture(scope="module")
def lab_inventory(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A lab of the module's own (the accounts tests break and mend it)."""
    yield from _lab(tmp_path_factory)


@pytest.fixture(scope="session")
def shared_lab(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """One lab for the provision, images and website modules (a converge costs minutes).

    It has the same name as the accounts module's lab, which is down before this one
    comes up: module fixtures end with their module, and the accounts module runs first.
    """
    yield from _lab(tmp_path_factory)


@pytest.fixture(scope="session")
def first_converge(shared_lab: Path) -> subprocess.CompletedProcess[str]:
    """`ops -y provision` from scratch on the shared lab, once."""
    return ops(shared_lab, "-y", "provision", timeout=1800)


@pytest.fixture(scope="session")
def provisioned_lab(request: pytest.FixtureRequest, shared_lab: Path) -> Path:
    """The shared lab's inventory, after its first converge (an OPS_TEST_INVENTORY lab is
    provisioned already)."""
    if not EXISTING:
        request.getfixturevalue("first_converge")
    return shared_lab


WHEELHOUSE = Path(os.environ.get("OPS_WHEELHOUSE")
                  or Path.home() / ".cache" / "course-ops" / "wheelhouse")


@pytest.fixture(scope="session")
def built_image(provisioned_lab: Path) -> str:
    """The cpu variant, fetched then built offline (up to date when already built); its tag.
    Shared by the images and the student-jobs modules."""
    ops(provisioned_lab, "images", "fetch", "--variant", "cpu", "--wheelhouse",
        str(WHEELHOUSE), timeout=1800)
    p = ops(provisioned_lab, "images", "build", "--variant", "cpu", "--wheelhouse",
            str(WHEELHOUSE), "--offline", timeout=3600)
    said = p.stdout + p.stderr
    assert "offline from" in said or "up to date" in said, said[-2000:]
    rows = json.loads(ops(provisioned_lab, "images", "status", "--format", "json").stdout)
    return str(next(r["checkout"] for r in rows if r["variant"] == "cpu"))


@pytest.fixture(scope="session")
def pushed_image(provisioned_lab: Path, built_image: str) -> str:
    """The cpu variant pushed and pulled by every GPU server (Docker and the students'
    shared store); its tag."""
    ops(provisioned_lab, "images", "push", "--variant", "cpu", timeout=1800)
    ops(provisioned_lab, "images", "pull", timeout=1800)
    return built_image
