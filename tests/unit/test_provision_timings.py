"""`ops provision --timings`: seconds per phase and per Ansible role."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from ops import machines

RECAP = """\
PLAY RECAP *********************************************************************
ctl                        : ok=80   changed=0    unreachable=0    failed=0    skipped=9
ROLES RECAP ********************************************************************
Wednesday 02 December 2026  04:01:10 +0000 (0:00:00.020)       0:00:31.112 *****
===============================================================================
slurm ------------------------------------------------------------------ 12.41s
common ------------------------------------------------------------------ 9.07s
gather_facts ------------------------------------------------------------ 3.50s
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
total ------------------------------------------------------------------ 24.98s
"""


def test_role_times_are_read_from_the_roles_recap() -> None:
    assert machines.parse_role_times(RECAP.splitlines()) == {
        "slurm": 12.41, "common": 9.07, "gather_facts": 3.5}
    assert machines.parse_role_times(RECAP.replace("ROLES RECAP", "X").splitlines()) == {}


def test_provision_timings_lists_phases_and_roles(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from ops import cli as cli_mod
    from ops.accounts import sync as sync_mod
    from ops.images import commands as image_commands

    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  children:\n    gpu_servers:\n      hosts:\n"
                                   "        gpu1: {ansible_host: 127.0.0.1}\n")
    (inv / "group_vars" / "all.yml").write_text("course_code: x\n")
    (inv / "roster.csv").write_text("student_id,first_name,last_name,email,pair\n")
    seen: dict[str, object] = {}

    def run_playbook(argv: list[str], **k: object) -> tuple[int, dict[str, object]]:
        times = k.get("role_times")
        assert isinstance(times, dict)  # --timings asks Ansible to time its roles
        times.update(machines.parse_role_times(RECAP.splitlines()))
        return 0, {}

    # not pyinfra's gevent patching of this process's sockets: no host is reached here
    if not hasattr(sys.modules.get("ops.accounts"), "remote"):
        monkeypatch.setitem(sys.modules, "ops.accounts.remote", types.ModuleType("remote"))
    monkeypatch.setattr(machines, "run_playbook", run_playbook)
    monkeypatch.setattr(image_commands, "image_extra_vars", lambda inv: ())
    monkeypatch.setattr(sync_mod, "load_context", lambda *a, **k: object())
    monkeypatch.setattr(sync_mod, "guard_leavers", lambda *a, **k: None)
    monkeypatch.setattr(sync_mod, "sync", lambda *a, **k: {})
    monkeypatch.setattr(cli_mod, "_verify", lambda *a, **k: seen.setdefault("verify", True))
    cli_mod.cli.main(["-i", str(inv), "-y", "provision", "--timings"], standalone_mode=False)
    said = capsys.readouterr().err
    assert seen == {"verify": True}
    assert "provision timings" in said
    for row in ("machines (ansible-playbook)", "slurm", "common", "accounts", "verify",
                "total"):
        assert row in said, said
    assert said.index("slurm") < said.index("common")  # the slowest role first
