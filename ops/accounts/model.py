"""What the accounts should be: settings from group_vars, names and ids from the state file.

``allocate`` is pure: roster + previous state + settings -> the next state (new students get
a username and a UID, new pairs a group and a GID, students gone from the roster are marked
``left``). ``desired`` turns a state into what one host must hold.
"""

from __future__ import annotations

import copy
import datetime as dt
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops import names
from ops.errors import InputError
from ops.roster import Roster
from ops.state import (
    ACTIVE,
    LEFT,
    OFFBOARDED,
    SUBID_COUNT,
    AccountsState,
    PairRecord,
    StaffRecord,
    StudentRecord,
)

NOLOGIN_SHELL = "/usr/sbin/nologin"
#: the groups (and Slurm accounts) of the class and of the staff, unless the inventory
#: names others (accounts_course_group, accounts_staff_group)
COURSE_GROUP = "course"
STAFF_GROUP = "course-staff"
#: groups that are root-equivalent or privileged; a student is never in one of them
FORBIDDEN_GROUPS = frozenset(
    {"sudo", "wheel", "admin", "adm", "docker", "root", "lxd", "disk", "shadow", "systemd-journal"}
)


@dataclass(frozen=True)
class StaffMember:
    """One entry of ``accounts_staff``."""

    username: str
    name: str
    email: str
    keys: tuple[str, ...] = ()
    sudo: bool = False  # in the sudo group (only those marked so); never docker


def _staff(v: dict[str, Any], bad: Callable[[str, str], InputError]) -> tuple[StaffMember, ...]:
    from ops.roster import check_ssh_key

    raw = v.get("accounts_staff") or []
    if not isinstance(raw, list):
        raise bad("accounts_staff", "expected a list of {username, name, email, keys, sudo}")
    out: list[StaffMember] = []
    for i, entry in enumerate(raw, 1):
        if not isinstance(entry, dict) or set(entry) - {"username", "name", "email", "keys",
                                                        "sudo"}:
            raise bad("accounts_staff", f"entry {i}: expected the keys username, name, email, "
                      "keys (a list), sudo (true/false)")
        username = str(entry.get("username", ""))
        why = names.why_invalid(username)
        if why:
            raise bad("accounts_staff", f"entry {i}: {why}")
        if username in {m.username for m in out}:
            raise bad("accounts_staff", f"entry {i}: {username!r} is listed twice")
        keys = entry.get("keys") or []
        keys = [keys] if isinstance(keys, str) else keys
        for key in keys:
            reason = check_ssh_key(str(key))
            if reason:
                raise bad("accounts_staff", f"{username}: malformed SSH public key: {reason}")
        text = f"{entry.get('name', '')} {entry.get('email', '')}"
        if names.control_character(text):
            raise bad("accounts_staff", f"{username}: a control character in name or email")

        sudo = entry.get("sudo", False)
        if not isinstance(sudo, bool):
            raise bad("accounts_staff", f"{username}: sudo must be true or false")
        out.append(StaffMember(username, str(entry.get("name", "")),
                               str(entry.get("email", "")),
                               tuple(" ".join(str(k).split()) for k in keys), sudo))
    return tuple(out)


@dataclass(frozen=True)
class AccountsConfig:
    expire_date: dt.date
    uid_range: tuple[int, int]
    pair_gid_range: tuple[int, int]
    course_group: str
    course_gid: int
    pairs_dir: str
    home_root: str
    shell: str
    password_login: bool
    shared_home: bool
    #: subordinate UIDs/GIDs (rootless containers): SUBID_COUNT per student from this range
    subid_range: tuple[int, int] = (1_000_000, 1_999_999_999)
    #: the course staff (accounts outside the pairs) and their group
    staff: tuple[StaffMember, ...] = ()
    staff_group: str = STAFF_GROUP
    staff_gid: int = 19998
    #: a sync that would lock more students than this stops (None: 10% of the class, >= 5)
    max_leavers: int | None = None
    #: the file and line of a setting (for errors about it); from_vars sets it
    source: Callable[[str], tuple[Path, int | None]] | None = field(
        default=None, compare=False, repr=False)

    def where(self, key: str, fallback: Path | str) -> tuple[Path | str, int | None]:
        return self.source(key) if self.source else (fallback, None)

    @classmethod
    def from_vars(cls, v: dict[str, Any], source: Path,
                  where: Callable[[str], tuple[Path, int | None]] | None = None
                  ) -> AccountsConfig:
        """The settings; ``where(key)`` names the file and line of a bad one."""
        def bad(key: str, what: str) -> InputError:
            path, line = where(key) if where else (source, None)
            return InputError(
                path, line, f"{key}: {what}", hint="see inventory/example/group_vars/all.yml"
            )

        def id_range(key: str, default: list[int]) -> tuple[int, int]:
            r = v.get(key, default)
            if (
                not isinstance(r, list)
                or len(r) != 2
                or not all(isinstance(x, int) for x in r)
                or not 1000 <= r[0] < r[1] < 2**31 - 1
            ):
                raise bad(key, "expected [low, high] with 1000 <= low < high")
            return int(r[0]), int(r[1])

        raw = v.get("accounts_expire_date")
        if isinstance(raw, dt.date):
            expire = raw
        else:
            try:
                expire = dt.date.fromisoformat(str(raw))
            except ValueError:
                raise bad(
                    "accounts_expire_date", f"expected a date YYYY-MM-DD, got {raw!r}"
                ) from None
        uid_r, gid_r = (
            id_range("accounts_uid_range", [20000, 29999]),
            id_range("accounts_pair_gid_range", [30000, 39999]),
        )
        if uid_r[0] <= gid_r[1] and gid_r[0] <= uid_r[1]:
            raise bad(
                "accounts_pair_gid_range",
                "overlaps accounts_uid_range "
                "(a student's private group has the student's UID as its GID)",
            )
        try:
            course_gid = int(v.get("accounts_course_gid", 19999))
        except (TypeError, ValueError):
            raise bad("accounts_course_gid", "expected a number") from None
        if uid_r[0] <= course_gid <= uid_r[1] or gid_r[0] <= course_gid <= gid_r[1]:
            raise bad("accounts_course_gid", "lies inside one of the id ranges")
        group = str(v.get("accounts_course_group", COURSE_GROUP))
        if not names.POSIX_NAME.match(group) or group in FORBIDDEN_GROUPS:
            raise bad("accounts_course_group", f"{group!r} is not a valid or allowed group name")
        paths = {
            k: str(v.get(k, d))
            for k, d in (
                ("accounts_pairs_dir", "/home/pairs"),
                ("accounts_home_root", "/home"),
                ("accounts_shell", "/bin/bash"),
            )
        }
        for k, p in paths.items():
            if not p.startswith("/") or p.rstrip("/") == "":
                raise bad(k, f"expected an absolute path, got {p!r}")
        sub_r = id_range("accounts_subid_range", [1_000_000, 1_999_999_999])
        if sub_r[0] < 100_000 or sub_r[1] - sub_r[0] + 1 < SUBID_COUNT:
            raise bad("accounts_subid_range", f"expected [low, high] with low >= 100000 and "
                      f"room for at least one range of {SUBID_COUNT}")
        for other, r in (("accounts_uid_range", uid_r), ("accounts_pair_gid_range", gid_r),
                         ("accounts_course_gid", (course_gid, course_gid))):
            if sub_r[0] <= r[1] and r[0] <= sub_r[1]:
                raise bad("accounts_subid_range", f"overlaps {other}: a student's container "
                          "ids would be real users' or groups' ids")
        staff_group = str(v.get("accounts_staff_group", STAFF_GROUP))
        if names.why_invalid(staff_group) or staff_group in FORBIDDEN_GROUPS \
                or staff_group == group:
            raise bad("accounts_staff_group", f"{staff_group!r} is not a valid or allowed "
                      "group name")
        try:
            staff_gid = int(v.get("accounts_staff_gid", 19998))
        except (TypeError, ValueError):
            raise bad("accounts_staff_gid", "expected a number") from None
        if staff_gid == course_gid or any(r[0] <= staff_gid <= r[1]
                                          for r in (uid_r, gid_r, sub_r)):
            raise bad("accounts_staff_gid", "is the course group's or inside an id range")
        leavers = v.get("accounts_max_leavers")
        if leavers is not None and (type(leavers) is not int or leavers < 0):
            raise bad("accounts_max_leavers", f"expected a number of students, got {leavers!r}")
        return cls(
            expire,
            uid_r,
            gid_r,
            group,
            course_gid,
            paths["accounts_pairs_dir"].rstrip("/"),
            paths["accounts_home_root"].rstrip("/"),
            paths["accounts_shell"],
            flag(v, "accounts_password_login", False, bad),
            flag(v, "accounts_shared_home", True, bad),
            sub_r,
            _staff(v, bad),
            staff_group,
            staff_gid,
            leavers,
            where or (lambda _key: (source, None)),
        )

    def leaver_limit(self, class_size: int) -> int:
        """How many students one sync may lock: ``accounts_max_leavers``, else 10% of the
        class or 5, whichever is larger."""
        return self.max_leavers if self.max_leavers is not None else max(5, class_size // 10)

    @property
    def expire_days(self) -> int:
        """The expiry as /etc/shadow stores it: days since 1970-01-01."""
        return (self.expire_date - dt.date(1970, 1, 1)).days


def flag(v: dict[str, Any], key: str, default: bool, bad: Any) -> bool:
    """A true/false setting; a quoted "false" is false, anything unclear is an error."""
    raw = v.get(key, default)
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise bad(key, f"expected true or false, got {raw!r}")


def leavers(before: AccountsState, after: AccountsState) -> list[str]:
    """Usernames active in ``before`` that ``after`` locks (left) or drops."""
    return sorted(r.username for sid, r in before.students.items() if r.status == ACTIVE
                  and (sid not in after.students or after.students[sid].status != ACTIVE))


def allocate(
    roster: Roster, previous: AccountsState, cfg: AccountsConfig, source: Path
) -> AccountsState:
    """The next state for this roster; never renames, renumbers or reuses."""
    st = copy.deepcopy(previous)
    by_id = roster.by_id()
    # pairs: group names and gids
    pairs = roster.pairs()
    staff_names = [m.username for m in cfg.staff] + list(st.staff)
    clash = sorted({m.username for m in cfg.staff} & {r.username for r in st.students.values()})
    if clash:
        raise InputError(*cfg.where("accounts_staff", source),
                         f"accounts_staff: {clash[0]!r} is a student's username already",
                         hint="give the staff member another username")
    group_names = names.assign(
        {k: names.pair_group_base(k) for k in pairs},
        {k: p.group for k, p in st.pairs.items()},
        taken=[cfg.course_group, cfg.staff_group, *staff_names],
    )
    for key in sorted(pairs):
        rec = st.pairs.get(key)
        if rec is None or rec.status == OFFBOARDED:  # offboarded: a new gid, never reused
            gid = max(st.pair_gid_high + 1, cfg.pair_gid_range[0])
            if gid > cfg.pair_gid_range[1]:
                raise InputError(
                    *cfg.where("accounts_pair_gid_range", source),
                    f"accounts_pair_gid_range is used up (the state file {source} has given "
                    f"every gid up to {st.pair_gid_high})",
                    hint="widen it in group_vars",
                )
            st.pair_gid_high = gid
            st.pairs[key] = PairRecord(group_names[key], gid, ACTIVE)
        elif rec.status != ACTIVE:
            rec.status = ACTIVE  # a pair that left (not yet offboarded) comes back
    # students: usernames and uids
    usernames = names.assign(
        {sid: names.base_username(s.first_name, s.last_name, sid) for sid, s in by_id.items()},
        {sid: r.username for sid, r in st.students.items()},
        taken=[cfg.course_group, cfg.staff_group, *staff_names, *group_names.values(),
               *(p.group for p in st.pairs.values())],
    )
    for sid in sorted(by_id):
        s = by_id[sid]
        rec_s = st.students.get(sid)
        if rec_s is None or rec_s.status == OFFBOARDED:  # offboarded: a new uid, never reused
            uid = max(st.uid_high + 1, cfg.uid_range[0])
            if uid > cfg.uid_range[1]:
                raise InputError(
                    *cfg.where("accounts_uid_range", source),
                    f"accounts_uid_range is used up (the state file {source} has given every "
                    f"uid up to {st.uid_high})",
                    hint="widen it in group_vars",
                )
            st.uid_high = uid
            st.students[sid] = StudentRecord(
                usernames[sid], uid, s.pair, ACTIVE, s.first_name, s.last_name
            )
        else:
            rec_s.status, rec_s.pair = ACTIVE, s.pair
            rec_s.first_name, rec_s.last_name = s.first_name, s.last_name
    for sid, rec_s in st.students.items():
        if sid not in by_id and rec_s.status == ACTIVE:
            rec_s.status = LEFT
    # staff: uids from the same range (never reused either); one who is no longer listed
    # is locked, like a student who left
    for m in cfg.staff:
        rec_m = st.staff.get(m.username)
        if rec_m is None or rec_m.status == OFFBOARDED:
            uid = max(st.uid_high + 1, cfg.uid_range[0])
            if uid > cfg.uid_range[1]:
                raise InputError(*cfg.where("accounts_uid_range", source),
                                 "accounts_uid_range is used up", hint="widen it in group_vars")
            st.uid_high = uid
            st.staff[m.username] = StaffRecord(uid, 0, ACTIVE, m.name)
        else:
            rec_m.status, rec_m.name = ACTIVE, m.name
    listed = {m.username for m in cfg.staff}
    for name, rec_m in st.staff.items():
        if name not in listed and rec_m.status == ACTIVE:
            rec_m.status = LEFT
    # subordinate ids: a range of its own for every account, never reused (kept while the
    # account exists, locked or not), given in uid order so every run agrees
    accounts: list[StudentRecord | StaffRecord] = [*st.students.values(), *st.staff.values()]
    for acct in sorted(accounts, key=lambda r: r.uid):
        if acct.status != OFFBOARDED and not acct.subid:
            start = max(st.subid_high + 1, cfg.subid_range[0])
            if start + SUBID_COUNT - 1 > cfg.subid_range[1]:
                raise InputError(
                    *cfg.where("accounts_subid_range", source),
                    f"accounts_subid_range is used up (the state file {source} has given "
                    f"every subordinate id up to {st.subid_high})",
                    hint="widen it in group_vars",
                )
            acct.subid = start
            st.subid_high = start + SUBID_COUNT - 1
    for key, p in st.pairs.items():
        if key not in pairs and p.status == ACTIVE:
            p.status = LEFT
    return st


@dataclass(frozen=True)
class WantUser:
    name: str
    uid: int
    gid: int
    comment: str
    home: str
    shell: str
    groups: frozenset[str]  # supplementary, exactly
    expire_days: int | None  # None: never (staff)
    locked: bool
    keys: tuple[str, ...] = ()
    password_login: bool = False
    subid: int = 0  # first subordinate uid/gid (SUBID_COUNT of them); 0: none


@dataclass(frozen=True)
class WantDir:
    path: str
    uid: int
    gid: int
    mode: int  # e.g. 0o2770
    skel: bool = False  # seed from /etc/skel when first made


@dataclass
class Desired:
    groups: dict[str, int] = field(default_factory=dict)  # name -> gid
    users: dict[str, WantUser] = field(default_factory=dict)
    dirs: dict[str, WantDir] = field(default_factory=dict)
    #: every username the state file ever gave (an offboarded one's leftovers are ours)
    managed: frozenset[str] = frozenset()


def child(root: str, name: str) -> str:
    """``root/name`` for a validated name; never a path outside ``root``."""
    why = names.why_invalid(name)
    path = posixpath.normpath(f"{root}/{name}")
    if why or posixpath.dirname(path) != posixpath.normpath(root):
        raise ValueError(f"refusing a path for {name!r} under {root}: {why or 'outside it'}")
    return path


def comment_for(rec: StudentRecord) -> str:
    text = f"{rec.first_name} {rec.last_name}".strip()
    return "".join(ch for ch in text if ch not in ":,=\n\r") or rec.username


def desired(state: AccountsState, roster: Roster, cfg: AccountsConfig, *, homes: bool) -> Desired:
    """What one host must hold; ``homes``: this host makes the homes and pair dirs."""
    want = Desired(managed=frozenset([*(r.username for r in state.students.values()),
                                      *state.staff]))
    want.groups[cfg.course_group] = cfg.course_gid
    if state.staff:
        want.groups[cfg.staff_group] = cfg.staff_gid
    for p in state.pairs.values():
        if p.status != OFFBOARDED:
            want.groups[p.group] = p.gid
    by_id = roster.by_id()
    for sid, rec in sorted(state.students.items(), key=lambda kv: kv[1].uid):
        if rec.status == OFFBOARDED:
            continue
        want.groups[rec.username] = rec.uid
        home = child(cfg.home_root, rec.username)
        active = rec.status == ACTIVE
        # a student who left keeps the account, locked: no login shell, no groups, expired
        want.users[rec.username] = WantUser(
            rec.username,
            rec.uid,
            rec.uid,
            comment_for(rec),
            home,
            shell=cfg.shell if active else NOLOGIN_SHELL,
            groups=frozenset({cfg.course_group, state.pairs[rec.pair].group})
            if active
            else frozenset(),
            expire_days=cfg.expire_days if active else 1,
            locked=not active,
            keys=by_id[sid].ssh_keys if active and sid in by_id else (),
            password_login=cfg.password_login,
            subid=rec.subid,
        )
        if homes and active:
            want.dirs[home] = WantDir(home, rec.uid, rec.uid, 0o700, skel=True)
    members = {m.username: m for m in cfg.staff}
    for name, rec_m in sorted(state.staff.items(), key=lambda kv: kv[1].uid):
        if rec_m.status == OFFBOARDED:
            continue
        member = members.get(name)
        active = rec_m.status == ACTIVE and member is not None
        want.groups[name] = rec_m.uid
        home = child(cfg.home_root, name)
        want.users[name] = WantUser(
            name, rec_m.uid, rec_m.uid,
            "".join(ch for ch in rec_m.name if ch not in ":,=\n\r") or name, home,
            shell=cfg.shell if active else NOLOGIN_SHELL,
            # outside the pairs and the course group; sudo only where marked so
            groups=frozenset({cfg.staff_group, *(["sudo"] if member and member.sudo else [])})
            if active else frozenset(),
            expire_days=None if active else 1,
            locked=not active,
            keys=member.keys if active and member else (),
            password_login=cfg.password_login,
            subid=rec_m.subid,
        )
        if homes and active:
            want.dirs[home] = WantDir(home, rec_m.uid, rec_m.uid, 0o700, skel=True)
    if homes:
        want.dirs[cfg.pairs_dir] = WantDir(cfg.pairs_dir, 0, 0, 0o755)
        for p in state.pairs.values():
            if p.status == ACTIVE:
                path = child(cfg.pairs_dir, p.group)
                want.dirs[path] = WantDir(path, 0, p.gid, 0o2770)
    return want
