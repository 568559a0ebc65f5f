"""Student accounts and pair spaces, as the plan says, checked on every host.

Access is tried for real, as the students themselves (their uid and groups, via setpriv):
a student cannot enter another pair's directory or another student's home, a partner can
write the pair directory, and `sudo -n true` fails.
"""

from __future__ import annotations

import datetime as dt
import shlex

import pytest

FORBIDDEN = {"sudo", "wheel", "admin", "adm", "docker", "root", "lxd", "disk", "shadow"}


def as_user(host, user: str, command: str):  # noqa: ANN001, ANN201
    """Run ``command`` as the student (uid, groups); the first line proves who ran it."""
    argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--",
            "sh", "-c", f"id -un && {command}"]
    r = host.run(shlex.join(argv))
    assert r.stdout.split("\n", 1)[0] == user, f"could not run as {user}: {r.stderr}"
    return r


def denied(host, user: str, command: str) -> bool:  # noqa: ANN001
    """The student tried and the kernel said no (not: the attempt itself broke)."""
    r = as_user(host, user, command)
    return r.rc != 0 and "Permission denied" in r.stderr


def test_course_group(host, expected) -> None:  # noqa: ANN001
    g = host.group(expected.cfg.course_group)
    assert g.exists
    assert g.gid == expected.cfg.course_gid


def test_student_account(host, expected, student) -> None:  # noqa: ANN001
    rec = expected.record(student)
    pair = expected.state.pairs[rec.pair].group
    u = host.user(student)
    assert u.exists, f"{student} is missing"
    assert (u.uid, u.gid) == (rec.uid, rec.uid)
    assert u.group == student  # a private primary group of its own
    assert host.group(student).gid == rec.uid
    assert u.home == f"{expected.cfg.home_root}/{student}"
    assert u.shell == expected.cfg.shell
    assert set(u.groups) == {student, pair, expected.cfg.course_group}
    assert u.expiration_date is not None
    assert u.expiration_date.date() == expected.cfg.expire_date


def test_student_has_no_password_login(host, expected, student) -> None:  # noqa: ANN001
    if expected.cfg.password_login:
        pytest.skip("the inventory enables password login")
    kind = host.check_output("awk -F: -v u=%s '$1==u {print substr($2,1,1)}' /etc/shadow",
                             student)
    assert kind == "*", f"{student} has a usable or locked password field (kind {kind!r})"


def test_student_never_privileged(host, student) -> None:  # noqa: ANN001
    assert not FORBIDDEN & set(host.user(student).groups)
    if not host.exists("sudo"):
        return  # no sudo at all on this host: nothing to be allowed
    rules = host.run("sudo -n -l -U %s", student)
    assert "is not allowed to run sudo" in rules.stdout + rules.stderr, rules.stdout
    assert as_user(host, student, "sudo -n true").rc != 0


def test_home_is_private(host, expected, student) -> None:  # noqa: ANN001
    rec = expected.record(student)
    home = host.file(f"{expected.cfg.home_root}/{student}")
    assert home.is_directory and not home.is_symlink
    assert (home.uid, home.gid) == (rec.uid, rec.uid)
    assert home.mode == 0o700


def test_authorized_keys(host, expected, student) -> None:  # noqa: ANN001
    rec = expected.record(student)
    keys = expected.keys(student)
    f = host.file(f"{expected.cfg.home_root}/{student}/.ssh/authorized_keys")
    assert f.is_file and not f.is_symlink
    assert (f.uid, f.mode) == (rec.uid, 0o600)
    assert f.content_string == "".join(k + "\n" for k in keys)  # exactly the roster's keys


def test_other_homes_are_closed(host, expected, student) -> None:  # noqa: ANN001
    others = [u for u in expected.students("active") if u != student]
    if not others:
        pytest.skip("a class of one")
    other = others[sum(map(ord, student)) % len(others)]
    path = shlex.quote(f"{expected.cfg.home_root}/{other}")
    assert denied(host, student, f"ls {path}")
    assert denied(host, student, f"touch {path}/.intruder")


def test_group_members_exactly(host, expected, pair_group) -> None:  # noqa: ANN001
    assert sorted(host.group(pair_group).members) == expected.members(pair_group)


def test_course_group_members_exactly(host, expected) -> None:  # noqa: ANN001
    assert sorted(host.group(expected.cfg.course_group).members) == expected.students("active")


def test_pair_dir(host, expected, pair_group) -> None:  # noqa: ANN001
    d = host.file(f"{expected.cfg.pairs_dir}/{pair_group}")
    assert d.is_directory and not d.is_symlink
    assert (d.user, d.group) == ("root", pair_group)
    assert d.gid == expected.gid(pair_group)
    assert d.mode == 0o2770


def test_partners_write_their_pair_dir(host, expected, pair_group) -> None:  # noqa: ANN001
    base = f"{expected.cfg.pairs_dir}/{pair_group}"
    for member in expected.members(pair_group):
        probe = shlex.quote(f"{base}/.ops-verify-{member}")
        r = as_user(host, member, f"touch {probe} && stat -c %G {probe} && rm -f {probe}")
        assert r.rc == 0, f"{member} cannot write {base}: {r.stderr}"
        assert r.stdout.split()[-1] == pair_group  # setgid: new files belong to the pair


def test_other_pairs_are_closed(host, expected, pair_group) -> None:  # noqa: ANN001
    pairs = expected.active_pairs()
    other = pairs[(pairs.index(pair_group) + 1) % len(pairs)]
    if other == pair_group:
        pytest.skip("a class of one group")
    target = shlex.quote(f"{expected.cfg.pairs_dir}/{other}")
    for member in expected.members(pair_group):
        assert denied(host, member, f"ls {target}")
        assert denied(host, member, f"touch {target}/.intruder")


def test_left_student_is_locked(host, expected, left_student) -> None:  # noqa: ANN001
    u = host.user(left_student)
    assert u.exists
    assert u.shell == "/usr/sbin/nologin"
    assert u.expiration_date is not None and u.expiration_date.date() < dt.date.today()
    kind = host.check_output("awk -F: -v u=%s '$1==u {print substr($2,1,1)}' /etc/shadow",
                             left_student)
    assert kind == "!"
    assert set(u.groups) == {left_student}


def test_offboarded_student_is_gone(host, offboarded_student) -> None:  # noqa: ANN001
    assert not host.user(offboarded_student).exists


@pytest.fixture(scope="module")
def subid_files(host) -> dict[str, list[str]]:  # noqa: ANN001
    """/etc/subuid and /etc/subgid, read once per host."""
    return {kind: host.file(f"/etc/{kind}").content_string.splitlines()
            for kind in ("subuid", "subgid")}


@pytest.mark.parametrize("kind", ["subuid", "subgid"])
def test_student_has_exactly_their_subordinate_range(subid_files, expected, student,  # noqa: ANN001
                                                     kind: str) -> None:
    from ops.state import SUBID_COUNT

    rec = expected.record(student)
    lines = [ln for ln in subid_files[kind] if ln.split(":", 1)[0] == student]
    assert lines == [f"{student}:{rec.subid}:{SUBID_COUNT}"]
    lo, hi = rec.subid, rec.subid + SUBID_COUNT - 1
    for ln in subid_files[kind]:
        name, start, count = ln.split(":")
        if name != student:
            assert int(start) + int(count) - 1 < lo or int(start) > hi, \
                f"/etc/{kind}: {ln} overlaps {student}'s range"


def test_staff_account(host, expected, staff_member) -> None:  # noqa: ANN001
    """Staff: like a student's account, outside the pairs and the course group, in the
    staff group, sudo only where marked, never docker, no expiry."""
    member = next(m for m in expected.cfg.staff if m.username == staff_member)
    rec = expected.state.staff[staff_member]
    u = host.user(staff_member)
    assert u.exists and (u.uid, u.gid) == (rec.uid, rec.uid)
    want = {staff_member, expected.cfg.staff_group, *(["sudo"] if member.sudo else [])}
    assert set(u.groups) == want
    assert u.expiration_date is None
    home = host.file(f"{expected.cfg.home_root}/{staff_member}")
    if home.exists:  # made on the home host
        assert (home.user, home.mode) == (staff_member, 0o700)
