"""Benchmark: Slurm's associations for 300 pairs (600 students) on a provisioned lab.

Times, in one run against the same slurmdbd: bringing the associations in step from empty
and when nothing changed, the way `ops accounts sync` does it (one read, one
`sacctmgr load` plus a few batched calls: ops.accounts.slurm), and the baseline, one
sacctmgr call per pair and per student. Both talk to the controller through `docker exec`,
so the transport is the same. The bench works under a parent account of its own
("bench") and removes everything it made. Targets: from empty <= 20 s and >= 5x faster
than the baseline.

    python bench/slurm.py [--pairs 300] [-i inventory/lab]   (a lab after `ops provision`)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from ops.accounts import slurm  # noqa: E402
from ops.accounts.model import AccountsConfig, allocate  # noqa: E402
from ops.accounts.snapshot import SLURM_SNAPSHOT, parse_snapshot  # noqa: E402
from ops.roster import parse  # noqa: E402
from ops.sample import make_class  # noqa: E402
from ops.state import AccountsState  # noqa: E402

PARENT = "bench"


def ctl(container: str, *argv: str) -> str:
    return subprocess.run(["docker", "exec", container, *argv], check=True,
                          capture_output=True, text=True).stdout


def clean(container: str, users: list[str], accounts: list[str]) -> None:
    for i in range(0, len(users), 200):
        subprocess.run(["docker", "exec", container, "sacctmgr", "-i", "delete", "user",
                        "where", f"name={','.join(users[i:i + 200])}"], capture_output=True)
    subprocess.run(["docker", "exec", container, "sacctmgr", "-i", "delete", "account",
                    "where", f"name={','.join([*accounts, PARENT])}"], capture_output=True)


def ours(container: str, state: AccountsState, qos: str) -> tuple[float, int]:
    t0 = time.monotonic()
    lines = ctl(container, "sh", "-c", SLURM_SNAPSHOT).splitlines()
    snap = parse_snapshot(lines).slurm
    assert snap is not None, "Slurm does not answer: run `ops provision` first"
    plan = slurm.plan("ctl", state, PARENT, qos, snap)
    calls = [a for c in plan.changes for a in c.argv]
    for argv in calls:
        ctl(container, *argv)
    return time.monotonic() - t0, len(calls)


def baseline(container: str, state: AccountsState, qos: str) -> float:
    t0 = time.monotonic()
    ctl(container, "sacctmgr", "-i", "add", "account", PARENT, "parent=root")
    for p in state.pairs.values():
        ctl(container, "sacctmgr", "-i", "add", "account", p.group, f"parent={PARENT}",
            f"qos={qos}", f"defaultqos={qos}", "fairshare=1")
    for r in state.students.values():
        ctl(container, "sacctmgr", "-i", "add", "user", r.username,
            f"account={state.pairs[r.pair].group}", f"defaultaccount={state.pairs[r.pair].group}")
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("-i", "--inventory", type=Path, default=REPO / "inventory" / "lab")
    args = ap.parse_args()
    gv = yaml.safe_load((args.inventory / "group_vars" / "all.yml").read_text())
    container = f"{gv.get('lab_name', 'course-ops-lab')}-ctl"
    qos = str(gv.get("slurm_qos_name", "course"))
    roster = parse(make_class(args.pairs, seed=4242), "bench.csv")
    cfg = AccountsConfig.from_vars({"accounts_expire_date": "2099-12-31",
                                    "accounts_uid_range": [50000, 59999],
                                    "accounts_pair_gid_range": [60000, 69999],
                                    "accounts_course_gid": 49999}, Path("bench"))
    state = allocate(roster, AccountsState(), cfg, Path("bench"))
    for r in state.students.values():  # keep clear of the lab's own students' names
        r.username = f"b{r.uid}"
    for p in state.pairs.values():
        p.group = f"bpair{p.gid}"
    users = [r.username for r in state.students.values()]
    accounts = [p.group for p in state.pairs.values()]
    n = len(users)
    clean(container, users, accounts)
    try:
        empty, calls = ours(container, state, qos)
        print(f"ours, from empty ({n} students, {len(accounts)} pairs): {empty:6.1f} s "
              f"({calls} sacctmgr call(s))", flush=True)
        noop, calls0 = min(ours(container, state, qos) for _ in range(3))
        print(f"ours, nothing changed (best of 3):                  {noop:6.1f} s "
              f"({calls0} sacctmgr write call(s))", flush=True)
        clean(container, users, accounts)
        base = baseline(container, state, qos)
        print(f"baseline, one sacctmgr call per pair and student:   {base:6.1f} s "
              f"({len(accounts) + n + 1} calls)", flush=True)
    finally:
        clean(container, users, accounts)
    print()
    print(f"{'figure':40} {'value':>9} {'target':>9} {'met':>4}")
    print(f"{'from empty':40} {empty:8.1f}s {'<= 20 s':>9} {'yes' if empty <= 20 else 'NO':>4}")
    print(f"{'nothing changed':40} {noop:8.1f}s {'':>9} {'':>4}")
    ratio = base / empty
    print(f"{'baseline / ours (from empty)':40} {ratio:8.1f}x {'>= 5x':>9} "
          f"{'yes' if ratio >= 5 else 'NO':>4}")


if __name__ == "__main__":
    main()
