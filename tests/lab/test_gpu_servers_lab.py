"""GPU servers on the lab, molecule's sequence through the real CLI: converge from scratch
-> converge again, expect changed=0 -> check mode, expect no change -> verify (the GPU
checks skip with their reason: the lab has no GPU) -> drift caught, reboot reported."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ops.machines import Recap, parse_output
from tests.lab.conftest import docker_exec, ops

pytestmark = pytest.mark.lab
NODES = ("ctl", "gpu1", "gpu2")


def recaps(p: subprocess.CompletedProcess[str]) -> dict[str, Recap]:
    r = parse_output(p.stdout.splitlines())
    assert set(r) == set(NODES), p.stdout[-2000:]
    return r


def test_provision_converges_from_scratch(lab_inventory: Path) -> None:
    p = ops(lab_inventory, "-y", "provision", timeout=1800)
    r = recaps(p)
    assert all(x.failed == 0 and x.unreachable == 0 for x in r.values())
    assert r["gpu1"].changed > 0 and r["gpu2"].changed > 0
    # no GPU in a container: said out loud, not skipped silently
    said = " ".join(p.stdout.split())
    assert "gpu1: a container: user-space packages and configuration only" in said
    assert "gpu1: no NVIDIA GPU on host: Docker only" in said
    assert "provision summary" in p.stdout
    for node in ("gpu1", "gpu2"):
        assert docker_exec(node, "systemctl", "is-active", "docker").strip() == "active"
        assert docker_exec(node, "dpkg-query", "-W", "-f=${Status}", "nvidia-smi") == \
            "install ok installed"


def test_second_provision_changes_nothing(lab_inventory: Path) -> None:
    p = ops(lab_inventory, "-y", "provision")
    r = recaps(p)
    assert {h: x.changed for h, x in r.items()} == {h: 0 for h in NODES}
    assert p.stdout.count("0 change(s)") == 3


def test_check_mode_reports_no_change(lab_inventory: Path) -> None:
    before = docker_exec("gpu1", "stat", "-c", "%Y", "/etc/motd", "/etc/docker/daemon.json")
    p = ops(lab_inventory, "provision", "--check", "--diff")
    r = recaps(p)
    assert {h: x.changed for h, x in r.items()} == {h: 0 for h in NODES}
    assert docker_exec("gpu1", "stat", "-c", "%Y", "/etc/motd",
                       "/etc/docker/daemon.json") == before


def test_gpu_checks_skip_with_the_reason(lab_inventory: Path, tmp_path: Path) -> None:
    junit = tmp_path / "gpu.xml"
    ops(lab_inventory, "verify", "gpu", "--junit", str(junit))
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    skipped = [c.find("skipped") for c in cases if c.find("skipped") is not None]
    passed = [c for c in cases if c.find("skipped") is None and c.find("failure") is None]
    assert skipped and all("no NVIDIA GPU on host" in (s.get("message") or "")
                           for s in skipped)
    assert {c.get("name", "").split("[")[0] for c in passed} == \
        {"test_nouveau_is_not_loaded"}  # nvcc is not installed on Debian: that one skips


def test_a_student_in_the_docker_group_is_caught_and_removed(lab_inventory: Path,
                                                            tmp_path: Path) -> None:
    student = docker_exec("gpu1", "getent", "group", "course").strip().split(":")[3] \
        .split(",")[0]
    docker_exec("gpu1", "usermod", "-aG", "docker", student)
    p = ops(lab_inventory, "verify", "gpu_servers", "--junit", str(tmp_path / "d.xml"),
            check=False)
    assert p.returncode == 1
    failed = [c.get("name", "") for c in ET.parse(tmp_path / "d.xml").getroot()
              .iter("testcase") if c.find("failure") is not None]
    assert failed == ["test_no_student_in_the_docker_group[ansible://gpu1]"]
    ops(lab_inventory, "-y", "accounts", "sync")
    assert student not in docker_exec("gpu1", "getent", "group", "docker")
    ops(lab_inventory, "verify", "gpu_servers")


def test_a_pending_reboot_is_reported(lab_inventory: Path) -> None:
    docker_exec("gpu2", "sh", "-c", "echo nvidia-driver > /run/reboot-required.pkgs && "
                                    "touch /run/reboot-required")
    try:
        p = ops(lab_inventory, "verify", "common", check=False)
        assert p.returncode == 1
        assert "reboot required (nvidia-driver)" in p.stdout
        check = ops(lab_inventory, "provision", "--check", "--limit", "gpu2", check=False)
        assert recaps_reboot(check) == {"gpu2"}
    finally:
        docker_exec("gpu2", "rm", "-f", "/run/reboot-required", "/run/reboot-required.pkgs")


def recaps_reboot(p: subprocess.CompletedProcess[str]) -> set[str]:
    return {h for h, x in parse_output(p.stdout.splitlines()).items() if x.reboot_required}
