"""The lab tests: a lab of their own (not the developer's), brought up once per module."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ops import REPO_ROOT

LAB_NAME = "course-ops-test"


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


def docker_exec(node: str, *argv: str) -> str:
    return subprocess.run(["docker", "exec", f"{LAB_NAME}-{node}", *argv], check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def lab_inventory(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A copy of inventory/lab with a lab name of its own, brought up; down at the end."""
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
