"""The accounts state file: names and ids once given, so every node agrees forever.

``<inventory>/state/accounts.json`` records, per student, the username and UID given and
whether the student is active, has left (locked) or was offboarded; per pair, its group name
and GID. IDs are never renumbered and never reused: a new one is always above every id the
file ever held. Writes are atomic (temp file + rename) and the file is 0600 in a 0700 dir.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ops import names
from ops.errors import InputError, OpsError

VERSION = 1
ACTIVE, LEFT, OFFBOARDED = "active", "left", "offboarded"
STATUSES = (ACTIVE, LEFT, OFFBOARDED)
#: Subordinate UIDs (and as many GIDs) each student gets: 65536, what rootless Podman's
#: user namespace needs for an image's system users.
SUBID_COUNT = 65536


@dataclass
class StudentRecord:
    username: str
    uid: int
    pair: str
    status: str = ACTIVE
    first_name: str = ""
    last_name: str = ""
    #: the first of the student's subordinate UIDs and GIDs (/etc/subuid, /etc/subgid:
    #: rootless containers); 0 until the accounts sync gives one
    subid: int = 0


@dataclass
class PairRecord:
    group: str
    gid: int
    status: str = ACTIVE


@dataclass
class StaffRecord:
    """A member of the course staff (``accounts_staff`` in group_vars): an account on every
    node like a student's, outside the pairs, never removed without offboarding."""

    uid: int
    subid: int = 0
    status: str = ACTIVE
    name: str = ""


@dataclass
class AccountsState:
    students: dict[str, StudentRecord] = field(default_factory=dict)
    pairs: dict[str, PairRecord] = field(default_factory=dict)
    # the highest ids ever given (so an offboarded id is never given again)
    uid_high: int = 0
    pair_gid_high: int = 0
    subid_high: int = 0  # the last subordinate id ever given
    staff: dict[str, StaffRecord] = field(default_factory=dict)  # username -> record

    def to_json(self) -> str:
        doc = {
            "version": VERSION,
            "uid_high": self.uid_high,
            "pair_gid_high": self.pair_gid_high,
            "subid_high": self.subid_high,
            "students": {k: asdict(v) for k, v in sorted(self.students.items())},
            "pairs": {k: asdict(v) for k, v in sorted(self.pairs.items())},
            "staff": {k: asdict(v) for k, v in sorted(self.staff.items())},
        }
        return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def _bad(path: Path, line: int | None, what: str) -> InputError:
    return InputError(
        path,
        line,
        what,
        hint="restore it from your backup or version control; do not hand-edit ids",
    )


def parse(text: str, path: Path) -> AccountsState:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(path, exc.lineno, f"not valid JSON ({exc.msg})") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise _bad(path, 1, f"not an accounts state file of version {VERSION}")
    try:
        students = {str(k): StudentRecord(**v) for k, v in doc.get("students", {}).items()}
        pairs = {str(k): PairRecord(**v) for k, v in doc.get("pairs", {}).items()}
        state = AccountsState(
            students, pairs, int(doc.get("uid_high", 0)), int(doc.get("pair_gid_high", 0)),
            int(doc.get("subid_high", 0)),
            {str(k): StaffRecord(**v) for k, v in doc.get("staff", {}).items()},
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise _bad(path, None, f"malformed record ({exc})") from None
    for sid, s in state.students.items():
        if (
            s.status not in STATUSES
            or type(s.uid) is not int
            or type(s.subid) is not int
            or s.subid < 0
            or not isinstance(s.username, str)
            or s.pair not in state.pairs
        ):
            raise _bad(
                path,
                _line_of(text, sid),
                f"student {sid!r} has a bad status, uid, subid, username or pair",
            )
    for key, p in state.pairs.items():
        if p.status not in STATUSES or type(p.gid) is not int or not isinstance(p.group, str):
            raise _bad(path, _line_of(text, key), f"pair {key!r} has a bad status, gid or group")
    # names become paths and arguments of root commands: held to the rules of a new name
    for sid, s in state.students.items():
        why = names.why_invalid(s.username) or _control(s.first_name) or _control(s.last_name)
        if why:
            raise _bad(path, _line_of(text, sid), f"student {sid!r}: {why}")
    for key, p in state.pairs.items():
        why = names.why_invalid(p.group)
        if why:
            raise _bad(path, _line_of(text, key), f"pair {key!r}: {why}")
    for name, m in state.staff.items():
        why = names.why_invalid(name) or (
            None if m.status in STATUSES and type(m.uid) is int and type(m.subid) is int
            else "a bad status, uid or subid") or _control(m.name)
        if why or name in {s.username for s in state.students.values()}:
            raise _bad(path, _line_of(text, name),
                       f"staff {name!r}: {why or 'is also a student'}")
    uids = [s.uid for s in state.students.values()] + [m.uid for m in state.staff.values()]
    gids = [p.gid for p in state.pairs.values()]
    usernames = [s.username for s in state.students.values()]
    if len(set(uids)) != len(uids) or len(set(gids)) != len(gids):
        raise _bad(path, None, "two records share one id")
    if len(set(usernames)) != len(usernames):
        raise _bad(path, None, "two students share one username")
    # the high-water marks never fall below an id the file holds (ids are never reused)
    state.uid_high = max([state.uid_high, *uids])
    state.pair_gid_high = max([state.pair_gid_high, *gids])
    records: list[StudentRecord | StaffRecord] = [*state.students.values(),
                                                  *state.staff.values()]
    starts = sorted(s.subid for s in records if s.subid)
    if len(set(starts)) != len(starts):
        raise _bad(path, None, "two students share one subordinate id range")
    state.subid_high = max([state.subid_high, *(s + SUBID_COUNT - 1 for s in starts)])
    return state


def _control(text: str) -> str | None:
    bad = names.control_character(text)
    return f"the name {text!r} holds a control character ({bad})" if bad else None


def _line_of(text: str, key: str) -> int | None:
    needle = json.dumps(key) + ":"
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    return None


class StateFile:
    """The state file of one inventory, with an exclusive lock while a run changes it."""

    def __init__(self, inventory_dir: Path) -> None:
        self.dir = inventory_dir / "state"
        self.path = self.dir / "accounts.json"

    def load(self) -> AccountsState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return AccountsState()
        return parse(text, self.path)

    def save(self, state: AccountsState) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".accounts.", dir=self.dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(state.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OpsError(
                    f"{self.path}: another `ops accounts` run holds the lock",
                    hint="wait for it to finish",
                ) from None
            yield
