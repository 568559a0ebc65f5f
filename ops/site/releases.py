"""Releases: their names, the hash of their content, which old ones to remove.

A release is ``releases/<UTC time>-<git short sha>[-dirty]`` (``-nogit`` when the source is
not in git) on each web host; ``current`` is a symlink to one of them. Names sort by time,
so the newest release is the last name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import subprocess
from pathlib import Path

RELEASE_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-z]+(?:-dirty)?$")
#: Written into every release (dot files are never served): its name and content hash.
MARKER = ".course-ops-release"


def git_describe(source: Path) -> str:
    """``<short sha>``, ``<short sha>-dirty`` (uncommitted changes under the source) or
    ``nogit``."""
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True,
                              text=True, check=False)

    try:
        sha = git("rev-parse", "--short=7", "HEAD")
    except FileNotFoundError:
        return "nogit"
    if sha.returncode != 0 or not sha.stdout.strip():
        return "nogit"
    status = git("status", "--porcelain", "--untracked-files=normal", "--", ".")
    dirty = status.returncode != 0 or bool(status.stdout.strip())
    return sha.stdout.strip() + ("-dirty" if dirty else "")


def release_name(source: Path, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return f"{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{git_describe(source)}"


def content_hash(out: Path) -> str:
    """SHA-256 over every built file's path, mode bit x and bytes (deterministic order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in out.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(out).as_posix()
        if rel == MARKER:
            continue
        digest.update(rel.encode() + b"\0")
        digest.update(b"->" + str(path.readlink()).encode() if path.is_symlink()
                      else path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def to_prune(releases: list[str], keep: int, current: str | None,
             previous: str | None) -> list[str]:
    """The releases to remove so that ``keep`` remain: the oldest first, never ``current``
    nor ``previous`` (the one a rollback goes back to), never a name that is not a release.
    """
    if keep < 2:
        raise ValueError("keep at least 2 releases (the current one and the previous one)")
    ours = sorted(r for r in set(releases) if RELEASE_RE.match(r))
    protected = {r for r in (current, previous) if r}
    newest = set(ours[-keep:])
    excess = len(ours) - keep
    out: list[str] = []
    for r in ours:  # oldest first
        if excess <= 0:
            break
        if r in protected or r in newest:
            continue
        out.append(r)
        excess -= 1
    return out


def previous_of(releases: list[str], current: str | None) -> str | None:
    """The release a rollback switches to: the newest one older than ``current``."""
    ours = sorted(r for r in set(releases) if RELEASE_RE.match(r))
    if current not in ours:
        return None
    i = ours.index(current)
    return ours[i - 1] if i > 0 else None
