"""Slurm in step with the roster: a parent account for the course, an account per pair (or
single) under it with the course QOS (which caps each pair's GPUs and wall time) and its GPU
budget for the semester (GrpTRESMins=gres/gpu, :mod:`ops.accounts.budgets`), and each
student's association. Read with one sacctmgr call per kind; written with one
``sacctmgr load`` for everything new plus one call per kind of removal: never one call per
student. Job history stays: removing an association keeps the jobs it ran.
"""

from __future__ import annotations

from ops.accounts.budgets import Budgets
from ops.accounts.model import STAFF_GROUP
from ops.accounts.plan import ADD, CHANGE, REMOVE, Change, HostPlan
from ops.accounts.snapshot import SlurmSnapshot
from ops.state import ACTIVE, AccountsState


def duration_seconds(text: str) -> int:
    """A Slurm time (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``,
    ``D-HH:MM:SS``) in seconds."""
    days, _, rest = str(text).rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        parts += [0] * (3 - len(parts))  # D-HH, D-HH:MM
        h, m, s = parts
    else:
        h, m, s = ([0] * (3 - len(parts)) + parts) if len(parts) == 3 else \
            ([0, *parts] if len(parts) == 2 else [0, parts[0], 0])
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + s


def sacct_duration(text: str) -> str:
    """A Slurm time as sacctmgr shows it: ``24:00:00`` -> ``1-00:00:00``."""
    days, rest = divmod(duration_seconds(text), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{days}-" if days else "") + f"{h:02d}:{m:02d}:{s:02d}"


def _q(value: str) -> str:
    return "'" + value.replace("'", "") + "'"


#: role slurm's per-minute copy of each pair's budget for its members, run now (where the
#: role has installed it)
REFRESH_PAIR_COPIES = (
    "sh", "-c", "if [ -f /usr/local/lib/course-ops/course_usage.py ] && "
    "[ -f /etc/course-ops/usage.json ]; then "
    "python3 /usr/local/lib/course-ops/course_usage.py pairs; fi")


def gpu_hours(minutes: int | None) -> str:
    if minutes is None:
        return "none"
    return f"{minutes / 60:g} GPU-hours"


def plan(host: str, state: AccountsState, course: str, qos: str,
         snap: SlurmSnapshot, staff_account: str = STAFF_GROUP,
         budgets: Budgets | None = None) -> HostPlan:
    """The Slurm changes on the controller ``host``. Staff get one account of their own
    under the course's, outside the pairs' QOS (no per-pair GPU cap) and budgets."""
    out = HostPlan(host)
    pairs = {k: p.group for k, p in state.pairs.items() if p.status == ACTIVE}
    want_users = {r.username: pairs[r.pair] for r in state.students.values()
                  if r.status == ACTIVE and r.pair in pairs}
    staff = sorted(n for n, m in state.staff.items() if m.status == ACTIVE)
    want_users.update({n: staff_account for n in staff})
    managed = {r.username for r in state.students.values()} | set(state.staff)
    load: list[str] = []
    if course not in snap.accounts:
        out.changes.append(Change(host, ADD, "slurm", f"account {course}", "course parent"))
        load += ["Parent - 'root'",
                 f"Account - {_q(course)}:Description={_q(course)}:Organization={_q(course)}"]
    new_accounts = sorted(g for g in pairs.values() if g not in snap.accounts)
    by_account: dict[str, list[str]] = {}
    for user, account in sorted(want_users.items()):
        if (user, account) not in snap.assocs:
            by_account.setdefault(account, []).append(user)
    if new_accounts:
        load.append(f"Parent - {_q(course)}")
        for g in new_accounts:
            out.changes.append(Change(host, ADD, "slurm", f"account {g}",
                                      f"under {course}, QOS {qos}"))
            load.append(f"Account - {_q(g)}:Description={_q(g)}:Organization={_q(course)}"
                        f":Fairshare=1:QOS={_q(qos)}:DefaultQOS={_q(qos)}")
    if staff and staff_account not in snap.accounts:
        out.changes.append(Change(host, ADD, "slurm", f"account {staff_account}",
                                  f"under {course}, the staff (no pair QOS)"))
        load += [f"Parent - {_q(course)}",
                 f"Account - {_q(staff_account)}:Description={_q(staff_account)}"
                 f":Organization={_q(course)}:Fairshare=1"]
    for account, users in sorted(by_account.items()):
        load.append(f"Parent - {_q(account)}")
        for user in users:
            out.changes.append(Change(host, ADD, "slurm", f"association {user}@{account}"))
            load.append(f"User - {_q(user)}:DefaultAccount={_q(account)}:Fairshare=1")
    argv: list[tuple[str, ...]] = []
    if load:
        text = "\n".join([f"Cluster - {_q(snap.cluster)}", *load]) + "\n"
        argv.append(("sh", "-c", 'f=$(mktemp) && printf %s "$1" > "$f" && '
                     'sacctmgr -i load file="$f"; rc=$?; rm -f "$f"; exit $rc', "sh", text))
    budgets = budgets or Budgets()
    by_budget: dict[int, list[str]] = {}
    for key, group in sorted(pairs.items(), key=lambda kv: kv[1]):
        want, now = budgets.minutes(key), snap.gpu_minutes.get(group)
        if want != now and not (want is None and group not in snap.accounts):
            out.changes.append(Change(host, CHANGE if group in snap.accounts else ADD, "slurm",
                                      f"budget {group}", f"{gpu_hours(now)}->{gpu_hours(want)}"
                                      if group in snap.accounts else gpu_hours(want)))
            by_budget.setdefault(-1 if want is None else want, []).append(group)
    for user, account in sorted(want_users.items()):
        have = snap.default_account.get(user)
        if have and have != account:
            out.changes.append(Change(host, CHANGE, "slurm", f"user {user}",
                                      f"default account {have}->{account}"))
            argv.append(("sacctmgr", "-i", "modify", "user", "where", f"name={user}", "set",
                         f"DefaultAccount={account}"))
    # The staff coordinate the course's account: Slurm shows them every pair's jobs and
    # usage (PrivateData hides them from students), and lets them hold or cancel jobs.
    coords = {u for u, accts in snap.coordinates.items() if course in accts}
    add_coords = [n for n in staff if n not in coords]
    drop_coords = sorted(u for u in coords & managed if u not in staff)
    for n in add_coords:
        out.changes.append(Change(host, ADD, "slurm", f"coordinator {n}",
                                  f"of {course}: sees every pair's jobs"))
    for n in drop_coords:
        out.changes.append(Change(host, REMOVE, "slurm", f"coordinator {n}", f"of {course}"))
    if add_coords:
        argv.append(("sacctmgr", "-i", "add", "coordinator", f"account={course}",
                     f"names={','.join(add_coords)}"))
    if drop_coords:
        argv.append(("sacctmgr", "-i", "delete", "coordinator", f"account={course}",
                     f"names={','.join(drop_coords)}"))
    for minutes, groups in sorted(by_budget.items()):  # one call per distinct budget
        argv.append(("sacctmgr", "-i", "modify", "account", "where", f"name={','.join(groups)}",
                     "set", f"GrpTRESMins=gres/gpu={minutes}"))
    stale: dict[str, list[str]] = {}
    for user, account in sorted(snap.assocs):
        if user in managed and want_users.get(user) != account:
            stale.setdefault(account, []).append(user)
    for account, users in sorted(stale.items()):
        for user in users:
            out.changes.append(Change(host, REMOVE, "slurm", f"association {user}@{account}",
                                      "job history kept"))
        argv.append(("sacctmgr", "-i", "delete", "user", "where", f"name={','.join(users)}",
                     f"account={account}"))
    ours = {p.group for p in state.pairs.values()}
    gone = sorted(a for a, parent in snap.accounts.items()
                  if parent == course and a in ours and a not in pairs.values())
    if gone:
        for a in gone:
            out.changes.append(Change(host, REMOVE, "slurm", f"account {a}", "no member left"))
        argv.append(("sacctmgr", "-i", "delete", "account", "where", f"name={','.join(gone)}"))
    if argv:
        # the students' copy of their pair's budget (course-usage) follows at once, not at
        # the timer's next minute: new pairs and new budgets show straight away
        argv.append(REFRESH_PAIR_COPIES)
        out.changes.append(Change(host, "apply", "slurm", "sacctmgr",
                                  f"{len(argv) - 1} batched call(s)", tuple(argv)))
    return out
