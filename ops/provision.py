"""`ops provision`: the phases that bring every host in step, as data, run in order.

Before phase 1 the website is built (a Liquid error or a broken link stops the run before
any host is touched); then 1 machines (ansible-playbook), 2 the website deployed from that
build, 3 accounts (pyinfra), the summary, 4 verify (testinfra). A phase runs when its
``wanted`` says so for this run (check mode deploys nothing and verifies nothing; a failed
phase stops the ones after it but the summary still prints). The inventory is loaded once,
by the CLI, and handed down.

It owns the order and the bookkeeping (recaps, plans, seconds per phase and per role); what
each phase does is its module's (ops.machines, ops.site, ops.accounts.sync, ops.verify).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops import inventory as inv_mod
from ops.console import Opts, Table, err, out, styled
from ops.errors import OpsError


@dataclass
class Request:
    """What one `ops provision` was asked, and the inventory it runs on."""

    opts: Opts
    inv: inv_mod.Inventory
    check: bool = False
    diff: bool = False
    limit: str | None = None
    tags: str | None = None
    skip_machines: bool = False
    timings: bool = False
    extra: tuple[str, ...] = ()
    roster: Path | None = None
    allow_mass_change: bool = False


@dataclass
class Clock:
    """Seconds per phase of a provision, and per Ansible role when ``roles`` is a dict
    (``--timings`` or -v): staff see where a run's time goes."""

    roles: dict[str, float] | None = None
    phases: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.phases[phase] = time.monotonic() - t0

    def table(self) -> None:
        t = Table("phase / role", "seconds", title="provision timings")
        for phase, seconds in self.phases.items():
            t.add_row(phase, f"{seconds:.1f}")
            if phase.startswith("machines"):
                for role, secs in sorted((self.roles or {}).items(), key=lambda kv: -kv[1]):
                    t.add_row(f"  {role}", f"{secs:.1f}")
        t.add_row("total", f"{time.monotonic() - self.started:.1f}")
        err.print(t)


@dataclass
class Run:
    """One provision under way: its request and what its phases left for the next."""

    req: Request
    ctx: Any  # the accounts context (ops.accounts.sync.Context)
    show_plan: Callable[[dict[str, Any]], None]
    verify: Callable[[], None]
    confirm: Callable[[str], bool]
    clock: Clock
    site_wanted: bool = False
    tmp: Path | None = None
    prebuilt: Any = None
    recaps: dict[str, Any] = field(default_factory=dict)
    plans: dict[str, Any] = field(default_factory=dict)
    failed: str = ""


@dataclass(frozen=True)
class Phase:
    number: int | None  # None: before phase 1 (touches no host)
    title: str
    timed_as: str  # its row in the timings
    wanted: Callable[[Run], bool]
    run: Callable[[Run], None]


def _build_site(r: Run) -> None:
    from ops import site as site_mod

    assert r.tmp is not None
    r.prebuilt = site_mod.prebuild(r.req.inv, r.tmp / "site", log=r.req.opts.say)


def _machines(r: Run) -> None:
    from ops import machines, usage
    from ops.images.commands import image_extra_vars

    q, page = r.req, usage.extra_vars(r.req.inv)
    argv = machines.playbook_argv(
        q.inv, check=q.check, diff=q.diff, limit=q.limit, tags=q.tags,
        extra=(*image_extra_vars(q.inv), *(("-e", json.dumps(page)) if page else ()),
               *q.extra),
        verbosity=q.opts.verbose)
    if q.opts.verbose:
        import shlex

        err.print(f"$ {shlex.join(argv)}")
    code, r.recaps = machines.run_playbook(argv, quiet=q.opts.quiet, role_times=r.clock.roles)
    if code != 0:
        r.failed = f"ansible-playbook exited {code}"


def _deploy_site(r: Run) -> None:
    from ops import site as site_mod

    try:
        site_mod.deploy_site(r.req.inv, prebuilt=r.prebuilt, log=r.req.opts.say)
    except OpsError as exc:
        r.failed = f"site deploy: {exc}"


def _accounts(r: Run) -> None:
    from ops.accounts import sync as sync_mod

    q = r.req
    if q.check:
        r.plans = sync_mod.plan(r.ctx)[1]
        if not q.opts.quiet:
            r.show_plan(r.plans)
        return

    def confirm(p: dict[str, Any]) -> bool:
        if not q.opts.quiet:
            r.show_plan(p)
        return r.confirm("Apply these changes?")

    r.plans = sync_mod.sync(r.ctx, confirm, progress=q.opts.say,
                            allow_mass_change=q.allow_mass_change)


def _summary(r: Run) -> None:
    t = Table("host", "ok", "changed", "failed", "unreachable", "accounts", "reboot required",
              title="provision summary")
    for host in sorted(set(r.recaps) | set(r.plans)):
        rc, p = r.recaps.get(host), r.plans.get(host)
        t.add_row(host, str(rc.ok) if rc else "-", str(rc.changed) if rc else "-",
                  (styled(rc.failed, "red") if rc.failed else "0") if rc else "-",
                  (styled(rc.unreachable, "red") if rc.unreachable else "0") if rc else "-",
                  f"{len(p.changes)} change(s)" if p is not None else "-",
                  styled("yes", "yellow") if rc and rc.reboot_required else "no")
    out.print(t)
    if r.failed:
        raise OpsError(f"provision failed: {r.failed}", hint="see the output above")


def _verify(r: Run) -> None:
    r.verify()


#: the phases, in order; the summary (no title) prints between accounts and verify
PHASES: tuple[Phase, ...] = (
    Phase(None, "the course website is built (no host is touched)", "website build",
          lambda r: r.site_wanted, _build_site),
    Phase(1, "machines (ansible-playbook playbooks/site.yml)", "machines (ansible-playbook)",
          lambda r: not r.req.skip_machines, _machines),
    Phase(2, "the course website (ops site deploy of that build)", "website deploy",
          lambda r: r.prebuilt is not None and not r.failed, _deploy_site),
    Phase(3, "accounts", "accounts", lambda r: not r.failed, _accounts),
    Phase(None, "", "", lambda r: True, _summary),
    Phase(4, "verify", "verify", lambda r: not r.req.check, _verify),
)
NUMBERED = max(p.number or 0 for p in PHASES)


def site_wanted(req: Request) -> bool:
    """Whether this run builds and deploys the website (the inventory has one; not check
    mode, a --limit, or --tags without ``website``)."""
    from ops import site as site_mod

    return (site_mod.provision_wanted(req.inv) and not req.check
            and not req.limit and (not req.tags or "website" in req.tags.split(",")))


def provision(req: Request, *, show_plan: Callable[[dict[str, Any]], None],
              verify: Callable[[], None], confirm: Callable[[str], bool]) -> None:
    """Check what can be checked before any host, then run the phases in order."""
    # First: pyinfra's gevent monkey-patching must precede every import of ssl (requests).
    from ops.accounts import remote  # noqa: F401  isort: skip
    from ops.accounts import sync as sync_mod

    ctx = sync_mod.load_context(req.inv, req.roster)
    if not req.check:  # a roster that would lock most of the class stops here
        sync_mod.guard_leavers(ctx, req.allow_mass_change)
    clock = Clock(roles={} if req.timings or req.opts.verbose else None)
    # the website's inputs (website_*, the site's _config.yml) are checked before any host
    r = Run(req, ctx, show_plan, verify, confirm, clock, site_wanted=site_wanted(req))
    try:
        with tempfile.TemporaryDirectory(prefix="ops-site-") as tmp:
            r.tmp = Path(tmp)
            for phase in PHASES:
                if not phase.wanted(r):
                    continue
                if phase.title:
                    where = (f"phase {phase.number}/{NUMBERED}" if phase.number
                             else f"before phase {PHASES[1].number}")
                    req.opts.say(f"{where}: {phase.title}")
                if phase.timed_as:
                    with clock(phase.timed_as):
                        phase.run(r)
                else:
                    phase.run(r)
    finally:
        if clock.roles is not None:
            clock.table()
