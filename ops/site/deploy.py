"""Releases on the web hosts: upload, switch ``current`` atomically, prune, roll back, archive.

The hosts are the inventory's ``web`` group (ops/inventory.py). Each host is reached with
the ``ssh`` client through the run's ssh_config (:mod:`ops.ssh`: as Ansible reaches it,
jump host included), with one small POSIX sh script per
step. A release travels by ``rsync`` over the same ssh (role ``website`` installs rsync on
the web hosts; ``sudo -n`` on the far side for a user other than root): into a partial
directory, with ``--link-dest`` to the live release and ``--checksum`` (Jekyll rewrites
every file's mtime on each build), so only the files that changed are sent and every
unchanged one is a hard link to the live release's: a release costs the disk of its
changed files. Nothing of the site is held in memory. Nothing here configures the web
server: role ``website`` does that (``ops provision``).

On each host, below ``website_root``::

    releases/<UTC time>-<git sha>[-dirty]-<4 hex>/   one directory per release (files 0644)
    current -> releases/<name>          the live release
    previous -> releases/<name>         the one before it (what a rollback goes back to)
    semesters/<id> -> .<id>~<hash>.<random>   archived semesters
    .lock                               every script holds it (flock -w 60)

Links are switched with ``ln -s`` to a temporary name + ``mv -T`` (rename is atomic). A
deploy sets ``previous`` to the release it replaces, then ``current`` to the new one, and
prunes; a rollback swaps ``current`` and ``previous`` (a second rollback undoes the first).
Every script holds ``$root/.lock``, and so does the remote rsync (``flock`` is its
``--rsync-path``); a deploy or rollback first checks that ``current`` is still the release
read before (another control machine may have switched it), else its upload is removed.
"""

from __future__ import annotations

import logging
import re
import secrets
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ops import run as run_mod
from ops import ssh
from ops.errors import OpsError, RemoteError
from ops.inventory import Host
from ops.site.releases import BUILD_MARKER, MARKER, RELEASE_RE

_LOG = logging.getLogger(__name__)
SSH_TIMEOUT = 120
#: an rsync of a release: a whole big site the first time
RSYNC_TIMEOUT = 1800
LOCK_WAIT = 60
EXIT_LOCKED = 75  # another script holds the host's lock
EXIT_MOVED = 76  # current is no longer the release read before
EXIT_ARCHIVED = 77  # the semester exists and --force was not given

#: Takes the host's lock (fd 9) or exits EXIT_LOCKED; stale partial uploads (older than an
#: hour: a killed deploy's) go while it is held.
_LOCK = r"""
exec 9>"$root/.lock"
flock -w LOCK_WAIT 9 || { echo "another deploy is running" >&2; exit EXIT_LOCKED; }
for d in "$root/releases" "$root/semesters"; do
  if [ -d "$d" ]; then
    find "$d" -mindepth 1 -maxdepth 1 -name '.*.partial' -mmin +60 -exec rm -rf -- {} +
  fi
done
""".replace("LOCK_WAIT", str(LOCK_WAIT)).replace("EXIT_LOCKED", str(EXIT_LOCKED))

#: ``switch LINK TARGET``: LINK -> TARGET, atomically (a stale temporary link is replaced).
_SWITCH_FN = r"""
switch() {
  rm -f -- "$1.tmp.$$"
  ln -s "$2" "$1.tmp.$$"
  mv -T -- "$1.tmp.$$" "$1"
}
"""

_STATE = (r"""set -eu
root=$1
if [ ! -d "$root/releases" ]; then echo "noroot=1"; exit 0; fi
""" + _LOCK + r"""
cur=$(readlink "$root/current" 2>/dev/null || true)
prev=$(readlink "$root/previous" 2>/dev/null || true)
echo "current=${cur##*/}"
echo "previous=${prev##*/}"
if [ -f "$root/current/MARKER" ]; then sed -n 's/^hash=/hash=/p' "$root/current/MARKER"; fi
for r in "$root"/releases/*; do if [ -d "$r" ]; then echo "release=${r##*/}"; fi; done
for s in "$root"/semesters/*; do if [ -L "$s" ]; then echo "semester=${s##*/}"; fi; done
exit 0
""").replace("MARKER", MARKER)

#: Publishes the release rsync put in ``releases/.<name>.partial``: switches previous and
#: current, prunes. Removes the upload if current moved meanwhile.
_PUBLISH = r"""set -eu
root=$1; name=$2; expect=$3; shift 3
""" + _LOCK + _SWITCH_FN + r"""
part="$root/releases/.$name.partial"
cur=$(readlink "$root/current" 2>/dev/null || true); cur=${cur##*/}
if [ "$cur" != "$expect" ]; then
  rm -rf -- "$part"
  echo "current is ${cur:-nothing} now, not ${expect:-nothing} as read" >&2; exit EXIT_MOVED
fi
if [ -e "$root/releases/$name" ]; then echo "release $name exists already" >&2; exit 3; fi
if [ ! -d "$part" ]; then echo "the upload of $name is not there" >&2; exit 3; fi
chmod 0755 "$part"
mv -T -- "$part" "$root/releases/$name"
if [ -n "$cur" ] && [ -d "$root/releases/$cur" ]; then switch "$root/previous" "releases/$cur"; fi
switch "$root/current" "releases/$name"
for old in "$@"; do
  case "$old" in ""|.*|*/*) continue ;; esac
  [ "$old" = "$name" ] && continue
  [ "$old" = "$cur" ] && continue
  rm -rf -- "$root/releases/$old"
  echo "pruned=$old"
done
echo "current=$name"
""".replace("EXIT_MOVED", str(EXIT_MOVED))

_ROLLBACK = r"""set -eu
root=$1; expect=$2
""" + _LOCK + _SWITCH_FN + r"""
cur=$(readlink "$root/current" 2>/dev/null || true); cur=${cur##*/}
prev=$(readlink "$root/previous" 2>/dev/null || true); prev=${prev##*/}
if [ "$cur" != "$expect" ]; then
  echo "current is ${cur:-nothing} now, not ${expect:-nothing} as read" >&2; exit EXIT_MOVED
fi
if [ -z "$prev" ] || [ "$prev" = "$cur" ] || [ ! -d "$root/releases/$prev" ]; then
  echo "no previous release to go back to" >&2; exit 3
fi
switch "$root/previous" "releases/$cur"
switch "$root/current" "releases/$prev"
echo "current=$prev"
echo "previous=$cur"
""".replace("EXIT_MOVED", str(EXIT_MOVED))

#: Publishes the semester rsync put in ``semesters/<new>.partial``: ``semesters/<id>`` ->
#: ``<new>``; the copy it replaced (only with force) is kept, older replaced ones go.
_ARCHIVE = r"""set -eu
root=$1; id=$2; new=$3; force=$4
dir="$root/semesters"
""" + _LOCK + _SWITCH_FN + r"""
part="$dir/$new.partial"
old=""
if [ -L "$dir/$id" ]; then
  old=$(readlink "$dir/$id")
elif [ -e "$dir/$id" ]; then
  rm -rf -- "$part"
  echo "$dir/$id is not a link course-ops made: move it away" >&2; exit 3
fi
if [ -n "$old" ] && [ "$force" != 1 ]; then
  rm -rf -- "$part"
  echo "semester $id is archived already" >&2; exit EXIT_ARCHIVED
fi
if [ ! -d "$part" ]; then echo "the upload of $id is not there" >&2; exit 3; fi
chmod 0755 "$part"
mv -T -- "$part" "$dir/$new"
switch "$dir/$id" "$new"
# the copy just replaced stays (a dot directory: never served); older replaced ones go
for d in "$dir/.$id~"*; do
  [ -d "$d" ] || continue
  case "${d##*/}" in "$new"|"$old"|*.partial) continue ;; esac
  rm -rf -- "$d"
  echo "removed=${d##*/}"
done
if [ -n "$old" ]; then echo "kept=$old"; fi
echo "archived=$id"
""".replace("EXIT_ARCHIVED", str(EXIT_ARCHIVED))


@dataclass
class HostState:
    current: str | None = None
    hash: str | None = None
    releases: list[str] = field(default_factory=list)
    previous: str | None = None
    semesters: list[str] = field(default_factory=list)


#: what every upload is sent with: recursive, symlinks as symlinks, modes set (so that
#: --link-dest finds unchanged files equal), compared by content
RSYNC_FLAGS = ["--recursive", "--links", "--perms", "--chmod=D0755,F0644", "--checksum",
               "--omit-dir-times", "--delete", "--stats", f"--exclude=/{BUILD_MARKER}"]


def rsync_argv(host: Host, root: str, src: Path, dest: str, link_dests: list[str]) -> list[str]:
    """``rsync`` of ``src``'s content into ``dest`` on ``host``, over ssh as Ansible would,
    the remote rsync holding the host's lock (and run with sudo for a user other than
    root)."""
    remote = ["flock", "-E", str(EXIT_LOCKED), "-w", str(LOCK_WAIT), f"{root}/.lock", "rsync"]
    if host.user != "root":
        remote = ["sudo", "-n", *remote]
    return ["rsync", *RSYNC_FLAGS, *(f"--link-dest={d}" for d in link_dests),
            "-e", shlex.join(ssh.command(host.reach)), "--rsync-path", shlex.join(remote),
            f"{src}/", f"{host.name}:{dest}/"]


@dataclass
class Sent:
    """What an rsync sent (its --stats)."""

    bytes: int = 0
    files: int = 0
    total_files: int = 0
    total_bytes: int = 0


_STAT = re.compile(r"^(?P<k>[A-Za-z ]+?):\s*(?P<v>[\d,.]+)", re.M)
_REGULAR = re.compile(r"^Number of files:.*?\breg:\s*(?P<n>[\d,]+)", re.M)


def parse_stats(out: str) -> Sent:
    """rsync's --stats: bytes sent, regular files sent, regular files, their bytes."""
    got = {m["k"].strip().lower(): int(float(m["v"].replace(",", "")))
           for m in _STAT.finditer(out)}
    reg = _REGULAR.search(out)
    return Sent(got.get("total bytes sent", 0),
                got.get("number of regular files transferred", 0),
                int(reg["n"].replace(",", "")) if reg else got.get("number of files", 0),
                got.get("total file size", 0))


def _rsync(host: Host, root: str, src: Path, dest: str, link_dests: list[str], *,
           what: str) -> Sent:
    if shutil.which("rsync") is None:
        raise OpsError("rsync is not installed here (deploys send only what changed with it)",
                       hint="apt-get install rsync")
    argv = rsync_argv(host, root, src, dest, link_dests)
    done = run_mod.capture(argv, what=f"{host.name}: {what}", timeout=RSYNC_TIMEOUT,
                           text=False, error=RemoteError)
    out = done.stdout.decode("utf-8", "replace")
    err = done.stderr.decode("utf-8", "replace").strip().splitlines()
    if done.returncode == EXIT_LOCKED:
        raise RemoteError(f"another deploy is running on {host.name}",
                          hint=f"nothing was changed there; run again when it is done "
                          f"(it holds the lock for over {LOCK_WAIT} s)")
    if done.returncode != 0:
        last = err[-1] if err else f"exit {done.returncode}"
        hint = ("is rsync installed there? (role website installs it: ops provision)"
                if "command not found" in " ".join(err) or done.returncode == 127 else
                "is the host up and the inventory's SSH settings right?"
                if done.returncode == 255 else "run with -v to see the command")
        raise RemoteError(f"{host.name}: {what} failed: {last}", hint=hint)
    return parse_stats(out)


def _ssh(host: Host, script: str, *args: str, stdin: bytes | None = None,
         what: str) -> dict[str, list[str]]:
    argv = ssh.argv(host.reach, script, *args)
    _LOG.debug("the script: %s", script)
    done = run_mod.capture(argv, what=f"{host.name}: {what}", timeout=SSH_TIMEOUT, text=False,
                           input=stdin, error=RemoteError,
                           shown=[*argv[:-1], "<script>", *args])
    err = done.stderr.decode("utf-8", "replace").strip().splitlines()
    last = err[-1] if err else f"exit {done.returncode}"
    if done.returncode == EXIT_LOCKED:
        raise RemoteError(f"another deploy is running on {host.name}",
                          hint=f"nothing was changed there; run again when it is done "
                          f"(it holds the lock for over {LOCK_WAIT} s)")
    if done.returncode == EXIT_MOVED:
        raise RemoteError(f"{host.name}: {what} stopped: {last}",
                          hint="another deploy or rollback switched it meanwhile; nothing "
                          "was changed by this one: run again")
    if done.returncode == EXIT_ARCHIVED:
        raise OpsError(f"{host.name}: {last}",
                       hint="pass --force to replace it (the old copy is kept, not served)")
    if done.returncode != 0:
        hint = ("is the host up and the inventory's SSH settings right?"
                if done.returncode == 255 else "run with -v to see the command")
        raise RemoteError(f"{host.name}: {what} failed: {last}", hint=hint)
    out: dict[str, list[str]] = {}
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def state(host: Host, root: str) -> HostState:
    got = _ssh(host, _STATE, root, what="reading the releases")
    if got.get("noroot"):
        raise RemoteError(f"{host.name}: {root}/releases does not exist",
                          hint="run `ops provision` first (role website makes it)")

    def one(key: str) -> str | None:
        return (got.get(key) or [""])[0] or None

    releases = sorted(r for r in got.get("release", []) if RELEASE_RE.match(r))
    return HostState(one("current"), one("hash"), releases, one("previous"),
                     sorted(got.get("semester", [])))


def upload(host: Host, root: str, name: str, out: Path, expect: str | None,
           prune: list[str]) -> tuple[list[str], Sent]:
    """rsync ``out`` into a partial release, hard-linking what ``expect`` (the live release)
    holds already; then, under the host's lock, if ``current`` is still ``expect``: publish
    it, point ``previous`` at ``expect`` and ``current`` at it, remove ``prune`` (never the
    two linked ones). The names pruned and what was sent."""
    if not RELEASE_RE.match(name):
        raise ValueError(f"not a release name: {name}")
    links = [f"{root}/releases/{expect}"] if expect else []
    sent = _rsync(host, root, out, f"{root}/releases/.{name}.partial", links,
                  what=f"uploading release {name}")
    got = _ssh(host, _PUBLISH, root, name, expect or "", *prune,
               what=f"uploading release {name}")
    if (got.get("current") or [""])[0] != name:
        raise RemoteError(f"{host.name}: current does not point at {name} after the switch",
                          hint="run with -v and look at the host's releases")
    return got.get("pruned", []), sent


def rollback(host: Host, root: str, expect: str) -> str:
    """Under the host's lock, if ``current`` is still ``expect``: swap ``current`` and
    ``previous``. The release now current."""
    got = _ssh(host, _ROLLBACK, root, expect, what="rolling back")
    return (got.get("current") or [""])[0]


def archive(host: Host, root: str, semester: str, tag: str, out: Path, *,
            force: bool = False, current: str | None = None) -> tuple[list[str], Sent]:
    """rsync ``out`` into a new dot directory (hard-linking what the live release and the
    semester's archived copy hold already), then switch ``semesters/<id>`` to it; the copy
    it replaced (only with ``force``) is kept. Returns what was said (``kept=``,
    ``removed=``) and what was sent."""
    new = f".{semester}~{tag}.{secrets.token_hex(4)}"
    links = [f"{root}/semesters/{semester}/"]
    if current:
        links.append(f"{root}/releases/{current}")
    sent = _rsync(host, root, out, f"{root}/semesters/{new}.partial", links,
                  what=f"archiving {semester}")
    got = _ssh(host, _ARCHIVE, root, semester, new, "1" if force else "0",
               what=f"archiving {semester}")
    return [f"{k}={v}" for k in ("kept", "removed") for v in got.get(k, [])], sent
