"""The safety audit (issue 10), item by item: hostile or mistaken input, and checks that
could pass having checked nothing. Each test failed on the code before its fix."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tracemalloc
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ops import REPO_ROOT, inventory
from ops.accounts.model import AccountsConfig, allocate, desired
from ops.accounts.plan import compute
from ops.accounts.snapshot import SLURM_SNAPSHOT, parse_snapshot
from ops.errors import ExitCode, InputError, InputErrors, OpsError
from ops.roster import parse
from ops.state import AccountsState, PairRecord, StateFile, StudentRecord

FUTURE = "2099-12-31"
CFG = AccountsConfig.from_vars({"accounts_expire_date": FUTURE}, "all.yml")  # type: ignore[arg-type]
HEADER = "student_id,first_name,last_name,email,pair\n"


def roster(n: int, first: int = 1) -> str:
    return HEADER + "".join(f"{i},Name{i},Last{i},s{i}@u.il,{(i + 1) // 2}\n"
                            for i in range(first, first + n))


def saved_state(tmp_path: Path, n: int) -> StateFile:
    sf = StateFile(tmp_path)
    sf.save(allocate(parse(roster(n), "r.csv"), AccountsState(), CFG, sf.path))
    return sf


def run_sh(script: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True,
                          env={**os.environ, **(env or {})}).stdout


# ---------------------------------------------------------------- 1. security


@pytest.mark.parametrize("field, value, why", [
    ("username", "../../etc", "not a valid POSIX name"),
    ("username", "root", "reserved system name"),
    ("username", "dana cohen", "not a valid POSIX name"),
    ("username", "x" * 40, "not a valid POSIX name"),
    ("first_name", "Da\x00na", "control character (U+0000)"),
])
def test_names_from_the_state_file_meet_the_rules_of_new_ones(tmp_path: Path, field: str,
                                                              value: str, why: str) -> None:
    sf = saved_state(tmp_path, 3)
    doc = json.loads(sf.path.read_text())
    doc["students"]["2"][field] = value
    sf.path.write_text(json.dumps(doc, indent=1))
    line = next(n for n, text in enumerate(sf.path.read_text().splitlines(), 1)
                if text.strip().startswith('"2":'))
    with pytest.raises(InputError, match=re.escape(why)) as info:
        sf.load()
    assert str(info.value).startswith(f"{sf.path}:{line}: student '2': ")


@pytest.mark.parametrize("group", ["pair/../../usr", "sudo", "docker", "Pair 1"])
def test_group_names_from_the_state_file_meet_the_rules(tmp_path: Path, group: str) -> None:
    sf = saved_state(tmp_path, 3)
    doc = json.loads(sf.path.read_text())
    doc["pairs"]["1"]["group"] = group
    sf.path.write_text(json.dumps(doc, indent=1))
    with pytest.raises(InputError, match=r"pair '1': .*(POSIX name|reserved)"):
        sf.load()


def test_home_and_pair_paths_never_leave_their_roots() -> None:
    from ops.accounts.model import child

    assert child("/home", "dcohen") == "/home/dcohen"
    for bad in ("..", "../etc", "a/b", "", "root"):
        with pytest.raises(ValueError, match="refusing a path"):
            child("/home", bad)
    # a state that skipped the file's checks still cannot make a path outside /home
    st = AccountsState({"1": StudentRecord("..", 20000, "1")}, {"1": PairRecord("pair001",
                                                                                30000)})
    with pytest.raises(ValueError, match="refusing a path"):
        desired(st, parse(HEADER + "1,A,B,a@u.il,1\n"), CFG, homes=True)


def fake_sacctmgr(tmp_path: Path, body: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / "sacctmgr"
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def test_the_slurm_snapshot_writes_no_file_anywhere() -> None:
    """Root on the controller runs it: no redirection to a file, no /tmp path at all."""
    assert "/tmp" not in SLURM_SNAPSHOT
    assert ">" not in SLURM_SNAPSHOT.replace(">/dev/null", "").replace("2>&1", "")


def test_a_failed_slurm_snapshot_is_an_error_not_an_empty_plan(tmp_path: Path) -> None:
    env = fake_sacctmgr(tmp_path, 'echo "sacctmgr: error: Problem talking to the database: '
                                  'Connection refused" >&2; exit 1')
    snap = parse_snapshot(run_sh(SLURM_SNAPSHOT, env).splitlines())
    assert snap.slurm is not None
    assert "Connection refused" in snap.slurm.error
    from ops.accounts import sync as sync_mod

    ctx = types.SimpleNamespace(hosts=[types.SimpleNamespace(name="ctl")], home_hosts=["ctl"],
                                hub_hosts=[],
                                slurm_host="ctl", roster=parse(roster(2)), cfg=CFG,
                                inv=types.SimpleNamespace(vars={}))
    st = allocate(ctx.roster, AccountsState(), CFG, "s")
    with pytest.raises(OpsError, match="ctl: cannot read Slurm's accounts: .*Connection "
                                       "refused"):
        sync_mod.plan_for(ctx, st, {"ctl": snap})  # type: ignore[arg-type]


def test_a_working_slurm_snapshot_is_read_and_no_slurm_means_none(tmp_path: Path) -> None:
    env = fake_sacctmgr(tmp_path, 'case "$3" in cluster) echo lab;; assoc) echo "root||"; '
                                  'echo "pair001|dcohen|";; user) echo "dcohen|pair001";; esac')
    snap = parse_snapshot(run_sh(SLURM_SNAPSHOT, env).splitlines()).slurm
    assert snap is not None and snap.error == ""
    assert (snap.cluster, snap.assocs, snap.default_account) == \
        ("lab", {("dcohen", "pair001")}, {"dcohen": "pair001"})
    no_slurm = {"PATH": str(tmp_path / "empty")}
    assert parse_snapshot(run_sh(SLURM_SNAPSHOT, no_slurm).splitlines()).slurm is None


def test_a_password_switched_on_later_travels_on_stdin() -> None:
    cfg = AccountsConfig.from_vars({"accounts_expire_date": FUTURE,
                                    "accounts_password_login": True}, "a")  # type: ignore[arg-type]
    r = parse(roster(1))
    st = allocate(r, AccountsState(), cfg, "s")
    uid = st.students["1"].uid
    snap = parse_snapshot(["#passwd", f"nlast1:x:{uid}:{uid}:Name1 Last1:/home/nlast1:"
                           "/bin/bash", "#group", f"nlast1:x:{uid}:", "course:x:19999:nlast1",
                           f"pair001:x:{st.pairs['1'].gid}:nlast1", "#shadow",
                           f"nlast1:*:{cfg.expire_days}",
                           "#subuid", "nlast1:1000000:65536", "#subgid", "nlast1:1000000:65536"])
    plan = compute("ctl", desired(st, r, cfg, homes=False), snap, lambda u: "$6$salt$HASH")
    (change,) = plan.changes
    assert change.detail == "initial password" and change.argv == ()
    assert "HASH" not in " ".join(plan.script_chunks())
    step = plan.password_step()
    assert step and "HASH" not in step[0] and step[1] == "nlast1:$6$salt$HASH\n"


@pytest.mark.parametrize("cell, shown", [("Da\x07na", "U+0007"), ("Dana\x1b[31m", "U+001B"),
                                         ("Da\u2028na", "U+2028"), ("Da\x85na", "U+0085")])
def test_roster_fields_with_control_characters_are_refused(cell: str, shown: str) -> None:
    text = HEADER + "1,Eli,Levi,e@u.il,1\n" + f"2,{cell},Cohen,d@u.il,1\n"
    with pytest.raises(InputErrors) as info:
        parse(text, "r.csv")
    assert info.value.lines() == [f"r.csv:3: first_name holds a control character ({shown}); "
                                  "remove it"]


def test_user_data_is_printed_as_plain_text_never_as_markup(tmp_path: Path) -> None:
    r = tmp_path / "r.csv"
    r.write_text(HEADER + "1,[bold red]Eve[/],Levi,e@u.il,1\n", encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "ops", "-i", str(tmp_path), "-v", "roster",
                        "check", str(r)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert p.returncode == 0, p.stderr
    assert "[bold red]Eve[/] Levi" in p.stdout


# ---------------------------------------------------------------- 2. guards


@pytest.fixture()
def no_hosts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """ops.accounts.remote replaced: any attempt to reach a host is recorded and stopped."""
    import ops.accounts

    reached: list[str] = []
    stub = types.ModuleType("ops.accounts.remote")

    def connected(hosts: object) -> None:
        reached.append("connect")
        raise RuntimeError("no host may be reached in this test")

    stub.connected = connected  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ops.accounts.remote", stub)
    monkeypatch.setattr(ops.accounts, "remote", stub, raising=False)
    return reached


HOSTS_YML = """all:
  vars: {ansible_user: root}
  children:
    slurm_controller:
      hosts:
        ctl: {ansible_host: 127.0.0.1, ansible_port: 1}
"""


def lab_like(tmp_path: Path, group_vars: str = "", roster_text: str = "") -> Path:
    (tmp_path / "group_vars").mkdir(exist_ok=True)
    (tmp_path / "hosts.yml").write_text(HOSTS_YML)
    (tmp_path / "group_vars" / "all.yml").write_text(
        group_vars or f"accounts_roster: roster.csv\naccounts_expire_date: '{FUTURE}'\n")
    (tmp_path / "roster.csv").write_text(roster_text or roster(3))
    return tmp_path


@pytest.mark.parametrize("kept, limit, stopped", [
    (0, None, True),     # the roster has only its header: the whole class would be locked
    (2, None, True),     # a bad export kept 2 of 30 rows
    (24, None, True),    # 6 leave: more than max(5, 10% of 30)
    (25, None, False),   # 5 leave: allowed
    (24, 6, False),      # accounts_max_leavers raised for this course
])
def test_a_sync_that_would_lock_much_of_the_class_stops_first(
        tmp_path: Path, no_hosts: list[str], kept: int, limit: int | None,
        stopped: bool) -> None:
    from ops.accounts import sync as sync_mod
    from ops.errors import Refused

    gv = f"accounts_roster: roster.csv\naccounts_expire_date: '{FUTURE}'\n"
    if limit is not None:
        gv += f"accounts_max_leavers: {limit}\n"
    inv = lab_like(tmp_path, gv, roster(30))
    ctx = sync_mod.load_context(inventory.load(inv))
    ctx.statefile.save(allocate(ctx.roster, AccountsState(), ctx.cfg, "s"))
    (inv / "roster.csv").write_text(roster(kept))
    ctx = sync_mod.load_context(inventory.load(inv))
    if stopped:
        with pytest.raises(Refused, match=rf"would lock {30 - kept} of 30 students \(more "
                                          rf"than accounts_max_leavers, {limit or 5}\)") as e:
            sync_mod.sync(ctx, lambda p: True)
        assert e.value.code == ExitCode.REFUSED and "--allow-mass-change" in str(e.value)
        assert no_hosts == []  # stopped before any host was read
    with pytest.raises(RuntimeError, match="no host may be reached"):
        sync_mod.sync(ctx, lambda p: True, allow_mass_change=True)
    assert no_hosts == ["connect"]


@pytest.mark.parametrize("written, why", [
    ("accounts_expire_date: 2027-02-30", "'2027-02-30' is not a valid value"),
    ("accounts_expire_date: '2027-02-30'", "expected a date YYYY-MM-DD, got '2027-02-30'"),
    ("accounts_expire_date: \"2020-01-31\"", "2020-01-31 is in the past"),
    ("accounts_expire_date: 2020-01-31", "2020-01-31 is in the past"),
])
def test_impossible_or_past_expiry_dates_name_file_and_line(tmp_path: Path, written: str,
                                                            why: str) -> None:
    from ops.accounts import sync as sync_mod

    inv = lab_like(tmp_path, f"# the course\naccounts_roster: roster.csv\n{written}\n")
    with pytest.raises(InputError, match=re.escape(why)) as info:
        sync_mod.load_context(inventory.load(inv), today=dt.date(2026, 12, 1))
    assert str(info.value).startswith(f"{inv / 'group_vars' / 'all.yml'}:3: ")


def test_a_course_wide_variable_set_for_one_group_is_an_error(tmp_path: Path) -> None:
    inv = lab_like(tmp_path)
    (inv / "hosts.yml").write_text(HOSTS_YML + "    gpu_servers:\n      hosts:\n        gpu1:\n")
    (inv / "group_vars" / "gpu_servers.yml").write_text(
        "---\ncuda_toolkit_version: '13.0'\naccounts_uid_range: [40000, 49999]\n")
    with pytest.raises(InputError) as info:
        inventory.load(inv)
    assert str(info.value).startswith(f"{inv / 'group_vars' / 'gpu_servers.yml'}:3: "
                                      "accounts_uid_range is one value for the whole course")


def test_a_course_wide_variable_set_for_one_host_is_an_error(tmp_path: Path) -> None:
    inv = lab_like(tmp_path)
    (inv / "hosts.yml").write_text(HOSTS_YML.replace("ansible_port: 1}",
                                                     "ansible_port: 1, slurm_qos_name: x}"))
    with pytest.raises(InputError, match=r"hosts.yml:6: slurm_qos_name is one value for the "
                                         r"whole course: set it in group_vars/all.yml, not "
                                         r"for host ctl"):
        inventory.load(inv)


def test_a_used_up_id_range_names_the_inventory_variable(tmp_path: Path) -> None:
    from ops.accounts import sync as sync_mod

    inv = lab_like(tmp_path, f"accounts_roster: roster.csv\naccounts_expire_date: '{FUTURE}'\n"
                             "accounts_uid_range: [20000, 20001]\n", roster(3))
    ctx = sync_mod.load_context(inventory.load(inv))
    with pytest.raises(InputError) as info:
        allocate(ctx.roster, ctx.statefile.load(), ctx.cfg, ctx.statefile.path)
    assert str(info.value).startswith(f"{inv / 'group_vars' / 'all.yml'}:3: "
                                      "accounts_uid_range is used up")


def test_plan_says_it_reads_hosts_only_after_the_input_is_valid(tmp_path: Path) -> None:
    inv = lab_like(tmp_path, f"accounts_roster: roster.csv\naccounts_expire_date: '{FUTURE}'\n"
                             "accounts_uid_range: [20000, 20001]\n", roster(3))
    p = subprocess.run([sys.executable, "-m", "ops", "-i", str(inv), "accounts", "plan"],
                       capture_output=True, text=True, cwd=REPO_ROOT)
    assert p.returncode == ExitCode.BAD_INPUT
    assert "accounts_uid_range is used up" in p.stderr
    assert "reading accounts" not in p.stderr


def big_archive(tmp_path: Path, size: int) -> tuple[Path, Path]:
    """A tar.gz holding one ``size``-byte file (zeros: small on disk) and its manifest."""
    archive, manifest = tmp_path / "s.tar.gz", tmp_path / "s.sha256"
    info = tarfile.TarInfo("s/checkpoint.pt")
    info.size = size

    class Zeros(io.RawIOBase):
        left = size

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # noqa: ANN001
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n

    with gzip.open(archive, "wb", compresslevel=1) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        tar.addfile(info, io.BufferedReader(Zeros()))
    digest = hashlib.sha256()
    chunk = bytes(1 << 20)
    for _ in range(size >> 20):
        digest.update(chunk)
    manifest.write_bytes(f"{digest.hexdigest()}  s/checkpoint.pt".encode() + b"\0")
    return archive, manifest


def test_checking_an_archive_streams_big_files(tmp_path: Path) -> None:
    from ops.accounts.offboard import check_archive

    size = 96 << 20
    archive, manifest = big_archive(tmp_path, size)
    tracemalloc.start()
    try:
        assert check_archive(archive, manifest) == 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"checking a {size >> 20} MiB file took {peak >> 20} MiB"


# ---------------------------------------------------------------- 3. checks that can fail


class NoGpuHost:
    """A testinfra host with no NVIDIA device and an nvidia-smi that cannot talk to a driver."""

    class _R:
        def __init__(self, rc: int, out: str = "") -> None:
            self.rc, self.stdout = rc, out

    def run(self, command: str, *args: object) -> _R:
        return self._R(1, "NVIDIA-SMI has failed") if "nvidia-smi" in command else self._R(0)


def test_a_host_expected_to_have_gpus_fails_without_them() -> None:
    from tests.infra.test_gpu import NO_GPU, require_gpu

    with pytest.raises(pytest.fail.Exception,
                       match="the inventory expects 8 GPU\\(s\\) here, nvidia-smi found none"):
        require_gpu(NoGpuHost(), 8)
    with pytest.raises(pytest.skip.Exception, match="expects none"):
        require_gpu(NoGpuHost(), 0)
    assert NO_GPU.startswith("no NVIDIA GPU on host")


def test_verify_passes_the_expected_gpus_to_the_specs(tmp_path: Path) -> None:
    from ops.verify import pytest_argv

    argv = pytest_argv(tmp_path, ["gpu"], "local://", tmp_path / "j.xml", None, 0,
                       tmp_path / "ssh_config", expect_gpus=8)
    assert "--expect-gpus=8" in argv and "--hosts=local://" in argv


def test_the_gpu_container_check_uses_the_pushed_cuda_image(tmp_path: Path) -> None:
    from tests.infra.test_gpu_servers import _cuda_image

    inv = lab_like(tmp_path)
    (inv / "hosts.yml").write_text(HOSTS_YML + "    registry:\n      hosts:\n        ctl:\n")
    config = types.SimpleNamespace(getoption=lambda name: str(inv))
    assert _cuda_image(config) is None  # nothing pushed: the check has nothing to run
    (inv / "state").mkdir(exist_ok=True)
    (inv / "state" / "images.json").write_text(json.dumps({"version": 1, "variants": {
        "cpu": {"tag": "torch2.13.0-cpu-x", "digest": "sha256:1"},
        "cuda": {"tag": "torch2.14.1-cu13.0-y", "digest": "sha256:2"}}}))
    assert _cuda_image(config) == "ctl:5000/course-ops/course:torch2.14.1-cu13.0-y"


def test_verify_images_with_nothing_pushed_is_not_a_green_run(tmp_path: Path) -> None:
    inv = lab_like(tmp_path)
    (inv / "hosts.yml").write_text(HOSTS_YML + "    registry:\n      hosts:\n        ctl:\n"
                                   "    gpu_servers:\n      hosts:\n        ctl:\n")
    p = subprocess.run([sys.executable, "-m", "ops", "-i", str(inv), "verify", "images"],
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert p.returncode == ExitCode.NOT_CHECKED, p.stderr
    assert "images: could not be checked: no course image has been pushed" in p.stderr


def test_verify_of_everything_lists_what_it_could_not_check(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    from ops import verify as verify_mod

    inv = lab_like(tmp_path)
    ran: list[str] = []
    monkeypatch.setattr(verify_mod, "_run_sessions", lambda argvs: ran.extend(
        Path(a).stem for argv in argvs for a in argv if a.endswith(".py")) or 0)
    monkeypatch.setattr(verify_mod, "targets", lambda inv, areas: "local://")
    monkeypatch.setattr(verify_mod, "sessions",
                        lambda inv, specs: [dict.fromkeys(specs, "local://")])
    missing: dict[str, str] = {}
    verify_mod.verify(inv, None, None, None, not_checked=missing, inv=inventory.load(inv))
    assert "test_images" not in ran and "test_registry" in ran
    assert list(missing) == ["images"] and "no course image has been pushed" in missing["images"]


def test_the_snapshot_reveals_no_password_hash(tmp_path: Path) -> None:
    from ops.accounts.snapshot import snapshot_script

    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                "dcohen:x:20000:20000:Dana:/home/dcohen:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n")
    secret = "$6$rounds=5000$saltsalt$" + "Q" * 86
    (etc / "shadow").write_text(f"root:*:19000:0:99999:7:::\n"
                                f"dcohen:{secret}:19000:0:99999:7::20908:\n"
                                "nopw::19000:0:99999:7:::\n")
    script = snapshot_script("/nonexistent", "/nonexistent", homes=False, etc=str(etc))

    def leaks(command: str) -> bool:
        return "saltsalt" in run_sh(command) or "QQQQ" in run_sh(command)

    assert leaks(script + f"; cat {etc}/shadow")  # the check sees a leak when there is one
    assert not leaks(script)
    snap = parse_snapshot(run_sh(script).splitlines())
    assert snap.shadow == {"root": ("*", None), "dcohen": ("hash", 20908),
                           "nopw": ("empty", None)}


def test_the_qos_checks_read_the_inventory_and_the_role_defaults() -> None:
    import yaml

    from ops import roles
    from ops.accounts import slurm as slurm_mod

    role = yaml.safe_load((REPO_ROOT / "roles/slurm/defaults/main.yml").read_text())
    assert roles.setting({}, "slurm", "slurm_qos_name") == role["slurm_qos_name"]
    assert roles.setting({"slurm_qos_name": "dl"}, "slurm", "slurm_qos_name") == "dl"
    assert [slurm_mod.sacct_duration(t) for t in
            ("24:00:00", "2-12", "90", "30:00", "1-00:00:00", "36:30:00")] == \
        ["1-00:00:00", "2-12:00:00", "01:30:00", "00:30:00", "1-00:00:00", "1-12:30:00"]
    with pytest.raises(OpsError, match="templated"):
        roles.default("slurm", "slurm_tools_login_host")


def test_checks_run_on_the_control_machine_are_listed_as_control() -> None:
    from ops import report

    case = ET.fromstring('<testcase classname="tests.infra.test_registry" '
                         'name="test_registry_accepts_the_course_ops_user"/>')
    assert report.host_of(case) == "control"
