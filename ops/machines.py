"""Ansible owns machines: `ops provision` runs ansible-playbook and reads its recap.

ops builds the argv and streams Ansible's own output; it re-implements nothing. The per-host
recap (ok/changed/unreachable/failed) and "reboot required" lines are read from that output.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import logging
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ops import REPO_ROOT, ssh
from ops import inventory as inv_mod
from ops import run as run_mod

log = logging.getLogger(__name__)
PLAYBOOKS = REPO_ROOT / "playbooks"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)")
_REBOOT = re.compile(r"course-ops: reboot required on (\S+?)\"?$")
#: a line of ansible.posix.profile_roles' ROLES RECAP: ``common ------------ 12.34s``
_ROLE_TIME = re.compile(r"^(?P<role>\S+) -+ (?P<seconds>\d+\.\d+)s$")


@dataclass
class Recap:
    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    reboot_required: bool = False


def ssh_args(inv: inv_mod.Inventory) -> str:
    """Ansible's ``ssh_args`` for a run: ansible.cfg's, after ``-F`` the run's ssh_config
    (:mod:`ops.ssh`), so a ProxyJump naming an inventory host reaches it as every other
    tool does."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO_ROOT / "ansible.cfg")
    own = cfg.get("ssh_connection", "ssh_args", fallback="")
    config = ssh.config_file([h.reach for h in inv.hosts.values()])
    return shlex.join(["-F", str(config)]) + (f" {own}" if own else "")


def playbook_argv(inv: inv_mod.Inventory, playbook: str = "site.yml", *, check: bool = False,
                  diff: bool = False, limit: str | None = None, tags: str | None = None,
                  extra: tuple[str, ...] = (), verbosity: int = 0) -> list[str]:
    argv = ["ansible-playbook", "-i", str(inv.hosts_file),
            str(PLAYBOOKS / playbook), "-e", json.dumps({"ansible_ssh_args": ssh_args(inv)})]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if limit:
        argv += ["--limit", limit]
    if tags:
        argv += ["--tags", tags]
    if verbosity > 1:
        argv.append("-" + "v" * (verbosity - 1))
    return argv + list(extra)


def _after(lines: list[str], banner: str) -> Iterator[tuple[bool, str]]:
    """Each line of Ansible's output without its colours, and whether it comes after the
    ``banner`` line (which itself is left out)."""
    after = False
    for raw in lines:
        line = _ANSI.sub("", raw).rstrip()
        if line.startswith(banner):
            after = True
            continue
        yield after, line


def parse_output(lines: list[str]) -> dict[str, Recap]:
    recaps: dict[str, Recap] = {}
    reboot: set[str] = set()
    for in_recap, line in _after(lines, "PLAY RECAP"):
        m = _REBOOT.search(line)
        if m:
            reboot.add(m.group(1))
        r = _RECAP.match(line) if in_recap else None
        if r:
            recaps[r["host"]] = Recap(int(r["ok"]), int(r["changed"]),
                                      int(r["unreachable"]), int(r["failed"]))
    for host in reboot:
        recaps.setdefault(host, Recap()).reboot_required = True
    return recaps


def parse_role_times(lines: list[str]) -> dict[str, float]:
    """Seconds per role (and per task outside a role, by its action) from the ROLES RECAP
    that ansible.posix.profile_roles prints at the end of a run."""
    times: dict[str, float] = {}
    for in_recap, line in _after(lines, "ROLES RECAP"):
        m = _ROLE_TIME.match(line) if in_recap else None
        if m and m["role"] != "total":
            times[m["role"]] = float(m["seconds"])
    return times


def strategy_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment that runs the playbook with Mitogen's ``mitogen_linear`` strategy.

    Mitogen keeps one Python interpreter per host for the whole run instead of starting one
    for every task: on the 2-core development machine a no-op provision of the lab spent
    30 s in Ansible instead of 79 s (README, `ops provision`). The order of tasks and hosts
    is Ansible's own ``linear``. An
    ``ANSIBLE_STRATEGY`` already in the environment wins (``ANSIBLE_STRATEGY=linear``
    turns Mitogen off); so does a missing ``ansible_mitogen`` (a plain ``linear`` run)."""
    if environ.get("ANSIBLE_STRATEGY"):
        return {}
    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or not spec.submodule_search_locations:
        return {}
    plugins = Path(next(iter(spec.submodule_search_locations))) / "plugins" / "strategy"
    paths = [p for p in (environ.get("ANSIBLE_STRATEGY_PLUGINS", ""), str(plugins)) if p]
    return {"ANSIBLE_STRATEGY": "mitogen_linear", "ANSIBLE_STRATEGY_PLUGINS": ":".join(paths)}


def run_playbook(argv: list[str], *, quiet: bool = False,
                 role_times: dict[str, float] | None = None) -> tuple[int, dict[str, Recap]]:
    """Run ansible-playbook, echo its output (unless quiet), return its code and recap.

    With ``role_times`` (a dict to fill), Ansible's own profile_roles callback times each
    role and the dict gets its seconds."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
           "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
           "ANSIBLE_FILTER_PLUGINS": str(REPO_ROOT / "plugins" / "filter"),
           "ANSIBLE_LIBRARY": str(REPO_ROOT / "plugins" / "modules"),
           "ANSIBLE_FORCE_COLOR": "1" if sys.stdout.isatty() else "0",
           **strategy_env(os.environ)}
    if role_times is not None:
        enabled = os.environ.get("ANSIBLE_CALLBACKS_ENABLED", "")
        env["ANSIBLE_CALLBACKS_ENABLED"] = ",".join(
            c for c in (enabled, "ansible.posix.profile_roles") if c)
        env["PROFILE_ROLES_SUMMARY_ONLY"] = "true"
    lines: list[str] = []
    proc = run_mod.start(argv, cwd=REPO_ROOT, env=env, stderr=subprocess.STDOUT, text=True,
                         bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if not quiet:
            sys.stdout.write(line)
            sys.stdout.flush()
    code = proc.wait()
    if role_times is not None:
        role_times.update(parse_role_times(lines))
    return code, parse_output(lines)
