"""Releases: their names, the hash of their content, which old ones to remove.

A release is ``releases/<UTC time>-<git short sha>[-dirty]-<4 hex>`` (``-nogit`` when the
source is not in git; the random suffix keeps two deploys of one commit within a second
apart) on each web host. ``current`` is a symlink to the live release and ``previous`` to
the one before it; both are switched together, under the host's lock
(ops/site/deploy.py), so a rollback never depends on how names sort (clocks of different
control machines may disagree). Names sort by time: pruning keeps the newest by name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
import subprocess
from pathlib import Path

from ops import run as run_mod
from ops.errors import OpsError

#: Older releases have no random suffix; they are still releases (pruned, rolled back to).
RELEASE_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-z]+(?:-dirty)?(?:-[0-9a-f]{4})?$")
#: Written into every release (dot files are never served): its name and content hash.
MARKER = ".course-ops-release"
#: Written into every output directory a build makes: only a directory that is empty or
#: holds it is emptied by the next build. Neither uploaded nor part of the content hash.
BUILD_MARKER = ".course-ops-build"


def git_describe(source: Path) -> str:
    """``<short sha>``, ``<short sha>-dirty`` (uncommitted changes under the source) or
    ``nogit``."""
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return run_mod.capture(["git", "-C", str(source), *args], what="git", timeout=30,
                               level=logging.DEBUG)

    try:
        sha = git("rev-parse", "--short=7", "HEAD")
    except OpsError:  # no git here
        return "nogit"
    if sha.returncode != 0 or not sha.stdout.strip():
        return "nogit"
    try:
        status = git("status", "--porcelain", "--untracked-files=normal", "--", ".")
    except OpsError:  # it did not answer in time: say dirty, not clean
        return sha.stdout.strip() + "-dirty"
    dirty = status.returncode != 0 or bool(status.stdout.strip())
    return sha.stdout.strip() + ("-dirty" if dirty else "")


def release_name(source: Path, now: dt.datetime | None = None, suffix: str | None = None) -> str:
    """``<UTC time>-<git>-<4 random hex>`` (``suffix`` replaces the random part)."""
    now = now or dt.datetime.now(dt.UTC)
    suffix = secrets.token_hex(2) if suffix is None else suffix
    return f"{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{git_describe(source)}-{suffix}"


def content_hash(out: Path) -> str:
    """SHA-256 over every built file's relative path and bytes (a symlink's target instead of
    bytes), in sorted order; the markers are left out. File modes are not hashed: every
    release's files are made 0644 on the host anyway."""
    digest = hashlib.sha256()
    for path in sorted(p for p in out.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(out).as_posix()
        if rel in (MARKER, BUILD_MARKER):
            continue
        digest.update(rel.encode() + b"\0")
        if path.is_symlink():
            digest.update(b"->" + str(path.readlink()).encode())
        else:
            with path.open("rb") as f:  # in chunks: memory does not grow with a file
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def to_prune(releases: list[str], keep: int, current: str | None,
             previous: str | None) -> list[str]:
    """The releases to remove so that ``keep`` remain: ``current`` and ``previous`` (the one
    a rollback goes back to) always, then the newest others by name; never a name that is
    not a release. Oldest first."""
    if keep < 2:
        raise ValueError("keep at least 2 releases (the current one and the previous one)")
    ours = sorted(r for r in set(releases) if RELEASE_RE.match(r))
    protected = {r for r in (current, previous) if r in ours}
    others = [r for r in ours if r not in protected]
    room = max(keep - len(protected), 0)
    kept = set(others[max(len(others) - room, 0):]) if room else set()
    return [r for r in others if r not in kept]
