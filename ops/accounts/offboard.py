"""Offboarding: archive, check the archive, then remove. Never the other way round.

For each student (and each pair directory whose members are all gone): the home host makes a
tar.gz and a sha256 manifest of every file; both are fetched into the archive directory
(0700, files 0600); the archive must list every file of the manifest with the same digest;
only then are the accounts and groups removed from every host and the directories deleted.
"""

from __future__ import annotations

import hashlib
import shlex
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.accounts.model import allocate, child
from ops.accounts.sync import Context
from ops.errors import OpsError, Refused, RemoteError, UsageError
from ops.state import ACTIVE, LEFT, OFFBOARDED, AccountsState

#: Work area for archives on the home host (/var/lib is not writable by students, so nobody
#: can plant a symlink there): root's, 0711; each archive gets its own mktemp directory
#: inside, 0700 and owned by the ops user from the start, so only root and that user can
#: ever read an archive (never a world-readable copy in /tmp, as a sudo download makes).
REMOTE_BASE = "/var/lib/course-ops/offboard"
_CHUNK = 1 << 20


def choose(state: AccountsState, who: list[str], everyone: bool) -> list[str]:
    """Student ids to offboard: the named ones, everyone, or (default) those who left."""
    live = {sid: r for sid, r in state.students.items() if r.status != OFFBOARDED}
    if everyone:
        return sorted(live)
    if not who:
        return sorted(sid for sid, r in live.items() if r.status == LEFT)
    out = []
    for w in who:
        sid = next((s for s, r in live.items() if w in (s, r.username)), None)
        if sid is None:
            raise UsageError(
                f"no current student {w!r}",
                hint="name a username or student_id from the state file",
            )
        if live[sid].status == ACTIVE:
            raise UsageError(
                f"{w} is still on the roster",
                hint="remove them from the roster first, or use --all at semester end",
            )
        out.append(sid)
    return sorted(out)


def pairs_emptied(state: AccountsState, sids: list[str], everyone: bool) -> list[str]:
    gone = set(sids)
    out = []
    for key, p in state.pairs.items():
        if p.status == OFFBOARDED or (p.status == ACTIVE and not everyone):
            continue
        members = [s for s, r in state.students.items() if r.pair == key and r.status != OFFBOARDED]
        if all(m in gone for m in members):
            out.append(key)
    return sorted(out)


def read_manifest(manifest: Path) -> dict[str, str]:
    """``sha256sum -z`` output: ``<digest>  <name>`` records ended by NUL, names unescaped."""
    want: dict[str, str] = {}
    for rec in manifest.read_bytes().split(b"\0"):
        digest, sep, name = rec.partition(b"  ")
        if sep:
            want[name.decode("utf-8", "surrogateescape")] = digest.decode()
    return want


def check_archive(archive: Path, manifest: Path) -> int:
    """Every file of the manifest is in the archive with the same sha256; return the count.

    Hard links are stored once by tar; a link entry counts with its target's content."""
    want = read_manifest(manifest)
    with tarfile.open(archive, "r:gz") as tar:
        have: dict[str, str] = {}
        links: dict[str, str] = {}
        for m in tar.getmembers():
            if m.isfile():
                fh = tar.extractfile(m)
                have[m.name] = _sha256(fh) if fh else hashlib.sha256(b"").hexdigest()
            elif m.islnk():
                links[m.name] = m.linkname
        for name, target in links.items():
            if target in have:
                have[name] = have[target]
    missing = sorted(n for n in want if n not in have)
    if missing:
        raise OpsError(
            f"{archive}: {len(missing)} file(s) of the manifest are missing, e.g. {missing[0]}",
            hint="nothing was removed; check the disk and retry",
        )
    wrong = sorted(n for n, d in want.items() if have[n] != d)
    if wrong:
        raise OpsError(
            f"{archive}: {wrong[0]} differs from the manifest",
            hint="nothing was removed; retry when the student is logged out",
        )
    return len(want)


def _sha256(fh: Any) -> str:
    """The sha256 of a file object, read in chunks (a 20 GB checkpoint needs no 20 GB)."""
    digest = hashlib.sha256()
    while chunk := fh.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _sh(host: Any, command: str) -> str:
    sudo = host.data.get("ssh_user", "root") != "root"
    ok, output = host.run_shell_command(command, _sudo=sudo)
    if not ok:
        raise RemoteError(f"{host.name}: `{command[:80]}` failed: {output.stderr[-300:]}")
    return str(output.stdout)


def _archive(host: Any, parent: str, name: str, dest: Path) -> int | None:
    """tar.gz + manifest of parent/name fetched into dest; None when there is no such dir."""
    q = shlex.quote
    archive, manifest = dest / f"{name}.tar.gz", dest / f"{name}.sha256"
    if archive.exists() or manifest.exists():
        raise OpsError(
            f"{archive} exists already",
            hint="offboard into a new --archive DIR; nothing was removed",
        )
    path = child(parent, name)
    exists = _sh(host, f"test -d {q(path)} && echo yes || echo no").strip()
    if exists != "yes":
        return None
    user = str(host.data.get("ssh_user", "root"))
    work = _sh(
        host,
        f"install -d -m 0711 -o root -g root {REMOTE_BASE} && chmod 0711 {REMOTE_BASE} && "
        f"d=$(mktemp -d {REMOTE_BASE}/run.XXXXXXXX) && chown {q(user)} \"$d\" && "
        'chmod 0700 "$d" && echo "$d"',
    ).strip()
    rt, rm = f"{work}/{name}.tar.gz", f"{work}/{name}.sha256"
    try:
        _sh(
            host,
            f"umask 077 && tar -C {q(parent)} --one-file-system -czf {q(rt)} {q(name)} && "
            f"cd {q(parent)} && find {q(name)} -type f -print0 | "
            f"xargs -0r sha256sum -z > {q(rm)} && chown {q(user)} {q(rt)} {q(rm)}",
        )
        for remote, local in ((rt, archive), (rm, manifest)):
            # as the ops user, straight from its own directory: no sudo copy anywhere
            if not host.get_file(remote, str(local)):
                raise RemoteError(f"{host.name}: could not fetch {remote}")
            local.chmod(0o600)
    finally:
        _sh(host, f"rm -rf {q(work)}")
    n = check_archive(archive, manifest)
    with open(archive, "rb") as fh:
        digest = _sha256(fh)
    with open(dest / "SHA256SUMS", "a", encoding="utf-8") as fh:
        fh.write(f"{digest}  {archive.name}\n")
    return n


def offboard(
    ctx: Context,
    archive_dir: Path,
    who: list[str],
    everyone: bool,
    confirm: Callable[[str], bool],
    progress: Callable[[str], None] = lambda _m: None,
    *,
    allow_mass_change: bool = False,
) -> list[str]:
    from ops.accounts import remote

    with ctx.statefile.locked():
        state = allocate(ctx.roster, ctx.statefile.load(), ctx.cfg, ctx.statefile.path)
        sids = choose(state, who, everyone)
        live = sum(1 for r in state.students.values() if r.status != OFFBOARDED)
        if not who and not everyone and len(sids) > ctx.cfg.leaver_limit(live) \
                and not allow_mass_change:
            raise Refused(
                f"{ctx.statefile.path}: {len(sids)} of {live} students left the roster; "
                f"offboarding removes more than accounts_max_leavers "
                f"({ctx.cfg.leaver_limit(live)}); nothing was changed",
                hint="name them, use --all at semester end, or pass --allow-mass-change")
        pairs = pairs_emptied(state, sids, everyone)
        if not sids and not pairs:
            progress("nobody to offboard")
            return []
        users = [state.students[s].username for s in sids]
        groups = [state.pairs[p].group for p in pairs]
        text = (
            f"offboard {len(users)} student(s): {', '.join(users) or '-'}\n"
            f"and {len(groups)} pair space(s): {', '.join(groups) or '-'}\n"
            f"archives to {archive_dir}, then removal from "
            f"{', '.join(h.name for h in ctx.hosts)}"
        )
        if not confirm(text):
            from ops.errors import Aborted

            raise Aborted("nothing changed: offboarding was not confirmed")
        archive_dir.mkdir(parents=True, exist_ok=True)
        archive_dir.chmod(0o700)
        with remote.connected(ctx.hosts) as pstate:
            # every home host holds its own homes unless /home is shared: archive each
            for home_name in ctx.home_hosts:
                home = pstate.inventory.get_host(home_name)
                dest = archive_dir if len(ctx.home_hosts) == 1 else archive_dir / home_name
                dest.mkdir(mode=0o700, exist_ok=True)
                for name in users:
                    progress(f"archiving {home_name}:{ctx.cfg.home_root}/{name}")
                    _archive(home, ctx.cfg.home_root, name, dest)
                for g in groups:
                    progress(f"archiving {home_name}:{ctx.cfg.pairs_dir}/{g}")
                    _archive(home, ctx.cfg.pairs_dir, g, dest)
            progress("every archive checked; removing the accounts")
            q = shlex.quote
            scripts: dict[str, list[str]] = {}
            for h in ctx.hosts:
                cmds = []
                for name in users:
                    cmds.append(f"(pkill -KILL -u {q(name)} || true)")
                    cmds.append(  # up to 10 s for the killed processes to be gone
                        f"(for _ in $(seq 100); do pgrep -u {q(name)} >/dev/null "
                        "|| break; sleep 0.1; done)"
                    )
                    cmds.append(f"(! id -u {q(name)} >/dev/null 2>&1 || userdel {q(name)})")
                    cmds.append(f"(! getent group {q(name)} >/dev/null || groupdel {q(name)})")
                    # its subordinate ids go with it (never given again: the state keeps
                    # the high-water mark)
                    cmds.append(f"sed -i '/^{name}:/d' /etc/subuid /etc/subgid 2>/dev/null "
                                "|| true")
                    if h.name in ctx.home_hosts:
                        home_dir = child(ctx.cfg.home_root, name)
                        cmds.append(f"rm -rf --one-file-system {q(home_dir)}")
                for g in groups:
                    if h.name in ctx.home_hosts:
                        cmds.append(f"rm -rf --one-file-system {q(child(ctx.cfg.pairs_dir, g))}")
                    cmds.append(f"(! getent group {q(g)} >/dev/null || groupdel {q(g)})")
                scripts[h.name] = [" && ".join(cmds)] if cmds else []
            remote.apply(pstate, scripts, "Remove the offboarded accounts")
        for s in sids:
            state.students[s].status = OFFBOARDED
        for p in pairs:
            state.pairs[p].status = OFFBOARDED
        ctx.statefile.save(state)
    return users
