"""`ops verify`: every spec in one pytest session, each on its own hosts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
