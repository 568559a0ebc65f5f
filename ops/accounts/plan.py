"""The difference between what a host holds and what it must hold, as changes.

Each :class:`Change` says what it does in words (the table `ops accounts plan` prints) and
carries the argv lists that do it. Nothing here touches a host.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from ops.accounts.model import Desired, WantDir, WantUser
from ops.accounts.snapshot import HostSnapshot, locked
from ops.state import SUBID_COUNT

ADD, CHANGE, LOCK, UNLOCK, REMOVE = "add", "change", "lock", "unlock", "remove"


@dataclass(frozen=True)
class FileWrite:
    """A whole file a change writes: its content travels on stdin, then it is renamed into
    place (``mode``, ``root:group``) atomically."""

    path: str
    content: str = field(repr=False)
    mode: str = "0644"
    group: str = "root"

    def step(self) -> tuple[str, str]:
        new, q = shlex.quote(f"{self.path}.course-ops.new"), shlex.quote
        return (locked(f"umask 077 && cat > {new} && chown root:{q(self.group)} {new} && "
                       f"chmod {q(self.mode)} {new} && mv -f {new} {q(self.path)}"),
                self.content)


@dataclass(frozen=True)
class Change:
    host: str
    action: str  # add | change | lock | unlock | remove
    kind: str  # group | user | dir | keys
    subject: str
    detail: str = ""
    argv: tuple[tuple[str, ...], ...] = ()
    #: ``user:crypt-hash`` for ``chpasswd -e``, sent on stdin (never on a command line:
    #: every user on the host can read command lines in ps); never shown or logged
    secret: str = field(default="", repr=False)
    #: commands run after the secrets are set (``chage -d 0``: change it at first login)
    after: tuple[tuple[str, ...], ...] = ()
    #: whole files this change writes (their content goes on stdin)
    write: tuple[FileWrite, ...] = ()

    def as_dict(self) -> dict[str, str]:
        return {
            "host": self.host,
            "action": self.action,
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
        }


@dataclass
class HostPlan:
    host: str
    changes: list[Change] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def script_chunks(self, limit: int = 0) -> list[str]:
        """The changes as shell commands of at most ``limit`` bytes each (the kernel caps one
        argument at 128 KiB); each runs under the host's accounts lock."""
        limit = limit or int(os.environ.get("OPS_ACCOUNTS_CHUNK_BYTES", "50000"))
        chunks: list[str] = []
        cur: list[str] = []
        size = 0
        for ch in self.changes:
            for argv in ch.argv:
                line = shlex.join(argv)
                if cur and size + len(line) + 4 > limit:
                    chunks.append(" && ".join(cur))
                    cur, size = [], 0
                cur.append(line)
                size += len(line) + 4
        if cur:
            chunks.append(" && ".join(cur))
        return [locked(c) for c in chunks]

    def stdin_steps(self) -> list[tuple[str, str]]:
        """``(command, stdin)`` steps run after the chunks: the initial passwords, then each
        whole file written (/etc/subuid, /etc/subgid), renamed into place atomically."""
        steps = [s for s in (self.password_step(),) if s]
        steps += [w.step() for c in self.changes for w in c.write]
        return steps

    def password_step(self) -> tuple[str, str] | None:
        """``(command, stdin)``: every initial password of this plan in one ``chpasswd -e``
        that reads the hashes on stdin, then the commands that follow it; run after the
        chunks (the accounts exist by then). None when no password is set."""
        secrets = [c.secret for c in self.changes if c.secret]
        if not secrets:
            return None
        commands = ["chpasswd -e", *(shlex.join(a) for c in self.changes for a in c.after)]
        return locked(" && ".join(commands)), "".join(f"{s}\n" for s in secrets)


def _end_sessions(user: str) -> tuple[str, ...]:
    """A locked student keeps no running process (and so no pair-group credentials)."""
    return ("sh", "-c", 'pkill -KILL -u "$1" || true', "sh", user)


def keys_text(keys: tuple[str, ...]) -> str:
    return "".join(k + "\n" for k in keys)


def _write_keys(u: WantUser) -> tuple[str, ...]:
    """Write authorized_keys *as the student* (root never follows a student's symlinks)."""
    script = (
        'umask 077 && mkdir -p "$1/.ssh" && chmod 700 "$1/.ssh" && '
        'printf %s "$2" > "$1/.ssh/authorized_keys.new" && '
        'chmod 600 "$1/.ssh/authorized_keys.new" && '
        'mv -f "$1/.ssh/authorized_keys.new" "$1/.ssh/authorized_keys"'
    )
    return (
        "setpriv",
        f"--reuid={u.uid}",
        f"--regid={u.gid}",
        "--clear-groups",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        u.home,
        keys_text(u.keys),
    )


def _placeholder(_name: str) -> str:
    return "<initial password hash>"


def _user_changes(
    host: str,
    u: WantUser,
    snap: HostSnapshot,
    out: HostPlan,
    initial_password: Callable[[str], str],
) -> None:
    cur = snap.users.get(u.name)
    kind, expire = snap.shadow.get(u.name, ("", None))
    if cur is None:
        owner = snap.uid_owner().get(u.uid)
        if owner:
            out.conflicts.append(f"{host}: uid {u.uid} for {u.name} belongs to {owner!r}")
            return
        argv = [
            "useradd",
            # no subordinate ids of useradd's choosing: the sync writes the state's
            "-K",
            "SUB_UID_COUNT=0",
            "-K",
            "SUB_GID_COUNT=0",
            "-u",
            str(u.uid),
            "-g",
            str(u.gid),
            "-c",
            u.comment,
            "-d",
            u.home,
            "-M",
            "-s",
            u.shell,
            "-p",
            "*",  # a usable password comes on stdin (password_step), never in argv
        ]
        if u.groups:
            argv += ["-G", ",".join(sorted(u.groups))]
        argv += ["-e", "1970-01-02" if u.locked else _date(u.expire_days), u.name]
        cmds = [tuple(argv)]
        if u.locked:
            cmds.append(("usermod", "-L", u.name))
        with_password = u.password_login and not u.locked
        out.changes.append(
            Change(
                host,
                LOCK if u.locked else ADD,
                "user",
                u.name,
                f"uid {u.uid}, groups {','.join(sorted(u.groups)) or '-'}"
                + ("; initial password" if with_password else ""),
                tuple(cmds),
                secret=f"{u.name}:{initial_password(u.name)}" if with_password else "",
                # change it at the first login
                after=(("chage", "-d", "0", u.name),) if with_password else (),
            )
        )
        return
    if cur.uid != u.uid:
        out.conflicts.append(
            f"{host}: user {u.name} exists with uid {cur.uid}, the state file says {u.uid}"
        )
        return
    what: list[str] = []
    argv = ["usermod"]
    if cur.gid != u.gid:
        what.append(f"primary group {cur.gid}->{u.gid}")
        argv += ["-g", str(u.gid)]
    if cur.home != u.home:
        what.append(f"home {cur.home}->{u.home}")
        argv += ["-d", u.home]
    if cur.shell != u.shell:
        what.append(f"shell {cur.shell}->{u.shell}")
        argv += ["-s", u.shell]
    if cur.comment != u.comment:
        what.append("comment")
        argv += ["-c", u.comment]
    have = snap.supplementary(u.name)
    if have != set(u.groups):
        plus = sorted(set(u.groups) - have)
        minus = sorted(have - set(u.groups))
        what.append("groups " + " ".join([f"+{g}" for g in plus] + [f"-{g}" for g in minus]))
        argv += ["-G", ",".join(sorted(u.groups))]
    if expire != u.expire_days:
        what.append(
            f"expiry {_date(expire) or 'never'}->{_date(u.expire_days) or 'never'}"
        )
        argv += ["-e", _date(u.expire_days)]
    action = CHANGE
    secret = ""
    if u.locked and kind != "!":
        action = LOCK
        argv += ["-L"]
        what.append("locked; sessions ended")
    elif not u.locked and u.password_login and kind != "hash":
        action = UNLOCK if kind != "*" else CHANGE
        what.append("initial password")
        secret = f"{u.name}:{initial_password(u.name)}"
    elif not u.locked and not u.password_login and kind != "*":
        action = UNLOCK if kind != "hash" else CHANGE
        what.append("password login off")
        argv += ["-p", "*"]  # key login only; no usable password
    if len(argv) > 1 or secret:
        cmds = [(*argv, u.name)] if len(argv) > 1 else []
        if action == LOCK:
            cmds.append(_end_sessions(u.name))
        out.changes.append(
            Change(host, action, "user", u.name, "; ".join(what) or action, tuple(cmds),
                   secret=secret, after=(("chage", "-d", "0", u.name),) if secret else ())
        )


def _date(days: int | None) -> str:
    """An /etc/shadow expiry as useradd/usermod take it; "" (None): never expires."""
    if days is None:
        return ""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=days)).isoformat()


def _dir_changes(host: str, d: WantDir, snap: HostSnapshot, out: HostPlan) -> None:
    cur = snap.dirs.get(d.path)
    mode = f"{d.mode:o}"
    if cur is None:
        if d.skel:  # root-owned until seeded, so nobody can plant links before the copy
            cmds: list[tuple[str, ...]] = [
                ("install", "-d", "-m", "700", "-o", "0", "-g", "0", d.path),
                ("cp", "-a", "--no-preserve=ownership", "/etc/skel/.", d.path),
                ("chown", "-R", f"{d.uid}:{d.gid}", d.path),
                ("chmod", mode, d.path),
            ]
        else:
            cmds = [("install", "-d", "-m", mode, "-o", str(d.uid), "-g", str(d.gid), d.path)]
        out.changes.append(Change(host, ADD, "dir", d.path, f"{d.uid}:{d.gid} {mode}", tuple(cmds)))
        return
    uid, gid, have = cur
    fix: list[tuple[str, ...]] = []
    what = []
    if (uid, gid) != (d.uid, d.gid):
        what.append(f"owner {uid}:{gid}->{d.uid}:{d.gid}")
        fix.append(("chown", "--no-dereference", f"{d.uid}:{d.gid}", d.path))
    if have != d.mode or fix:  # chown clears setgid: set the mode after it
        if have != d.mode:
            what.append(f"mode {have:o}->{mode}")
        fix.append(("chmod", mode, d.path))
    if what:
        out.changes.append(Change(host, CHANGE, "dir", d.path, "; ".join(what), tuple(fix)))


def _key_changes(host: str, u: WantUser, snap: HostSnapshot, out: HostPlan) -> None:
    path = f"{u.home}/.ssh/authorized_keys"
    want = hashlib.sha256(keys_text(u.keys).encode()).hexdigest()
    cur = snap.keys.get(path)
    if cur is None:
        out.changes.append(
            Change(host, ADD, "keys", path, f"{len(u.keys)} key(s)", (_write_keys(u),))
        )
    elif cur != (u.uid, u.gid, 0o600, want):
        out.changes.append(
            Change(host, CHANGE, "keys", path, "content, owner or mode", (_write_keys(u),))
        )


def _subid_changes(host: str, want: Desired, snap: HostSnapshot, out: HostPlan) -> None:
    """Each account's subordinate range in /etc/subuid and /etc/subgid (the same range in
    both); the lines of other users are kept as they are, in their order."""
    wanted = {u.name: f"{u.name}:{u.subid}:{SUBID_COUNT}" for u in want.users.values()
              if u.subid}
    ours = {u.subid: u.name for u in want.users.values() if u.subid}
    writes: list[FileWrite] = []
    per_user: dict[str, list[str]] = {}
    for kind in ("subuid", "subgid"):
        lines = snap.subids.get(kind, [])
        have: dict[str, list[str]] = {}
        foreign: list[str] = []
        for line in lines:
            name = line.split(":", 1)[0]
            if name in want.managed:
                have.setdefault(name, []).append(line)
            else:
                foreign.append(line)
                f = line.split(":")
                if len(f) == 3 and f[1].isdigit() and f[2].isdigit():
                    lo, hi = int(f[1]), int(f[1]) + int(f[2]) - 1
                    for start, user in ours.items():
                        if start <= hi and lo <= start + SUBID_COUNT - 1:
                            out.conflicts.append(f"{host}: /etc/{kind} gives {name!r} ids "
                                                 f"{lo}-{hi}, which overlap {user}'s range")
        changed = False
        for name in sorted(set(wanted) | set(have)):
            if have.get(name) != ([wanted[name]] if name in wanted else None):
                changed = True
                per_user.setdefault(name, []).append(kind)
        if changed:
            text = "".join(f"{line}\n" for line in
                           [*foreign, *sorted(wanted.values(), key=_subid_start)])
            writes.append(FileWrite(f"/etc/{kind}", text))
    for i, (name, kinds) in enumerate(sorted(per_user.items())):
        u = want.users.get(name)
        action = (REMOVE if u is None or not u.subid else
                  ADD if all(not any(line.startswith(f"{name}:") for line in
                                     snap.subids.get(k, [])) for k in kinds) else CHANGE)
        detail = (f"{'+'.join(kinds)} {u.subid}-{u.subid + SUBID_COUNT - 1}" if u and u.subid
                  else f"{'+'.join(kinds)} lines removed")
        out.changes.append(Change(host, action, "subid", name, detail,
                                  write=tuple(writes) if i == 0 else ()))


def _subid_start(line: str) -> int:
    return int(line.split(":")[1])


def compute(
    host: str,
    want: Desired,
    snap: HostSnapshot,
    initial_password: Callable[[str], str] | None = None,
) -> HostPlan:
    """``initial_password(user)`` gives the crypt hash of a new password (password login on);
    without it (a plan that is only shown) a placeholder stands in."""
    initial_password = initial_password or _placeholder
    out = HostPlan(host)
    gid_owner = snap.gid_owner()
    for name, gid in sorted(want.groups.items(), key=lambda kv: kv[1]):
        have = snap.groups.get(name)
        if have is None:
            if gid in gid_owner:
                out.conflicts.append(
                    f"{host}: gid {gid} for group {name} belongs to {gid_owner[gid]!r}"
                )
                continue
            out.changes.append(
                Change(
                    host, ADD, "group", name, f"gid {gid}", (("groupadd", "-g", str(gid), name),)
                )
            )
        elif have != gid:
            out.conflicts.append(
                f"{host}: group {name} exists with gid {have}, the state file says {gid}"
            )
    for u in want.users.values():
        _user_changes(host, u, snap, out, initial_password)
    for d in want.dirs.values():
        _dir_changes(host, d, snap, out)
    for u in want.users.values():
        if not u.locked and u.home in want.dirs:  # exactly the roster's keys, none if none
            _key_changes(host, u, snap, out)
    _subid_changes(host, want, snap, out)
    return out
