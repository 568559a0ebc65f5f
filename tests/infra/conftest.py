"""Shared fixtures of the testinfra specs; `ops verify` runs them against any inventory.

Targets come from the command line (``--hosts``); what the hosts must hold comes from the
inventory named by ``--ops-inventory`` (its group_vars, roster and accounts state file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ops import REPO_ROOT
from ops.accounts.budgets import Budgets
from ops.accounts.model import AccountsConfig, allocate
from ops.errors import OpsError
from ops.inventory import Inventory
from ops.roster import Roster
from ops.state import ACTIVE, LEFT, OFFBOARDED, AccountsState


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("course-ops")
    g.addoption("--ops-inventory", default=os.environ.get("OPS_INVENTORY",
                                                          str(REPO_ROOT / "inventory" / "lab")),
                help="inventory directory whose plan the hosts must match")
    g.addoption("--ops-roster", default=None, help="roster overriding the inventory's")
    g.addoption("--expect-gpus", type=int, default=None,
                help="GPUs each target must show (default: the inventory's gpu_count)")
    g.addoption("--ops-targets", default=None,
                help="JSON: spec (test_<spec>.py) -> its targets, comma-separated, as "
                     "--hosts takes them; one session checks every spec on its own hosts")
    g.addoption("--ops-hostless-elsewhere", default="",
                help="specs (comma-separated) whose checks that run on no host another "
                     "session of the same `ops verify` runs: left out of this one")


@dataclass
class Expected:
    cfg: AccountsConfig
    state: AccountsState
    roster: Roster
    budgets: Budgets = field(default_factory=Budgets)

    def students(self, status: str) -> list[str]:
        return sorted(r.username for r in self.state.students.values() if r.status == status)

    def record(self, username: str):  # noqa: ANN201
        return next(r for r in self.state.students.values() if r.username == username)

    def keys(self, username: str) -> tuple[str, ...]:
        sid = next(k for k, r in self.state.students.items() if r.username == username)
        student = self.roster.by_id().get(sid)
        return student.ssh_keys if student else ()

    def active_pairs(self) -> list[str]:
        return sorted(p.group for p in self.state.pairs.values() if p.status == ACTIVE)

    def members(self, group: str) -> list[str]:
        key = next(k for k, p in self.state.pairs.items() if p.group == group)
        return sorted(r.username for r in self.state.students.values()
                      if r.pair == key and r.status == ACTIVE)

    def gid(self, group: str) -> int:
        return next(p.gid for p in self.state.pairs.values() if p.group == group)

    def gpu_minutes(self, group: str) -> int | None:
        """The pair's GPU budget (GrpTRESMins gres/gpu) the inventory asks for."""
        key = next(k for k, p in self.state.pairs.items() if p.group == group)
        return self.budgets.minutes(key)


def ops_inventory(config: pytest.Config) -> Inventory:
    """The inventory (``--ops-inventory``), loaded once per session for every spec."""
    from ops import inventory as inv_mod

    cached = config.__dict__.get("_ops_inventory")
    if cached is None:
        cached = config.__dict__["_ops_inventory"] = inv_mod.load(
            Path(config.getoption("--ops-inventory")))
    return cached


def _expected(config: pytest.Config) -> Expected:
    cached = getattr(config, "_ops_expected", None)
    if cached is not None:
        return cached
    from ops.accounts.sync import load_context

    roster = config.getoption("--ops-roster")
    try:
        ctx = load_context(ops_inventory(config), Path(roster) if roster else None)
        saved = ctx.statefile.load()
        if not saved.students:
            raise OpsError(f"{ctx.statefile.path}: no accounts recorded",
                           hint="run `ops accounts sync` first")
        state = allocate(ctx.roster, saved, ctx.cfg, ctx.statefile.path)
    except OpsError as exc:
        raise pytest.UsageError(str(exc)) from None
    exp = Expected(ctx.cfg, state, ctx.roster, ctx.budgets)
    config._ops_expected = exp  # type: ignore[attr-defined]
    return exp


@pytest.fixture(scope="session")
def inventory_vars(pytestconfig: pytest.Config) -> dict:
    """The inventory's ``all``-level variables (group_vars/all)."""
    from ops.inventory import load_vars_only

    return load_vars_only(Path(pytestconfig.getoption("--ops-inventory")))


@pytest.fixture(scope="session")
def expected(pytestconfig: pytest.Config) -> Expected:
    return _expected(pytestconfig)


def _host_vars(config: pytest.Config, name: str) -> dict:
    """What the inventory sets for host ``name`` (Ansible's precedence, see ops.inventory);
    a target the inventory does not list (``local://``, ``ssh://...``) is taken as one of
    its GPU servers."""
    from ops import inventory as inv_mod

    cache = config.__dict__.setdefault("_ops_host_vars", {})
    if name not in cache:
        directory = Path(config.getoption("--ops-inventory"))
        if not (directory / "hosts.yml").is_file():
            cache[name] = inv_mod.load_vars_only(directory)
        else:
            inv = ops_inventory(config)
            host = inv.hosts.get(name) or next(iter(inv.hosts_in("gpu_servers")), None)
            cache[name] = dict(host.vars) if host else dict(inv.vars)
    return cache[name]


@pytest.fixture(scope="module")
def host_vars(host, pytestconfig: pytest.Config) -> dict:  # noqa: ANN001
    """The inventory's variables for the host under test."""
    return _host_vars(pytestconfig, host_name(host))


def host_name(host) -> str:  # noqa: ANN001
    """The target's name: its inventory name (``ansible://``), else its address."""
    return str(getattr(host.backend, "host", None) or host.backend.get_pytest_id()
               .split("://", 1)[-1] or "local")


@pytest.fixture(scope="module")
def expected_gpus(host_vars, pytestconfig: pytest.Config) -> int:  # noqa: ANN001
    """How many GPUs the host must have: ``--expect-gpus``, else its ``gpu_count``."""
    given = pytestconfig.getoption("--expect-gpus")
    return int(given if given is not None else host_vars.get("gpu_count", 0) or 0)


def _module_targets(metafunc: pytest.Metafunc) -> None:
    """``--ops-targets``: the spec module's own hosts, set where testinfra's plugin reads them
    (``testinfra_hosts``) before it parametrizes ``host`` (``--hosts`` must then be unset)."""
    given = metafunc.config.getoption("--ops-targets")
    if not given or metafunc.module is None:
        return
    spec = metafunc.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    targets = json.loads(given)
    if spec not in targets:
        raise pytest.UsageError(f"--ops-targets names no targets for {spec}")
    metafunc.module.testinfra_hosts = targets[spec].split(",")


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    _module_targets(metafunc)
    wanted = {"student": ACTIVE, "left_student": LEFT, "offboarded_student": OFFBOARDED}
    for name, status in wanted.items():
        if name in metafunc.fixturenames:
            users = _expected(metafunc.config).students(status)
            metafunc.parametrize(name, users, ids=users)
    if "staff_member" in metafunc.fixturenames:
        exp = _expected(metafunc.config)
        staff = sorted(m.username for m in exp.cfg.staff)
        metafunc.parametrize("staff_member", staff, ids=staff)
    if "pair_group" in metafunc.fixturenames:
        pairs = _expected(metafunc.config).active_pairs()
        metafunc.parametrize("pair_group", pairs, ids=pairs)


def _target_of(item: pytest.Item) -> Any:
    """The testinfra host a collected check runs on (None: it runs on no host)."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("_testinfra_host") if callspec else None


#: (spec module, fixture, host's test id) -> the fixture's read of that host, under way
_READS: dict[tuple[str, str, str], Future[Any]] = {}


def on_every_host_at_once(request: pytest.FixtureRequest, host: Any,
                          read: Callable[[Any], Any]) -> Any:
    """``read(host)`` for a module-scoped fixture of a spec, whose reads run on the hosts:
    the first host to ask starts the read of every host of that spec at once (threads),
    the others find theirs done or under way. An exception in a read is raised here, for
    that host's checks only."""
    module, name = request.module.__name__, request.fixturename
    if not any(k[:2] == (module, name) for k in _READS):
        targets: dict[str, Any] = {}
        for item in request.session.items:
            target = _target_of(item)
            if (target is not None and getattr(item, "module", None) is request.module
                    and name in getattr(item, "fixturenames", ())):
                targets[target.backend.get_pytest_id()] = target
        pool = ThreadPoolExecutor(max_workers=max(len(targets), 1))
        _READS.update({(module, name, key): pool.submit(read, target)
                       for key, target in targets.items()})
        pool.shutdown(wait=False)
    key = (module, name, host.backend.get_pytest_id())
    return _READS[key].result() if key in _READS else read(host)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Name each check's host in the JUnit XML, for the per-host summary of `ops verify`:
    at collection, so a check skipped by a mark or a fixture still counts for its host.
    The host-less checks of the specs ``--ops-hostless-elsewhere`` names are deselected
    (another session runs them: each check runs once per `ops verify`)."""
    elsewhere = {f"test_{s}" for s in config.getoption("--ops-hostless-elsewhere").split(",")
                 if s}
    kept, dropped = [], []
    for item in items:
        target = _target_of(item)
        if target is not None:
            item.user_properties.append(
                ("host", target.backend.get_pytest_id().split("://", 1)[-1] or "local"))
        module = getattr(item, "module", None)
        if (target is None and module is not None
                and module.__name__.rsplit(".", 1)[-1] in elsewhere):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
