"""Releases on the web hosts: upload, switch ``current`` atomically, prune, roll back, archive.

The hosts are the inventory's ``web`` group (ops/inventory.py). Each host is reached with
the ``ssh`` client, as Ansible reaches it (``ansible_host``/``_port``/``_user``, the private
key and ``ansible_ssh_common_args`` of the inventory), with one small POSIX sh script per
step; a release travels as one gzipped tar on the script's stdin. Nothing here configures
the web server: role ``website`` does that (``ops provision``).

On each host, below ``website_root``::

    releases/<UTC time>-<git sha>[-dirty]/   one directory per release (its files 0644)
    current -> releases/<name>               switched with ln -s to a temporary name + mv -T
    semesters/<id> -> .<id>-<hash>           archived semesters, switched the same way
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ops.errors import OpsError, RemoteError
from ops.inventory import Host
from ops.site.releases import MARKER, RELEASE_RE

_LOG = logging.getLogger(__name__)
Log = Callable[[str], None]
SSH_TIMEOUT = 120

_STATE = r"""set -eu
root=$1
if [ ! -d "$root/releases" ]; then echo "noroot=1"; exit 0; fi
cur=$(readlink "$root/current" 2>/dev/null || true)
echo "current=${cur##*/}"
if [ -f "$root/current/MARKER" ]; then sed -n 's/^hash=/hash=/p' "$root/current/MARKER"; fi
for r in "$root"/releases/*; do [ -d "$r" ] && echo "release=${r##*/}"; done
exit 0
""".replace("MARKER", MARKER)

_UPLOAD = r"""set -eu
umask 022
root=$1; name=$2; shift 2
part="$root/releases/.$name.partial"
rm -rf -- "$part"
mkdir -p -- "$part"
tar -xzf - -C "$part" --no-same-owner --no-same-permissions
chmod 0755 "$part"
mv -T -- "$part" "$root/releases/$name"
ln -s "releases/$name" "$root/.current.$$"
mv -T -- "$root/.current.$$" "$root/current"
cur=$(readlink "$root/current")
for old in "$@"; do
  case "$old" in ""|.*|*/*) continue ;; esac
  [ "releases/$old" = "$cur" ] && continue
  [ "$old" = "$name" ] && continue
  rm -rf -- "$root/releases/$old"
  echo "pruned=$old"
done
echo "current=${cur##*/}"
"""

_SWITCH = r"""set -eu
root=$1; name=$2
if [ ! -d "$root/releases/$name" ]; then echo "no release $name" >&2; exit 3; fi
ln -s "releases/$name" "$root/.current.$$"
mv -T -- "$root/.current.$$" "$root/current"
echo "current=$name"
"""

_ARCHIVE = r"""set -eu
umask 022
root=$1; id=$2; tag=$3
dir="$root/semesters"
mkdir -p -- "$dir"
part="$dir/.$id-$tag.partial"
rm -rf -- "$part"
mkdir -p -- "$part"
tar -xzf - -C "$part" --no-same-owner --no-same-permissions
chmod 0755 "$part"
old=$(readlink "$dir/$id" 2>/dev/null || true)
if [ -e "$dir/$id" ] && [ ! -L "$dir/$id" ]; then
  echo "$dir/$id is not a link course-ops made" >&2; exit 3
fi
rm -rf -- "$dir/.$id-$tag"
mv -T -- "$part" "$dir/.$id-$tag"
ln -s ".$id-$tag" "$dir/.$id.link.$$"
mv -T -- "$dir/.$id.link.$$" "$dir/$id"
if [ -n "$old" ] && [ "$old" != ".$id-$tag" ]; then rm -rf -- "$dir/$old"; fi
echo "archived=$id"
"""


@dataclass
class HostState:
    current: str | None = None
    hash: str | None = None
    releases: list[str] = field(default_factory=list)


def ssh_argv(host: Host, script: str, *args: str) -> list[str]:
    """``ssh`` to ``host`` as Ansible would, running ``sh -c SCRIPT sh ARGS...`` there."""
    argv = ["ssh", "-p", str(host.port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
    key = host.vars.get("ansible_ssh_private_key_file") or host.vars.get(
        "ansible_private_key_file")
    if key:
        argv += ["-i", os.path.expanduser(str(key))]
    argv += shlex.split(str(host.vars.get("ansible_ssh_common_args", "")))
    argv += shlex.split(str(host.vars.get("ansible_ssh_extra_args", "")))
    remote = ["sh", "-c", script, "sh", *args]
    if host.user != "root":
        remote = ["sudo", "-n", *remote]
    return [*argv, f"{host.user}@{host.address}", "--", shlex.join(remote)]


def _ssh(host: Host, script: str, *args: str, stdin: bytes | None = None,
         what: str) -> dict[str, list[str]]:
    argv = ssh_argv(host, script, *args)
    _LOG.info("$ %s", shlex.join(argv[:-1] + ["<script>", *args]))
    _LOG.debug("the script: %s", argv[-1])
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, timeout=SSH_TIMEOUT,
                              check=False)
    except FileNotFoundError:
        raise OpsError("the ssh client is not installed",
                       hint="apt-get install openssh-client") from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{host.name}: {what} did not finish in {SSH_TIMEOUT} s") from None
    err = done.stderr.decode("utf-8", "replace").strip().splitlines()
    if done.returncode != 0:
        last = err[-1] if err else f"exit {done.returncode}"
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
    releases = sorted(r for r in got.get("release", []) if RELEASE_RE.match(r))
    return HostState((got.get("current") or [""])[0] or None, (got.get("hash") or [""])[0]
                     or None, releases)


def tarball(out: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(out.rglob("*")):
            tar.add(path, arcname=path.relative_to(out).as_posix(), recursive=False,
                    filter=_reset_owner)
    return buf.getvalue()


def _reset_owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def upload(host: Host, root: str, name: str, data: bytes, prune: list[str]) -> list[str]:
    """Unpack the release, switch ``current`` to it, remove ``prune``; the names pruned."""
    got = _ssh(host, _UPLOAD, root, name, *prune, stdin=data, what=f"uploading release {name}")
    if (got.get("current") or [""])[0] != name:
        raise RemoteError(f"{host.name}: current does not point at {name} after the switch")
    return got.get("pruned", [])


def switch(host: Host, root: str, name: str) -> None:
    _ssh(host, _SWITCH, root, name, what=f"switching current to {name}")


def archive(host: Host, root: str, semester: str, tag: str, data: bytes) -> None:
    _ssh(host, _ARCHIVE, root, semester, tag, stdin=data, what=f"archiving {semester}")
