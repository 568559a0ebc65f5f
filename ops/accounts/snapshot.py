"""One read of a host's account state: passwd, group, shadow (no secrets), homes, keys.

The command below is the only thing a plan or a no-op sync runs on a host; it prints the
password field's *kind* only (``*``, ``!``, ``hash``, ``empty``), never the field itself.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from pyinfra.api import FactBase


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    comment: str
    home: str
    shell: str


#: Slurm's side of the snapshot, on the controller. Output is held in shell variables (no
#: file: root never writes a predictable path in a world-writable directory). Without
#: sacctmgr there is no Slurm yet (no section); a sacctmgr that fails is ``#slurm-error``
#: with its last words, which the plan turns into an error, never into "nothing to do".
SLURM_SNAPSHOT = (
    "if command -v sacctmgr >/dev/null 2>&1; then "
    "if cl=$(sacctmgr -nP show cluster format=cluster 2>/dev/null) && "
    "as=$(sacctmgr -nP show assoc format=account,user,parentname,grptresmins 2>/dev/null) && "
    "us=$(sacctmgr -nP show user withcoord format=user,defaultaccount,coordinators "
    "2>/dev/null); then "
    "echo '#slurm-cluster'; printf '%s\\n' \"$cl\"; "
    "echo '#slurm-assoc'; printf '%s\\n' \"$as\"; "
    "echo '#slurm-users'; printf '%s\\n' \"$us\"; "
    "else echo '#slurm-error'; sacctmgr -nP show cluster format=cluster 2>&1 | tail -n 2; "
    "fi; fi"
)


@dataclass
class SlurmSnapshot:
    cluster: str = ""
    accounts: dict[str, str] = field(default_factory=dict)  # account -> parent
    assocs: set[tuple[str, str]] = field(default_factory=set)  # (user, account)
    default_account: dict[str, str] = field(default_factory=dict)
    #: each account's GPU budget (GrpTRESMins gres/gpu, GPU-minutes); absent: none
    gpu_minutes: dict[str, int] = field(default_factory=dict)
    #: the accounts each user coordinates (a parent's coordinator: its children's too)
    coordinates: dict[str, set[str]] = field(default_factory=dict)
    error: str = ""  # sacctmgr failed: what it said


def parse_slurm(section: str, line: str, snap: SlurmSnapshot) -> None:
    f = line.split("|")
    if section == "slurm-cluster" and f[0]:
        snap.cluster = snap.cluster or f[0]
    elif section == "slurm-assoc" and len(f) >= 3:
        account, user, parent = f[0], f[1], f[2]
        if user:
            snap.assocs.add((user, account))
        elif account != "root":
            snap.accounts[account] = parent
            for tres in (f[3].split(",") if len(f) >= 4 else []):
                name, _, value = tres.partition("=")
                if name == "gres/gpu" and value.isdigit():
                    snap.gpu_minutes[account] = int(value)
    elif section == "slurm-users" and len(f) >= 2:
        snap.default_account[f[0]] = f[1]
        if len(f) >= 3 and f[2]:
            snap.coordinates[f[0]] = set(f[2].split(","))
    elif section == "slurm-error":
        said = line.strip()
        snap.error = said if snap.error == "sacctmgr failed" else f"{snap.error} {said}".strip()


@dataclass
class HostSnapshot:
    users: dict[str, PasswdEntry] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)  # name -> gid
    members: dict[str, set[str]] = field(default_factory=dict)  # group -> member users
    shadow: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # kind, expire
    dirs: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # path -> uid,gid,mode
    keys: dict[str, tuple[int, int, int, str]] = field(default_factory=dict)  # +sha256
    #: /etc/subuid and /etc/subgid, line by line (None: the file does not exist)
    subids: dict[str, list[str]] = field(default_factory=lambda: {"subuid": [], "subgid": []})
    slurm: SlurmSnapshot | None = None  # the controller's associations, once Slurm runs
    #: the hub's list of users: None where no hub is installed, else its sha256 ("": none)
    hub_users: str | None = None

    def supplementary(self, user: str) -> set[str]:
        return {g for g, m in self.members.items() if user in m}

    def uid_owner(self) -> dict[int, str]:
        return {e.uid: e.name for e in self.users.values()}

    def gid_owner(self) -> dict[int, str]:
        return {gid: name for name, gid in self.groups.items()}


#: Where the accounts sync keeps the hub's users (role jupyterhub reads it at each login).
HUB_USERS = "/etc/jupyterhub/course-users.json"


def snapshot_script(home_root: str, pairs_dir: str, homes: bool, slurm: bool = False,
                    etc: str = "/etc", hub: bool = False) -> str:
    """The snapshot's shell script (without the host lock); ``etc`` for tests."""
    e = shlex.quote(etc)
    lines = [
        f"echo '#passwd'; cat {e}/passwd",
        f"echo '#group'; cat {e}/group",
        'echo \'#shadow\'; awk -F: \'{k=substr($2,1,1); if ($2=="") k="empty";'
        f' else if (k!="*" && k!="!") k="hash"; print $1":"k":"$8}}\' {e}/shadow',
        f"echo '#subuid'; cat {e}/subuid 2>/dev/null || true",
        f"echo '#subgid'; cat {e}/subgid 2>/dev/null || true",
    ]
    if homes:
        h, p = shlex.quote(home_root), shlex.quote(pairs_dir)
        lines += [
            f"echo '#dirs'; find {h} {p} -mindepth 1 -maxdepth 1 -type d "
            "-printf '%U:%G:%m:%p\\n' 2>/dev/null || true",
            f"echo '#keys'; find {h} -mindepth 3 -maxdepth 3 -path '*/.ssh/authorized_keys'"
            " -type f -printf '%U:%G:%m:%p\\n' 2>/dev/null || true",
            f"echo '#sums'; find {h} -mindepth 3 -maxdepth 3 -path '*/.ssh/authorized_keys'"
            " -type f -exec sha256sum {} + 2>/dev/null || true",
        ]
    if slurm:
        lines.append(SLURM_SNAPSHOT)
    if hub:
        lines.append(f"if [ -d {shlex.quote(HUB_USERS.rsplit('/', 1)[0])} ]; then "
                     f"echo '#hub'; sha256sum {HUB_USERS} 2>/dev/null || echo none; fi")
    return "; ".join(lines)


#: Serialises course-ops runs on a host: a run killed locally may leave its last command
#: running remotely; the next run's snapshot waits for it instead of racing it.
#: The lock lives in a root-only directory: /run/lock is world-writable, and a student
#: holding the lock there could stall every run.
LOCK_DIR = "/run/course-ops"
HOST_LOCK = f"{LOCK_DIR}/accounts.lock"


def locked(command: str) -> str:
    return (
        f"install -d -m 0700 -o root -g root {LOCK_DIR} && "
        f"flock -w 600 {HOST_LOCK} sh -c {shlex.quote(command)}"
    )


def snapshot_command(home_root: str, pairs_dir: str, homes: bool, slurm: bool = False,
                     hub: bool = False) -> str:
    return locked(snapshot_script(home_root, pairs_dir, homes, slurm, hub=hub))


def parse_snapshot(lines: list[str]) -> HostSnapshot:
    snap = HostSnapshot()
    section = ""
    sums: dict[str, str] = {}
    for line in lines:
        if line.startswith("#") and line[1:] in {
            "passwd",
            "group",
            "shadow",
            "dirs",
            "keys",
            "sums",
            "subuid",
            "subgid",
            "hub",
            "slurm-cluster",
            "slurm-assoc",
            "slurm-users",
            "slurm-error",
        }:
            section = line[1:]
            if section == "slurm-error":  # even when sacctmgr said nothing
                snap.slurm = snap.slurm or SlurmSnapshot()
                snap.slurm.error = snap.slurm.error or "sacctmgr failed"
            continue
        if not line.strip():
            continue
        if section == "passwd":
            f = line.split(":")
            if len(f) >= 7 and f[2].isdigit() and f[3].isdigit():
                snap.users[f[0]] = PasswdEntry(f[0], int(f[2]), int(f[3]), f[4], f[5], f[6])
        elif section == "group":
            f = line.split(":")
            if len(f) >= 4 and f[2].isdigit():
                snap.groups[f[0]] = int(f[2])
                snap.members[f[0]] = {m for m in f[3].split(",") if m}
        elif section == "shadow":
            name, kind, expire = (line.split(":") + ["", "", ""])[:3]
            snap.shadow[name] = (kind, int(expire) if expire.isdigit() else None)
        elif section in ("dirs", "keys"):
            uid, gid, mode, path = line.split(":", 3)
            if section == "dirs":
                snap.dirs[path] = (int(uid), int(gid), int(mode, 8))
            else:
                snap.keys[path] = (int(uid), int(gid), int(mode, 8), "")
        elif section == "hub":
            snap.hub_users = "" if line.strip() == "none" else line.split()[0]
        elif section in ("subuid", "subgid"):
            snap.subids[section].append(line.strip())
        elif section.startswith("slurm-"):
            if snap.slurm is None:
                snap.slurm = SlurmSnapshot()
            parse_slurm(section, line, snap.slurm)
        elif section == "sums":
            digest, _, path = line.partition("  ")
            sums[path] = digest
    for key_path, (kuid, kgid, kmode, _) in list(snap.keys.items()):
        snap.keys[key_path] = (kuid, kgid, kmode, sums.get(key_path, ""))
    return snap


class AccountsSnapshot(FactBase):
    """pyinfra fact: a host's accounts in one command."""

    def requires_command(self, *args: object, **kwargs: object) -> str:
        return "find"

    def command(self, home_root: str, pairs_dir: str, homes: bool, slurm: bool = False,
                hub: bool = False) -> str:
        return snapshot_command(home_root, pairs_dir, homes, slurm, hub)

    def process(self, output: list[str]) -> HostSnapshot:
        return parse_snapshot(output)
