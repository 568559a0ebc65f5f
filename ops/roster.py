"""The class roster: a CSV of students, validated whole before anything is applied.

Format (UTF-8, with or without BOM, LF or CRLF)::

    student_id,first_name,last_name,email,pair[,ssh_public_key]

A ``pair`` value shared by two rows is a pair; a value used once is a single. Every problem
is collected with its line number and reported at once (:class:`ops.errors.InputErrors`).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
import struct
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ops import names
from ops.errors import InputError, InputErrors

REQUIRED_COLUMNS = ("student_id", "first_name", "last_name", "email", "pair")
OPTIONAL_COLUMNS = ("ssh_public_key",)

_STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s,;<>]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
SSH_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
MAX_PAIR_SIZE = 2
MAX_PAIR_LEN = 16  # keeps every pair group name a valid POSIX name


@dataclass(frozen=True)
class Student:
    student_id: str
    first_name: str
    last_name: str
    email: str
    pair: str  # the normalised pair key (see pair_key)
    ssh_keys: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class Roster:
    path: str
    students: tuple[Student, ...]

    def pairs(self) -> dict[str, tuple[Student, ...]]:
        """Pair key -> its one or two members, in roster order."""
        out: dict[str, list[Student]] = defaultdict(list)
        for s in self.students:
            out[s.pair].append(s)
        return {k: tuple(v) for k, v in out.items()}

    def by_id(self) -> dict[str, Student]:
        return {s.student_id: s for s in self.students}


def pair_key(value: str) -> str:
    """Normalise a pair value: ``17`` and ``017`` are the same pair; case is ignored."""
    v = " ".join(value.split())
    return str(int(v)) if v.isascii() and v.isdigit() else v.casefold()


def check_ssh_key(text: str) -> str | None:
    """Return None when ``text`` is one well-formed OpenSSH public key, else the reason."""
    parts = text.split()
    if len(parts) < 2:
        return "expected '<type> <base64> [comment]'"
    kind, blob = parts[0], parts[1]
    if kind not in SSH_KEY_TYPES:
        return f"unknown key type {kind!r}"
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return "the key data is not valid base64"
    if len(raw) < 4:
        return "the key data is truncated"
    (n,) = struct.unpack(">I", raw[:4])
    if raw[4 : 4 + n] != kind.encode():
        return f"the key data does not match its type {kind!r}"
    return None


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            path, line, "not UTF-8 text", hint="save the roster as UTF-8 CSV"
        ) from None


def parse(text: str, path: Path | str = "<roster>") -> Roster:
    """Parse and validate roster text; raise InputErrors listing every problem."""
    problems: list[tuple[int | None, str]] = []
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(
            path,
            1,
            "the roster is empty",
            hint=f"the first line must be: {','.join(REQUIRED_COLUMNS)}",
        ) from None
    columns = [c.strip().lower() for c in header]
    for c in columns:
        if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            problems.append(
                (
                    1,
                    f"unknown column {c!r} (known: "
                    f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)})",
                )
            )
    for c in REQUIRED_COLUMNS:
        if c not in columns:
            problems.append((1, f"missing required column {c!r}"))
    dup_cols = {c for c in columns if columns.count(c) > 1}
    for c in sorted(dup_cols):
        problems.append((1, f"column {c!r} appears twice"))
    if problems:
        raise InputErrors(path, problems)

    students: list[Student] = []
    first_seen: dict[str, int] = {}
    pair_lines: dict[str, list[int]] = defaultdict(list)
    start = 2
    try:
        for row in reader:
            line = start
            start = reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                problems.append((line, f"expected {len(columns)} fields, found {len(row)}"))
                continue
            rec = {c: cell.strip() for c, cell in zip(columns, row, strict=True)}
            bad = [(c, ch) for c in columns if (ch := names.control_character(rec[c]))]
            if bad:
                problems += [(line, f"{c} holds a control character ({ch}); remove it")
                             for c, ch in bad]
                continue
            missing = [c for c in REQUIRED_COLUMNS if not rec[c]]
            if missing:
                problems.append((line, f"missing required field {', '.join(missing)}"))
                continue
            sid = rec["student_id"]
            row_ok = True
            if not _STUDENT_ID.match(sid):
                problems.append((line, f"malformed student_id {sid!r} (letters, digits, . _ -)"))
                row_ok = False
            elif sid in first_seen:
                problems.append(
                    (line, f"duplicate student_id {sid!r} (first on line {first_seen[sid]})")
                )
                row_ok = False
            else:
                first_seen[sid] = line
            if not _EMAIL.match(rec["email"]):
                problems.append((line, f"malformed email {rec['email']!r}"))
                row_ok = False
            keys: list[str] = []
            for key in filter(None, (k.strip() for k in rec.get("ssh_public_key", "").split(";"))):
                why = check_ssh_key(key)
                if why:
                    problems.append((line, f"malformed SSH public key: {why}"))
                    row_ok = False
                keys.append(" ".join(key.split()))
            pk = pair_key(rec["pair"])
            if len(pk) > MAX_PAIR_LEN:
                problems.append(
                    (line, f"pair value {rec['pair']!r} is longer than {MAX_PAIR_LEN} characters")
                )
                row_ok = False
            pair_lines[pk].append(line)
            if len(pair_lines[pk]) > MAX_PAIR_SIZE:
                others = ", ".join(str(n) for n in pair_lines[pk][:-1])
                problems.append(
                    (
                        line,
                        f"pair {rec['pair']!r} has more than {MAX_PAIR_SIZE} "
                        f"students (also on lines {others})",
                    )
                )
                row_ok = False
            if row_ok:
                students.append(
                    Student(
                        sid,
                        rec["first_name"],
                        rec["last_name"],
                        rec["email"],
                        pk,
                        tuple(keys),
                        line,
                    )
                )
    except csv.Error as exc:
        problems.append((reader.line_num, f"CSV syntax error: {exc}"))
    if problems:
        raise InputErrors(path, problems)
    return Roster(str(path), tuple(students))


def load(path: Path) -> Roster:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(
            path,
            None,
            "no such roster file",
            hint="pass --roster FILE or set accounts_roster in group_vars",
        ) from None
    except OSError as exc:
        raise InputError(path, None, f"cannot read the roster: {exc.strerror}") from None
    return parse(_decode(path, data), path)
