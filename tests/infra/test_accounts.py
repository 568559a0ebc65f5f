"""Student accounts and pair spaces, as the plan says, checked on every host.

Access is tried for real, as the students themselves (their uid and groups, via setpriv):
a student cannot enter another pair's directory or another student's home, a partner can
write the pair directory, and `sudo -n true` fails.

What the checks look at is read once per host (:func:`facts`: one script lists the account
databases, stats the homes, keys and pair directories, asks sudo about every student and
runs every access attempt as its student), then each student, pair and staff member is its
own check against that listing: a verify of a class costs a few round trips per host, not
thousands, and every check can still fail on its own.
"""

from __future__ import annotations

import base64
import datetime as dt
import shlex
from dataclasses import dataclass, field

import pytest

from tests.infra.conftest import on_every_host_at_once

FORBIDDEN = {"sudo", "wheel", "admin", "adm", "docker", "root", "lxd", "disk", "shadow"}
EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class Stat:
    kind: str  # stat's %F ("directory", "regular file", "symbolic link", ...), not followed
    uid: int
    gid: int
    mode: int
    user: str
    group: str


@dataclass(frozen=True)
class Attempt:
    """A command a student ran (in a shell of theirs: ``setpriv`` to their uid and groups)."""
    rc: int
    stdout: str
    stderr: str
    who: str  # ``id -un`` in the student's shell that made the attempt

    def denied(self) -> bool:
        """The student tried and the kernel said no (not: the attempt itself broke)."""
        return self.rc != 0 and "Permission denied" in self.stderr


@dataclass
class Facts:
    """One host's accounts, read in one go."""
    passwd: dict[str, list[str]] = field(default_factory=dict)  # name -> the 7 fields
    groups: dict[str, tuple[int, list[str]]] = field(default_factory=dict)  # gid, members
    shadow: dict[str, tuple[str, str]] = field(default_factory=dict)  # kind, expire (days)
    id_groups: dict[str, list[str]] = field(default_factory=dict)  # `id -nG`
    stats: dict[str, Stat | None] = field(default_factory=dict)
    keys: dict[str, str | None] = field(default_factory=dict)  # user -> authorized_keys
    has_sudo: bool = False
    sudo_rules: dict[str, str] = field(default_factory=dict)  # `sudo -n -l -U`, said
    attempts: dict[str, Attempt] = field(default_factory=dict)

    def expiration(self, user: str) -> dt.date | None:
        days = self.shadow[user][1]
        return EPOCH + dt.timedelta(days=int(days)) if days else None

    def attempt(self, key: str) -> Attempt:
        a = self.attempts[key]
        user = key.split(" ", 1)[0]
        assert a.who == user, f"could not run as {user}: {a.stderr}"
        return a


def _b64(text: str) -> str:
    return base64.b64decode(text).decode("utf-8", "replace")  # "" for an empty field


def other_home(expected, student: str) -> str | None:  # noqa: ANN001
    """The other student whose home ``student`` tries (a fixed pick, spread over the class)."""
    others = [u for u in expected.students("active") if u != student]
    return others[sum(map(ord, student)) % len(others)] if others else None


def other_pair(expected, pair: str) -> str | None:  # noqa: ANN001
    pairs = expected.active_pairs()
    other = pairs[(pairs.index(pair) + 1) % len(pairs)]
    return None if other == pair else other


def facts_script(expected) -> str:  # noqa: ANN001
    """The shell script that lists everything the checks look at, in sections.

    Its size grows by a short data line per student (the access attempts are made on the
    host from those lines, by one shell of each student's), so a class of hundreds stays
    well under the 128 KiB a single command line may have."""
    cfg = expected.cfg
    q = shlex.quote
    users = " ".join(q(u) for u in sorted({*(r.username for r in expected.state.students.values()),
                                         *(m.username for m in cfg.staff)}))
    pairs = " ".join(q(p) for p in expected.active_pairs())
    active_pairs = set(expected.active_pairs())
    tries = ""
    for student in expected.students("active"):
        group = expected.state.pairs[expected.record(student).pair].group
        group = group if group in active_pairs else ""
        other = other_pair(expected, group) if group else None
        tries += f"{student}:{other_home(expected, student) or ''}:{group}:{other or ''}\n"
    return rf"""export LC_ALL=C
H={q(cfg.home_root)} P={q(cfg.pairs_dir)} N=$(hostname)
echo '== passwd'; getent passwd
echo '== group'; getent group
echo '== shadow'  # the password field's first character only: never a hash
getent shadow | awk -F: '{{print $1 ":" substr($2,1,1) ":" $8}}'
echo '== id'
for u in {users}; do printf '%s:' "$u"; id -nG "$u" 2>/dev/null || echo; done
echo '== stat'
{{ for u in {users}; do printf '%s\n' "$H/$u" "$H/$u/.ssh/authorized_keys"; done
  for g in {pairs}; do printf '%s\n' "$P/$g"; done; }} | while IFS= read -r p; do
  stat -c '%n|%F|%u|%g|%a|%U|%G' -- "$p" 2>/dev/null || printf '%s|-\n' "$p"
done
echo '== keys'
for u in {users}; do
  f="$H/$u/.ssh/authorized_keys"
  if [ -f "$f" ]; then printf '%s %s\n' "$u" "$(base64 -w0 < "$f")"; else echo "$u -"; fi
done
echo '== sudo'
if command -v sudo >/dev/null; then
  echo yes
  for u in {users}; do printf '%s %s\n' "$u" "$(sudo -n -l -U "$u" 2>&1 | base64 -w0)"; done
fi
echo '== attempts'
# What a student tries, run by one shell of theirs (setpriv: their uid and groups): lines
# KEY|SCRIPT|ARG in, lines KEY|RC|WHO|STDOUT|STDERR (base64) out; WHO is `id -un` there.
tries='who=$(id -un); t=$(mktemp -d) || exit 1
while IFS="|" read -r key script arg; do
  (set -- "$arg"; eval "$script") >"$t/o" 2>"$t/e" </dev/null
  rc=$? o= e=
  [ -s "$t/o" ] && o=$(base64 -w0 < "$t/o")
  [ -s "$t/e" ] && e=$(base64 -w0 < "$t/e")
  printf "%s|%s|%s|%s|%s\n" "$key" "$rc" "$who" "$o" "$e"
done
rm -rf "$t"'
while IFS=: read -r u other g og; do
  {{
    echo "$u sudo|sudo -n true|"
    if [ -n "$other" ]; then
      echo "$u ls-home|ls \"\$1\"|$H/$other"
      echo "$u touch-home|touch \"\$1/.intruder\"|$H/$other"
    fi
    if [ -n "$g" ]; then
      probe="$P/$g/.ops-verify-$u.$N"  # this host's own: the hosts may share the directory
      echo "$u write-pair|touch \"\$1\" && stat -c %G \"\$1\" && rm -f \"\$1\"|$probe"
    fi
    if [ -n "$og" ]; then
      echo "$u ls-pair|ls \"\$1\"|$P/$og"
      echo "$u touch-pair|touch \"\$1/.intruder\"|$P/$og"
    fi
  }} | (cd / && setpriv --reuid="$u" --regid="$u" --init-groups -- sh -c "$tries")
done <<'TRIES'
{tries}TRIES
echo '== end'
"""


def parse_facts(text: str) -> Facts:
    f = Facts()
    section = ""
    for line in text.splitlines():
        if line.startswith("== "):
            section = line[3:]
            continue
        if section == "passwd" and line.count(":") == 6:
            parts = line.split(":")
            f.passwd[parts[0]] = parts
        elif section == "group" and line.count(":") == 3:
            name, _, gid, members = line.split(":")
            f.groups[name] = (int(gid), [m for m in members.split(",") if m])
        elif section == "shadow" and line.count(":") == 2:
            name, kind, expire = line.split(":")
            f.shadow[name] = (kind, expire)
        elif section == "id" and ":" in line:
            name, groups = line.split(":", 1)
            f.id_groups[name] = groups.split()
        elif section == "stat" and "|" in line:
            parts = line.split("|")
            kind = "regular file" if parts[1] == "regular empty file" else parts[1]
            f.stats[parts[0]] = None if parts[1:] == ["-"] else Stat(
                kind, int(parts[2]), int(parts[3]), int(parts[4], 8), parts[5], parts[6])
        elif section == "keys" and " " in line:
            name, data = line.split(" ", 1)
            f.keys[name] = None if data == "-" else _b64(data)
        elif section == "sudo":
            if line == "yes":
                f.has_sudo = True
            elif " " in line:
                name, data = line.split(" ", 1)
                f.sudo_rules[name] = _b64(data)
        elif section == "attempts" and line.count("|") == 4:
            key, rc, who, out, err = line.split("|")
            f.attempts[key] = Attempt(int(rc), _b64(out), _b64(err), who)
    if section != "end":
        raise AssertionError(f"the accounts listing stopped in its {section or 'first'} "
                             "section")
    return f


def read_facts(host, script: str) -> Facts:  # noqa: ANN001
    """The host's listing; once more if the connection broke (ssh's exit 255), which says
    nothing of the accounts. Any other failure is the host's, and fails its checks."""
    r = host.run("sh -c %s", script)
    if r.rc == 255:
        r = host.run("sh -c %s", script)
    assert r.rc == 0, (f"the accounts listing failed (exit {r.rc}): {r.stderr[-2000:]} "
                       f"(it printed {len(r.stdout)} characters)")
    return parse_facts(r.stdout)


@pytest.fixture(scope="module")
def facts(host, expected, request: pytest.FixtureRequest) -> Facts:  # noqa: ANN001
    """Everything this spec checks on the host, read in one round trip (every host's at
    once: they run on the hosts, side by side)."""
    script = facts_script(expected)
    return on_every_host_at_once(request, host, lambda target: read_facts(target, script))


def account(facts: Facts, user: str) -> list[str]:
    assert user in facts.passwd and user in facts.id_groups, f"{user} is missing"
    return facts.passwd[user]


def test_course_group(facts, expected) -> None:  # noqa: ANN001
    assert expected.cfg.course_group in facts.groups
    assert facts.groups[expected.cfg.course_group][0] == expected.cfg.course_gid


def test_student_account(facts, expected, student) -> None:  # noqa: ANN001
    rec = expected.record(student)
    pair = expected.state.pairs[rec.pair].group
    _, _, uid, gid, _, home, shell = account(facts, student)
    assert (int(uid), int(gid)) == (rec.uid, rec.uid)
    assert facts.id_groups[student][0] == student  # a private primary group of its own
    assert facts.groups[student][0] == rec.uid
    assert home == f"{expected.cfg.home_root}/{student}"
    assert shell == expected.cfg.shell
    assert set(facts.id_groups[student]) == {student, pair, expected.cfg.course_group}
    assert facts.expiration(student) == expected.cfg.expire_date


def test_student_has_no_password_login(facts, expected, student) -> None:  # noqa: ANN001
    if expected.cfg.password_login:
        pytest.skip("the inventory enables password login")
    kind = facts.shadow.get(student, ("", ""))[0]
    assert kind == "*", f"{student} has a usable or locked password field (kind {kind!r})"


def test_student_never_privileged(facts, student) -> None:  # noqa: ANN001
    account(facts, student)
    assert not FORBIDDEN & set(facts.id_groups[student])
    if not facts.has_sudo:
        return  # no sudo at all on this host: nothing to be allowed
    rules = facts.sudo_rules[student]
    assert "is not allowed to run sudo" in rules, rules
    assert facts.attempt(f"{student} sudo").rc != 0


def test_home_is_private(facts, expected, student) -> None:  # noqa: ANN001
    rec = expected.record(student)
    home = facts.stats[f"{expected.cfg.home_root}/{student}"]
    assert home is not None and home.kind == "directory", f"{student}'s home: {home}"
    assert (home.uid, home.gid) == (rec.uid, rec.uid)
    assert home.mode == 0o700


def test_authorized_keys(facts, expected, student) -> None:  # noqa: ANN001
    rec = expected.record(student)
    keys = expected.keys(student)
    f = facts.stats[f"{expected.cfg.home_root}/{student}/.ssh/authorized_keys"]
    assert f is not None and f.kind == "regular file", f"{student}'s authorized_keys: {f}"
    assert (f.uid, f.mode) == (rec.uid, 0o600)
    assert facts.keys[student] == "".join(k + "\n" for k in keys)  # exactly the roster's


def test_other_homes_are_closed(facts, expected, student) -> None:  # noqa: ANN001
    if other_home(expected, student) is None:
        pytest.skip("a class of one")
    assert facts.attempt(f"{student} ls-home").denied()
    assert facts.attempt(f"{student} touch-home").denied()


def test_group_members_exactly(facts, expected, pair_group) -> None:  # noqa: ANN001
    assert pair_group in facts.groups, f"{pair_group} is missing"
    assert sorted(facts.groups[pair_group][1]) == expected.members(pair_group)


def test_course_group_members_exactly(facts, expected) -> None:  # noqa: ANN001
    assert sorted(facts.groups[expected.cfg.course_group][1]) == expected.students("active")


def test_pair_dir(facts, expected, pair_group) -> None:  # noqa: ANN001
    d = facts.stats[f"{expected.cfg.pairs_dir}/{pair_group}"]
    assert d is not None and d.kind == "directory", f"{pair_group}'s directory: {d}"
    assert (d.user, d.group) == ("root", pair_group)
    assert d.gid == expected.gid(pair_group)
    assert d.mode == 0o2770


def test_partners_write_their_pair_dir(facts, expected, pair_group) -> None:  # noqa: ANN001
    base = f"{expected.cfg.pairs_dir}/{pair_group}"
    for member in expected.members(pair_group):
        r = facts.attempt(f"{member} write-pair")
        assert r.rc == 0, f"{member} cannot write {base}: {r.stderr}"
        assert r.stdout.split()[-1] == pair_group  # setgid: new files belong to the pair


def test_other_pairs_are_closed(facts, expected, pair_group) -> None:  # noqa: ANN001
    if other_pair(expected, pair_group) is None:
        pytest.skip("a class of one group")
    for member in expected.members(pair_group):
        assert facts.attempt(f"{member} ls-pair").denied()
        assert facts.attempt(f"{member} touch-pair").denied()


def test_left_student_is_locked(facts, expected, left_student) -> None:  # noqa: ANN001
    shell = account(facts, left_student)[6]
    assert shell == "/usr/sbin/nologin"
    expires = facts.expiration(left_student)
    assert expires is not None and expires < dt.date.today()
    assert facts.shadow[left_student][0] == "!"
    assert set(facts.id_groups[left_student]) == {left_student}


def test_offboarded_student_is_gone(facts, offboarded_student) -> None:  # noqa: ANN001
    assert offboarded_student not in facts.passwd


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


def test_staff_account(facts, expected, staff_member) -> None:  # noqa: ANN001
    """Staff: like a student's account, outside the pairs and the course group, in the
    staff group, sudo only where marked, never docker, no expiry."""
    member = next(m for m in expected.cfg.staff if m.username == staff_member)
    rec = expected.state.staff[staff_member]
    _, _, uid, gid, *_ = account(facts, staff_member)
    assert (int(uid), int(gid)) == (rec.uid, rec.uid)
    want = {staff_member, expected.cfg.staff_group, *(["sudo"] if member.sudo else [])}
    assert set(facts.id_groups[staff_member]) == want
    assert facts.expiration(staff_member) is None
    home = facts.stats[f"{expected.cfg.home_root}/{staff_member}"]
    if home is not None:  # made on the home host
        assert (home.user, home.mode) == (staff_member, 0o700)
