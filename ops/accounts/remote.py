"""pyinfra as the executor: connections, sudo, parallel hosts.

Hosts come from :mod:`ops.inventory` (the one inventory). Reads are one fact per host
(:class:`AccountsSnapshot`); writes are one operation per host carrying that host's batched
changes, so a sync costs a constant number of round trips however large the class is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from gevent import monkey

monkey.patch_all()  # noqa: E402  pyinfra's advice: parallel hosts need cooperative sockets

import gevent  # noqa: E402
from pyinfra.api import Config, Inventory, State  # noqa: E402
from pyinfra.api.connect import connect_all, disconnect_all  # noqa: E402
from pyinfra.api.exceptions import PyinfraError  # noqa: E402
from pyinfra.api.facts import get_fact  # noqa: E402
from pyinfra.api.operation import add_op  # noqa: E402
from pyinfra.api.operations import run_ops  # noqa: E402
from pyinfra.context import ctx_host, ctx_state  # noqa: E402
from pyinfra.operations import server  # noqa: E402

from ops import ssh  # noqa: E402
from ops.errors import RemoteError  # noqa: E402
from ops.inventory import Host  # noqa: E402

log = logging.getLogger(__name__)


@contextmanager
def connected(hosts: Iterable[Host]) -> Iterator[State]:
    """A pyinfra State connected to ``hosts``; every host must answer."""
    hosts = list(hosts)
    # one ssh_config for all (ops.ssh): pyinfra follows a jump host only from there
    ssh_config = ssh.config_file([h.reach for h in hosts])
    names: list[Any] = [(h.name, ssh.pyinfra_data(h.reach, ssh_config)) for h in hosts]
    sudo = any(h.user != "root" for h in hosts)
    inventory = Inventory((names, {}))
    config = Config(SUDO=sudo, PARALLEL=max(1, len(hosts)), FAIL_PERCENT=0, CONNECT_TIMEOUT=15)
    state = State(inventory=inventory, config=config)
    state.should_raise_failed_hosts = lambda _s: False
    try:
        connect_all(state)
    except PyinfraError as exc:
        raise RemoteError(f"cannot connect: {exc}") from None
    failed = sorted(h.name for h in state.failed_hosts)
    if failed:
        disconnect_all(state)
        raise RemoteError(
            f"cannot reach {', '.join(failed)} over SSH",
            hint="check the inventory's ansible_host/port/user and keys "
            "(for the lab: `ops lab status`)",
        )
    try:
        yield state
    finally:
        disconnect_all(state)


def read_fact(state: State, fact: Any, per_host_kwargs: dict[str, dict[str, Any]]) -> dict:
    """One fact per host (each with its own arguments), in parallel: ``{host: result}``."""

    def one(host: Any, kwargs: dict[str, Any]) -> Any:
        with ctx_host.use(host):
            return get_fact(state, host, fact, kwargs=kwargs)

    with ctx_state.use(state):
        jobs = {
            state.pool.spawn(one, state.inventory.get_host(n), kw): n
            for n, kw in per_host_kwargs.items()
        }
        gevent.joinall(list(jobs))
    out: dict[str, Any] = {}
    for job, name in jobs.items():
        if not job.successful() or job.value is None:
            raise RemoteError(
                f"could not read the accounts on {name}: {job.exception or 'no output'}",
                hint="check that the host answers and the user may sudo",
            )
        out[name] = job.value
    return out


def apply(state: State, scripts: dict[str, list[str]], name: str,
          with_stdin: dict[str, list[tuple[str, str]]] | None = None) -> None:
    """Run each host's command chunks as one pyinfra operation, then each host's
    ``(command, stdin)`` steps of ``with_stdin`` in order (secrets and whole files travel
    on stdin, never in a command line); raise if any host fails."""
    todo = {h: chunks for h, chunks in scripts.items() if chunks}
    steps = {h: s for h, s in (with_stdin or {}).items() if s}
    if not todo and not steps:
        return
    for host_name, chunks in todo.items():
        add_op(
            state,
            server.shell,
            name=name,
            commands=chunks,
            host=state.inventory.get_host(host_name),
        )
    for i in range(max((len(s) for s in steps.values()), default=0)):
        for host_name, host_steps in steps.items():
            if i < len(host_steps):
                command, stdin = host_steps[i]
                add_op(
                    state,
                    server.shell,
                    name=f"{name}: step {i + 1} with its input on stdin",
                    commands=[command],
                    host=state.inventory.get_host(host_name),
                    _stdin=stdin,
                )
    try:
        run_ops(state)
    except PyinfraError as exc:
        raise RemoteError(
            f"{name} failed: {exc}", hint="run it again: each step is safe to repeat"
        ) from None
    failed = sorted(h.name for h in state.failed_hosts)
    if failed:
        raise RemoteError(
            f"{name} failed on {', '.join(failed)}",
            hint="run with -v to see the command's output; "
            "a re-run converges from where it stopped",
        )
