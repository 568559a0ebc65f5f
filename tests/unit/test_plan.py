"""Allocation, the state file and plan computation, with made-up host snapshots."""

from __future__ import annotations

import hashlib
import json

import pytest

from ops.accounts.model import AccountsConfig, allocate, desired
from ops.accounts.plan import compute
from ops.accounts.snapshot import parse_snapshot, snapshot_command
from ops.errors import InputError
from ops.roster import parse
from ops.state import LEFT, AccountsState, StateFile

CFG = AccountsConfig.from_vars({"accounts_expire_date": "2027-03-31",
                                "accounts_uid_range": [20000, 20002]}, "all.yml")  # type: ignore[arg-type]
ROSTER = parse("student_id,first_name,last_name,email,pair\n"
               "1,Dana,Cohen,d@u.il,1\n2,Eli,Levi,e@u.il,1\n3,Noa,Katz,n@u.il,2\n", "r.csv")


def test_uids_are_recorded_and_never_reused(tmp_path) -> None:
    sf = StateFile(tmp_path)
    st = allocate(ROSTER, sf.load(), CFG, sf.path)
    assert [r.uid for r in st.students.values()] == [20000, 20001, 20002]
    sf.save(st)
    assert (sf.path.stat().st_mode & 0o777) == 0o600
    assert (sf.dir.stat().st_mode & 0o777) == 0o700
    again = allocate(ROSTER, sf.load(), CFG, sf.path)
    assert again.students == st.students
    # student 3 leaves; a newcomer must not get uid 20002 again: the range is used up
    newcomer = parse("student_id,first_name,last_name,email,pair\n"
                     "1,Dana,Cohen,d@u.il,1\n2,Eli,Levi,e@u.il,1\n4,Ori,Levi,o@u.il,3\n", "r")
    with pytest.raises(InputError, match="accounts_uid_range is used up"):
        allocate(newcomer, again, CFG, sf.path)
    left = allocate(newcomer.__class__("r", newcomer.students[:2]), again, CFG, sf.path)
    assert left.students["3"].status == LEFT


def test_corrupt_state_file_names_the_line(tmp_path) -> None:
    sf = StateFile(tmp_path)
    sf.dir.mkdir()
    sf.path.write_text('{"version": 1,\n "students": {\n  "1": {"username": }\n}}\n')
    with pytest.raises(InputError, match=r"accounts.json:3: not valid JSON"):
        sf.load()


EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def snapshot(passwd: str = "", group: str = "", shadow: str = "", dirs: str = "",
             keys: str = "", subids: str = "") -> list[str]:
    key_lines = keys.splitlines()
    sums = [f"{EMPTY_SHA}  {ln.split(':', 3)[3]}" for ln in key_lines]
    return ["#passwd", "root:x:0:0:root:/root:/bin/bash", *passwd.splitlines(),
            "#group", "root:x:0:", "sudo:x:27:", *group.splitlines(),
            "#shadow", "root:*:", *shadow.splitlines(), "#dirs", *dirs.splitlines(),
            "#keys", *key_lines, "#sums", *sums,
            "#subuid", *subids.splitlines(), "#subgid", *subids.splitlines()]


#: The three students' subordinate ranges, as the sync writes them (in uid order).
SUBIDS = "dcohen:1000000:65536\nelevi:1065536:65536\nnkatz:1131072:65536"


def test_empty_host_gets_everything() -> None:
    st = allocate(ROSTER, allocate(ROSTER, AccountsState(),
                                   CFG, "s"), CFG, "s")
    plan = compute("gpu1", desired(st, ROSTER, CFG, homes=True), parse_snapshot(snapshot()))
    kinds = [(c.action, c.kind, c.subject) for c in plan.changes]
    assert ("add", "group", "course") in kinds
    assert ("add", "group", "pair001") in kinds
    assert ("add", "user", "dcohen") in kinds
    assert ("add", "dir", "/home/dcohen") in kinds
    assert ("add", "dir", "/home/pairs/pair001") in kinds
    useradd = next(c for c in plan.changes if c.kind == "user" and c.subject == "dcohen").argv[0]
    assert useradd[:9] == ("useradd", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0",
                           "-u", "20000", "-g", "20000")
    assert ("add", "subid", "dcohen") in kinds
    assert "sudo" not in " ".join(useradd)


def converged_snapshot() -> list[str]:
    return snapshot(
        passwd="dcohen:x:20000:20000:Dana Cohen:/home/dcohen:/bin/bash\n"
               "elevi:x:20001:20001:Eli Levi:/home/elevi:/bin/bash\n"
               "nkatz:x:20002:20002:Noa Katz:/home/nkatz:/bin/bash",
        group="course:x:19999:dcohen,elevi,nkatz\npair001:x:30000:dcohen,elevi\n"
              "pair002:x:30001:nkatz\ndcohen:x:20000:\nelevi:x:20001:\nnkatz:x:20002:",
        shadow="dcohen:*:20908\nelevi:*:20908\nnkatz:*:20908",
        dirs="20000:20000:700:/home/dcohen\n20001:20001:700:/home/elevi\n"
             "20002:20002:700:/home/nkatz\n0:0:755:/home/pairs\n"
             "0:30000:2770:/home/pairs/pair001\n0:30001:2770:/home/pairs/pair002",
        keys="20000:20000:600:/home/dcohen/.ssh/authorized_keys\n"
             "20001:20001:600:/home/elevi/.ssh/authorized_keys\n"
             "20002:20002:600:/home/nkatz/.ssh/authorized_keys",
        subids=SUBIDS)


def test_converged_host_has_no_change() -> None:
    st = allocate(ROSTER, AccountsState(), CFG, "s")
    assert CFG.expire_days == 20908
    plan = compute("ctl", desired(st, ROSTER, CFG, homes=True),
                   parse_snapshot(converged_snapshot()))
    assert plan.changes == [] and plan.conflicts == []


def test_drift_is_planned_exactly() -> None:
    st = allocate(ROSTER, AccountsState(), CFG, "s")
    lines = converged_snapshot()
    lines[lines.index("sudo:x:27:")] = "sudo:x:27:elevi"          # someone added to sudo
    lines[lines.index("20000:20000:700:/home/dcohen")] = "20000:20000:755:/home/dcohen"
    plan = compute("ctl", desired(st, ROSTER, CFG, homes=True), parse_snapshot(lines))
    got = {(c.action, c.subject, c.detail) for c in plan.changes}
    assert got == {("change", "elevi", "groups -sudo"),
                   ("change", "/home/dcohen", "mode 755->700")}


def test_left_student_is_locked_not_removed() -> None:
    st = allocate(ROSTER, AccountsState(), CFG, "s")
    two = ROSTER.__class__("r", ROSTER.students[:2])
    st2 = allocate(two, st, CFG, "s")
    plan = compute("ctl", desired(st2, two, CFG, homes=True),
                   parse_snapshot(converged_snapshot()))
    (change,) = [c for c in plan.changes if c.subject == "nkatz"]
    assert change.action == "lock"
    argv = change.argv[0]
    assert argv[0] == "usermod" and "-L" in argv and "/usr/sbin/nologin" in argv
    assert not [c for c in plan.changes if c.action == "remove"]


def test_uid_taken_by_a_stranger_is_a_conflict() -> None:
    st = allocate(ROSTER, AccountsState(), CFG, "s")
    snap = parse_snapshot(snapshot(passwd="mallory:x:20000:20000::/home/m:/bin/sh"))
    plan = compute("gpu2", desired(st, ROSTER, CFG, homes=False), snap)
    assert plan.conflicts == ["gpu2: uid 20000 for dcohen belongs to 'mallory'"]


def test_snapshot_command_reveals_no_password_hash() -> None:
    cmd = snapshot_command("/home", "/home/pairs", True)
    assert "substr($2,1,1)" in cmd and "print $1\":\"k" in cmd
    assert json.dumps(cmd)  # a plain string


def test_script_chunks_respect_the_argv_limit() -> None:
    from ops.sample import make_class

    big = parse(make_class(300), "big.csv")
    cfg = AccountsConfig.from_vars({"accounts_expire_date": "2027-03-31"}, "a")  # type: ignore[arg-type]
    st = allocate(big, AccountsState(), cfg, "s")
    plan = compute("ctl", desired(st, big, cfg, homes=True), parse_snapshot(snapshot()))
    chunks = plan.script_chunks()
    assert len(chunks) > 1
    assert all(len(c) <= 60_000 for c in chunks)


def test_a_password_set_by_hand_is_switched_off() -> None:
    st = allocate(ROSTER, AccountsState(), CFG, "s")
    lines = converged_snapshot()
    lines[lines.index("elevi:*:20908")] = "elevi:hash:20908"
    plan = compute("ctl", desired(st, ROSTER, CFG, homes=True), parse_snapshot(lines))
    (change,) = plan.changes
    assert (change.action, change.subject, change.detail) == \
        ("change", "elevi", "password login off")
    assert change.argv[0][-3:] == ("-p", "*", "elevi")


def test_password_login_gives_initial_passwords(tmp_path) -> None:
    from ops.accounts.passwords import InitialPasswords

    cfg = AccountsConfig.from_vars({"accounts_expire_date": "2027-03-31",
                                    "accounts_password_login": True}, "a")  # type: ignore[arg-type]
    st = allocate(ROSTER, AccountsState(), cfg, "s")
    pw = InitialPasswords(tmp_path / "state" / "initial-passwords.csv")
    plan = compute("ctl", desired(st, ROSTER, cfg, homes=False), parse_snapshot(snapshot()), pw)
    add = next(c for c in plan.changes if c.kind == "user" and c.subject == "dcohen")
    (useradd,) = add.argv
    assert useradd[useradd.index("-p") + 1] == "*"
    hashed = pw.made["dcohen"][1]
    assert hashed.startswith("$6$")
    # the hashes travel on stdin, never in a command line (ps shows those to every user)
    assert all(hashed not in " ".join(a) for c in plan.changes for a in (*c.argv, *c.after))
    assert all(hashed not in chunk for chunk in plan.script_chunks())
    step = plan.password_step()
    assert step is not None
    command, stdin = step
    assert "$6$" not in command and "chpasswd -e" in command
    assert command.index("chpasswd -e") < command.index("chage -d 0 dcohen")
    assert f"dcohen:{hashed}\n" in stdin and stdin.count("\n") == 3  # the three students
    assert "$6$" not in repr(add)
    pw.save()
    text = (tmp_path / "state" / "initial-passwords.csv").read_text()
    assert (tmp_path / "state" / "initial-passwords.csv").stat().st_mode & 0o777 == 0o600
    assert f"dcohen,{pw.made['dcohen'][0]}" in text
    assert pw.made["dcohen"][0] not in " ".join(" ".join(a) for c in plan.changes for a in c.argv)


def test_state_file_high_water_marks_cannot_fall(tmp_path) -> None:
    sf = StateFile(tmp_path)
    st = allocate(ROSTER, AccountsState(), CFG, sf.path)
    sf.save(st)
    doc = json.loads(sf.path.read_text())
    doc["uid_high"] = 0  # hand-edited down: the next id must still be new
    sf.path.write_text(json.dumps(doc))
    assert sf.load().uid_high == 20002


def test_state_file_with_a_dangling_pair_is_refused(tmp_path) -> None:
    sf = StateFile(tmp_path)
    sf.save(allocate(ROSTER, AccountsState(), CFG, sf.path))
    doc = json.loads(sf.path.read_text())
    doc["pairs"].pop("2")
    sf.path.write_text(json.dumps(doc, indent=1))
    with pytest.raises(InputError,
                       match=r"student '3' has a bad status, uid, subid, username or pair"):
        sf.load()


def test_an_offboarded_pair_that_returns_gets_a_new_gid() -> None:
    from ops.state import OFFBOARDED

    st = allocate(ROSTER, AccountsState(), CFG, "s")
    old = st.pairs["2"].gid
    st.pairs["2"].status = OFFBOARDED
    st.students["3"].status = OFFBOARDED
    again = allocate(ROSTER, st, AccountsConfig.from_vars(
        {"accounts_expire_date": "2027-03-31"}, "a"), "s")  # type: ignore[arg-type]
    assert again.pairs["2"].gid != old and again.pairs["2"].gid > old
    assert again.students["3"].uid > 20002


@pytest.mark.parametrize("value, message", [
    ("docker", "not a valid or allowed group name"),
    ("sudo", "not a valid or allowed group name"),
])
def test_course_group_cannot_be_privileged(value: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        AccountsConfig.from_vars({"accounts_expire_date": "2027-03-31",
                                  "accounts_course_group": value}, "a")  # type: ignore[arg-type]


def test_quoted_false_is_false() -> None:
    cfg = AccountsConfig.from_vars({"accounts_expire_date": "2027-03-31",
                                    "accounts_password_login": "false"}, "a")  # type: ignore[arg-type]
    assert cfg.password_login is False
    with pytest.raises(InputError, match="expected true or false"):
        AccountsConfig.from_vars({"accounts_expire_date": "2027-03-31",
                                  "accounts_shared_home": "maybe"}, "a")  # type: ignore[arg-type]


def test_a_key_removed_from_the_roster_is_revoked() -> None:
    st = allocate(ROSTER, AccountsState(), CFG, "s")
    lines = converged_snapshot()
    i = lines.index(f"{EMPTY_SHA}  /home/elevi/.ssh/authorized_keys")
    lines[i] = "0" * 64 + "  /home/elevi/.ssh/authorized_keys"  # a key nobody listed
    plan = compute("ctl", desired(st, ROSTER, CFG, homes=True), parse_snapshot(lines))
    (change,) = plan.changes
    assert (change.action, change.kind, change.subject) == \
        ("change", "keys", "/home/elevi/.ssh/authorized_keys")
    assert change.argv[0][-1] == ""  # the roster lists no key: the file is emptied
