"""Benchmark: accounts for 300 pairs (600 students) on the lab's three hosts.

Times, in one run on one machine: `ops accounts sync` from scratch, its no-op re-run, and
the baseline, an Ansible playbook looping ansible.builtin.group/user over the same accounts
(its no-op run). Prints the figures and the ratios against the targets:
no-op re-sync <= 10 s and >= 10x faster than the baseline's no-op; from scratch <= 90 s.

    python bench/accounts.py [--pairs 300] [--keep-lab]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ops.sample import make_class  # noqa: E402

LAB = "course-ops-bench"


def ops(inv: Path, *args: str) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "ops", "-i", str(inv), "-q", *args], check=True,
                   cwd=REPO, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def baseline_vars(inv: Path, dest: Path) -> None:
    state = json.loads((inv / "state" / "accounts.json").read_text())
    gv = yaml.safe_load((inv / "group_vars" / "all.yml").read_text())
    expires = time.mktime(time.strptime(gv["accounts_expire_date"], "%Y-%m-%d"))
    groups = [{"name": gv["accounts_course_group"], "gid": gv["accounts_course_gid"]}]
    groups += [{"name": p["group"], "gid": p["gid"]} for p in state["pairs"].values()]
    users = []
    for s in state["students"].values():
        groups.append({"name": s["username"], "gid": s["uid"]})
        users.append({"name": s["username"], "uid": s["uid"],
                      "groups": [gv["accounts_course_group"], state["pairs"][s["pair"]]["group"]],
                      "comment": f"{s['first_name']} {s['last_name']}".strip(),
                      "home": f"/home/{s['username']}", "shell": "/bin/bash",
                      "expires": expires})
    dest.write_text(json.dumps({"bench_groups": groups, "bench_users": users}))


def ansible(inv: Path, vars_file: Path) -> tuple[float, int]:
    t0 = time.monotonic()
    p = subprocess.run(["ansible-playbook", "-i", str(inv / "hosts.yml"),
                        str(REPO / "bench" / "baseline_accounts.yml"),
                        "-e", f"bench_vars={vars_file}"], cwd=REPO, capture_output=True,
                       text=True)
    took = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"baseline failed:\n{p.stdout[-3000:]}\n{p.stderr[-2000:]}")
    changed = sum(int(n) for n in re.findall(r"changed=(\d+)", p.stdout))
    return took, changed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--keep-lab", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ops-bench-"))
    inv = work / "lab"
    shutil.copytree(REPO / "inventory" / "lab" / "group_vars", inv / "group_vars")
    gv = inv / "group_vars" / "all.yml"
    data = yaml.safe_load(gv.read_text())
    data["lab_name"] = LAB
    gv.write_text(yaml.safe_dump(data, allow_unicode=True))
    (inv / "roster.csv").write_text(make_class(args.pairs), "utf-8")
    n = 2 * args.pairs
    try:
        print(f"lab up: {ops(inv, 'lab', 'up'):.1f} s", flush=True)
        scratch = ops(inv, "-y", "accounts", "sync")
        print(f"ops accounts sync, from scratch ({n} students, 3 hosts): {scratch:.1f} s",
              flush=True)
        noop = min(ops(inv, "-y", "accounts", "sync") for _ in range(3))
        print(f"ops accounts sync, no change (best of 3):            {noop:.1f} s", flush=True)
        vars_file = work / "baseline.json"
        baseline_vars(inv, vars_file)
        first, changed = ansible(inv, vars_file)
        print(f"baseline ansible first run: {first:.1f} s (changed={changed})", flush=True)
        if changed:
            base, changed = ansible(inv, vars_file)
            print(f"baseline ansible second run: {base:.1f} s (changed={changed})", flush=True)
        else:
            base = first
        print()
        print(f"{'figure':44} {'seconds':>8} {'target':>10} {'met':>4}")
        rows = [("sync from scratch", scratch, "<= 90 s", scratch <= 90),
                ("no-op re-sync", noop, "<= 10 s", noop <= 10),
                ("baseline no-op (ansible user/group loops)", base, "", True)]
        for name, secs, target, met in rows:
            print(f"{name:44} {secs:8.1f} {target:>10} {'yes' if met else 'NO':>4}")
        ratio = base / noop
        print(f"{'ratio baseline no-op / ops no-op':44} {ratio:7.1f}x {'>= 10x':>10} "
              f"{'yes' if ratio >= 10 else 'NO':>4}")
    finally:
        if not args.keep_lab:
            ops(inv, "lab", "down")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
