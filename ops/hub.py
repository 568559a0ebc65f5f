"""`ops hub status`: the course's JupyterHub and each running server, with its Slurm job.

The hub runs on the inventory's ``hub`` hosts, else the first slurm_controller (role
jupyterhub). Its REST API is read on the hub host itself, over SSH as Ansible connects,
with the token role jupyterhub made for course-ops (root-only there, never sent here);
the servers' jobs come from one ``squeue`` on the Slurm controller. Nothing is changed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ops import ssh
from ops.errors import InputError, RemoteError
from ops.inventory import Host, Inventory

#: On the hub host: the hub's own API address (from its config), then the active users
#: with their servers, as JSON. The token header never leaves the host.
_API = r"""set -eu
url=$(sed -n 's/^c.JupyterHub.hub_bind_url = "\(.*\)"$/\1/p' /etc/jupyterhub/jupyterhub_config.py)
[ -n "$url" ] || { echo "no hub configured here (role jupyterhub)" >&2; exit 3; }
curl -sSf --max-time 20 -H @/etc/jupyterhub/ops-api-header "$url/hub/api/users?state=active"
"""
#: On the Slurm controller: every hub server's job (job name jupyterhub).
_JOBS = "squeue -h -a -n jupyterhub -o '%i|%u|%a|%N|%T|%S'"


@dataclass
class Server:
    student: str
    pair: str  # the Slurm account the job runs under
    job: str
    node: str
    state: str  # the job's Slurm state
    profile: str
    started: str
    last_activity: str


def hub_hosts(inv: Inventory) -> list[Host]:
    return inv.hosts_in("hub") or inv.hosts_in("slurm_controller")[:1]


def hub_url(inv: Inventory, host: Host) -> str:
    """Where students open the hub: the host's HTTPS name (the lab: its loopback port)."""
    ports = host.vars.get("lab_ports") or {}
    if 443 in ports:
        return f"https://127.0.0.1:{ports[443]}/hub/"
    name = host.vars.get("jupyterhub_hostname") or host.vars.get("website_hostname") \
        or host.name
    return f"https://{name}/hub/"


def _ssh(host: Host, script: str) -> str:
    return ssh.run(host.reach, script, timeout=60, what="reading the hub",
                   hint="is the hub provisioned? `ops provision`, then `ops verify hub`")


def servers(users: list[dict[str, Any]], jobs: str) -> list[Server]:
    """The hub's active users' servers joined with their Slurm jobs (pure)."""
    by_user: dict[str, list[str]] = {}
    for line in jobs.splitlines():
        f = line.strip().split("|")
        if len(f) == 6:
            by_user.setdefault(f[1], []).append(line.strip())
    out: list[Server] = []
    for u in sorted(users, key=lambda u: str(u.get("name"))):
        for _name, s in sorted((u.get("servers") or {}).items()):
            job = (by_user.get(str(u["name"])) or ["|||||"])[0].split("|")
            out.append(Server(str(u["name"]), job[2], job[0], job[3] or "-", job[4] or "gone",
                              str((s.get("user_options") or {}).get("profile", "")),
                              str(s.get("started") or ""), str(s.get("last_activity") or "")))
    return out


def status(inv: Inventory) -> tuple[str, list[Server]]:
    hubs = hub_hosts(inv)
    if not hubs:
        raise InputError(inv.hosts_file, None, "no hub host (groups hub, slurm_controller)",
                         hint="put the login node in slurm_controller")
    controller = (inv.hosts_in("slurm_controller") or hubs)[0]
    try:
        users = json.loads(_ssh(hubs[0], _API))
    except ValueError:
        raise RemoteError(f"{hubs[0].name}: the hub's API gave no JSON") from None
    jobs = _ssh(controller, _JOBS)
    return hub_url(inv, hubs[0]), servers(users if isinstance(users, list) else [], jobs)


def as_json(url: str, found: list[Server]) -> str:
    return json.dumps({"url": url, "servers": [asdict(s) for s in found]}, indent=1)
