"""Plan and sync: read every host once, compute the plan in Python, apply it batched."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ops import inventory as inv_mod
from ops import roles
from ops import roster as roster_mod
from ops.accounts import budgets as budgets_mod
from ops.accounts import slurm
from ops.accounts.model import AccountsConfig, allocate, desired, leavers
from ops.accounts.passwords import InitialPasswords
from ops.accounts.plan import ADD, CHANGE, Change, FileWrite, HostPlan, compute
from ops.accounts.snapshot import HUB_USERS, AccountsSnapshot, HostSnapshot
from ops.errors import InputError, OpsError, Refused, RemoteError
from ops.inventory import ACCOUNT_GROUPS, Host, Inventory
from ops.roster import Roster
from ops.state import ACTIVE, AccountsState, StateFile


@dataclass
class Context:
    inv: Inventory
    cfg: AccountsConfig
    roster: Roster
    statefile: StateFile
    budgets: budgets_mod.Budgets = field(default_factory=budgets_mod.Budgets)

    @property
    def hosts(self) -> list[Host]:
        hosts = self.inv.hosts_in(*ACCOUNT_GROUPS)
        if not hosts:
            raise InputError(
                self.inv.hosts_file,
                None,
                f"no host in the groups {', '.join(ACCOUNT_GROUPS)}",
                hint="put the login node and the GPU servers in them",
            )
        return hosts

    @property
    def slurm_host(self) -> str | None:
        """Where sacctmgr runs: the first slurm_controller host."""
        hosts = self.inv.hosts_in("slurm_controller")
        return hosts[0].name if hosts else None

    @property
    def hub_hosts(self) -> list[str]:
        """Account hosts that run the hub (group ``hub``, else the slurm_controller)."""
        hub = self.inv.hosts_in("hub") or self.inv.hosts_in("slurm_controller")
        mine = {h.name for h in self.hosts}
        return [h.name for h in hub if h.name in mine]

    @property
    def home_hosts(self) -> list[str]:
        """Hosts that make homes and pair dirs: one when /home is shared, else every one."""
        if not self.cfg.shared_home:
            return [h.name for h in self.hosts]
        return [self.hosts[0].name]


def load_context(inv: inv_mod.Inventory, roster_path: Path | None = None, *,
                 today: dt.date | None = None) -> Context:
    """Everything a run needs, validated before any host is read (``today`` for tests)."""
    cfg = AccountsConfig.from_vars(inv.vars, inv.dir / "group_vars" / "all.yml", inv.where)
    today = today or dt.date.today()
    if cfg.expire_date < today:
        raise InputError(*inv.where("accounts_expire_date"),
                         f"accounts_expire_date {cfg.expire_date} is in the past: accounts "
                         "would be made already expired",
                         hint="set it to the end of this semester")
    path = roster_path or inv.path_var("accounts_roster")
    roster = roster_mod.load(path)
    return Context(inv, cfg, roster, StateFile(inv.dir),
                   budgets_mod.load(inv.vars, inv.dir, roster, inv.where))


def snapshots(ctx: Context, state: object) -> dict[str, HostSnapshot]:
    from ops.accounts import remote

    kwargs = {
        h.name: {
            "home_root": ctx.cfg.home_root,
            "pairs_dir": ctx.cfg.pairs_dir,
            "homes": h.name in ctx.home_hosts,
            "slurm": h.name == ctx.slurm_host,
            "hub": h.name in ctx.hub_hosts,
        }
        for h in ctx.hosts
    }
    return remote.read_fact(state, AccountsSnapshot, kwargs)  # type: ignore[arg-type]


def plan_for(
    ctx: Context,
    state: AccountsState,
    snaps: dict[str, HostSnapshot],
    passwords: InitialPasswords | None = None,
) -> dict[str, HostPlan]:
    plans = {}
    for h in ctx.hosts:
        want = desired(state, ctx.roster, ctx.cfg, homes=h.name in ctx.home_hosts)
        plans[h.name] = compute(h.name, want, snaps[h.name], passwords)
    for name in ctx.hub_hosts:
        change = hub_users_change(ctx, state, name, snaps[name])
        if change:
            plans[name].changes.append(change)
    slurm_snap = snaps[ctx.slurm_host].slurm if ctx.slurm_host else None
    if slurm_snap is not None:  # Slurm runs: its associations follow the roster too
        assert ctx.slurm_host is not None
        if slurm_snap.error:
            raise RemoteError(
                f"{ctx.slurm_host}: cannot read Slurm's accounts: {slurm_snap.error}",
                hint="is slurmdbd running there? (`systemctl status slurmdbd`; "
                "`ops provision` starts it); nothing was changed")
        plans[ctx.slurm_host].changes += slurm.plan(
            ctx.slurm_host, state, ctx.cfg.course_group,
            str(roles.setting(ctx.inv.vars, "slurm", "slurm_qos_name")), slurm_snap,
            ctx.cfg.staff_group, ctx.budgets).changes
    return plans


def hub_users(ctx: Context, state: AccountsState) -> str:
    """Who may log in to the hub (roster students who are not locked, and the staff), its
    admins (the staff) and each one's e-mail (OAuth/LTI logins name people by it)."""
    students = {sid: r for sid, r in state.students.items() if r.status == ACTIVE}
    staff = {m.username: m for m in ctx.cfg.staff
             if state.staff.get(m.username) and state.staff[m.username].status == ACTIVE}
    emails = {s.email.lower(): students[s.student_id].username for s in ctx.roster.students
              if s.student_id in students}
    emails.update({m.email.lower(): m.username for m in staff.values() if m.email})
    doc = {"allowed": sorted([*(r.username for r in students.values()), *staff]),
           "admins": sorted(staff), "emails": dict(sorted(emails.items()))}
    return json.dumps(doc, indent=1) + "\n"


def hub_users_change(ctx: Context, state: AccountsState, host: str,
                     snap: HostSnapshot) -> Change | None:
    """The hub's list of users kept in step with the roster (where the hub is installed)."""
    if snap.hub_users is None:
        return None
    text = hub_users(ctx, state)
    if hashlib.sha256(text.encode()).hexdigest() == snap.hub_users:
        return None
    n = len(json.loads(text)["allowed"])
    group = str(roles.setting(ctx.inv.vars, "jupyterhub", "jupyterhub_user"))
    return Change(host, ADD if not snap.hub_users else CHANGE, "hub", HUB_USERS,
                  f"{n} user(s) may log in", write=(FileWrite(HUB_USERS, text, "0640", group),))


def check_conflicts(plans: dict[str, HostPlan]) -> None:
    conflicts = [c for p in plans.values() for c in p.conflicts]
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise OpsError(
            f"conflict: {conflicts[0]}{more}",
            hint="an account outside course-ops holds that name or id; move "
            "accounts_uid_range/accounts_pair_gid_range to a free range",
        )


def check_leavers(ctx: Context, before: AccountsState, after: AccountsState,
                  allow: bool) -> list[str]:
    """The students this run would lock; more than ``accounts_max_leavers`` (a roster that
    lost most of its rows: a bad export) stops it before any host, unless ``allow``."""
    gone = leavers(before, after)
    active = sum(1 for r in before.students.values() if r.status == ACTIVE)
    limit = ctx.cfg.leaver_limit(active)
    if len(gone) > limit and not allow:
        shown = ", ".join(gone[:8]) + (f" and {len(gone) - 8} more" if len(gone) > 8 else "")
        raise Refused(
            f"{ctx.roster.path}: this roster would lock {len(gone)} of {active} students "
            f"(more than accounts_max_leavers, {limit}): {shown}; nothing was changed",
            hint="check the roster (a bad export?); if it is meant, run again with "
            "--allow-mass-change")
    return gone


def guard_leavers(ctx: Context, allow: bool) -> list[str]:
    """:func:`check_leavers` for this roster against the state file (no host is read)."""
    before = ctx.statefile.load()
    return check_leavers(ctx, before, allocate(ctx.roster, before, ctx.cfg, ctx.statefile.path),
                         allow)


def plan(ctx: Context, progress: Callable[[str], None] = lambda _m: None
         ) -> tuple[AccountsState, dict[str, HostPlan]]:
    """The next state and every host's changes; changes nothing anywhere."""
    from ops.accounts import remote

    new_state = allocate(ctx.roster, ctx.statefile.load(), ctx.cfg, ctx.statefile.path)
    progress(f"reading accounts on {len(ctx.hosts)} host(s)")
    with remote.connected(ctx.hosts) as pstate:
        plans = plan_for(ctx, new_state, snapshots(ctx, pstate))
    return new_state, plans


def sync(
    ctx: Context,
    confirm: Callable[[dict[str, HostPlan]], bool],
    progress: Callable[[str], None] = lambda _m: None,
    *,
    allow_mass_change: bool = False,
) -> dict[str, HostPlan]:
    from ops.accounts import remote

    with ctx.statefile.locked():
        before = ctx.statefile.load()
        new_state = allocate(ctx.roster, before, ctx.cfg, ctx.statefile.path)
        check_leavers(ctx, before, new_state, allow_mass_change)
        progress(f"reading accounts on {len(ctx.hosts)} host(s)")
        with remote.connected(ctx.hosts) as pstate:
            passwords = InitialPasswords(ctx.statefile.dir / "initial-passwords.csv")
            plans = plan_for(ctx, new_state, snapshots(ctx, pstate), passwords)
            check_conflicts(plans)
            if not any(p.changes for p in plans.values()):
                ctx.statefile.save(new_state)
                return plans
            if not confirm(plans):
                from ops.errors import Aborted

                raise Aborted("nothing changed: the plan was not confirmed")
            # ids are recorded before any host uses them, so an interrupted run resumes
            ctx.statefile.save(new_state)
            passwords.save()  # before any host has the hash: no password is ever lost
            progress("applying the changes")
            remote.apply(
                pstate,
                {h: p.script_chunks() for h, p in plans.items()},
                "Bring the course accounts in step with the roster",
                with_stdin={h: p.stdin_steps() for h, p in plans.items()},
            )
        with remote.connected(ctx.hosts) as pstate:
            progress("checking that every host converged")
            after = plan_for(ctx, new_state, snapshots(ctx, pstate))
        left = [c for p in after.values() for c in p.changes]
        if left:
            raise OpsError(
                f"{left[0].host}: still differs after sync: {left[0].action} "
                f"{left[0].kind} {left[0].subject} ({left[0].detail})",
                hint="run with -v and look at the command output above",
            )
    return plans
