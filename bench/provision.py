"""Benchmark: when nothing changed, `ops verify` and `ops provision` are fast (issue 17).

Measured in one run, on a provisioned lab (the class synced, the image pushed and pulled),
for this checkout and for a baseline checkout of an older commit (``--baseline REF``: a git
worktree of it runs against the same lab, the same inventory, the same hosts):

- ``ops verify`` of every area: the median of N runs (target: at most 15 s), and the count
  of checks per host, which must be the same for both (every check still runs);
- a second ``ops -y provision`` that changes nothing (target: at most 45 s), with changed=0
  on every host, and its machines phase (ansible-playbook) alone (target: at most 20 s),
  read from ``--timings``; the baseline's machines phase is timed around its run;
- the same no-op provision of this checkout with Ansible's own ``linear`` strategy
  (``ANSIBLE_STRATEGY=linear``), which says what Mitogen's strategy bought.

It prints the ratios new / baseline. Figures depend on the machine: the note names it.

    python bench/provision.py [-i inventory/lab] [-n 3] [--baseline 51f8c3f]
        (a lab after `ops provision`, `ops images push` and `ops images pull`)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from ops import machines, report

REPO = Path(__file__).resolve().parent.parent
_MACHINES = re.compile(r"machines \(ansible-playbook\)\s*│?\s*([\d.]+)")


class Checkout:
    """A checkout of course-ops whose own `ops` runs (this one, or a baseline worktree)."""

    def __init__(self, root: Path, inventory: Path, env: dict[str, str] | None = None) -> None:
        self.root, self.inventory, self.env = root, inventory.resolve(), env or {}

    def ops(self, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        env = {**os.environ, "PYTHONPATH": str(self.root), "COLUMNS": "200", **self.env}
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "ops", "-i", str(self.inventory), *args],
                           cwd=self.root, env=env, capture_output=True, text=True)
        return time.monotonic() - t0, p

    def verify(self) -> tuple[float, Counter[str]]:
        with tempfile.TemporaryDirectory() as tmp:
            junit = Path(tmp) / "verify.xml"
            seconds, p = self.ops("verify", "--junit", str(junit))
            if p.returncode != 0:
                raise SystemExit(f"{self.root}: ops verify failed:\n{p.stdout[-3000:]}"
                                 f"{p.stderr[-2000:]}")
            # per host as `ops verify` summarises it: passed, failed and skipped together
            per_host = Counter({host: r.passed + r.failed + r.skipped for host, r in
                                report.summarise_tree(ET.parse(junit)).items()})
        return seconds, per_host

    def provision(self, timings: bool) -> tuple[float, float | None, dict[str, int]]:
        seconds, p = self.ops("-y", "provision", *(["--timings"] if timings else []))
        said = p.stdout + p.stderr
        if p.returncode != 0:
            raise SystemExit(f"{self.root}: ops provision failed:\n{said[-3000:]}")
        changed = {h: r.changed for h, r in machines.parse_output(p.stdout.splitlines()).items()}
        m = _MACHINES.search(said)
        return seconds, float(m.group(1)) if m else None, changed


def machines_alone(checkout: Checkout) -> float:
    """The machines phase of a checkout without --timings: ansible-playbook, timed here."""
    env = {**os.environ, "PYTHONPATH": str(checkout.root)}
    # the inventory object where the checkout passes one down, its directory where not
    # the extra variables `ops provision` hands Ansible (the image tags, the staff page's
    # settings): without them the run would change what the provision made
    code = ("import inspect, json, sys, time; import ops.cli; from ops import inventory, "
            "machines, usage; from ops.images.commands import image_extra_vars; "
            "from pathlib import Path; inv = Path(sys.argv[1]); "
            "old = 'inventory_dir' in inspect.signature(machines.playbook_argv).parameters; "
            "inv = inv if old else inventory.load(inv); page = usage.extra_vars(inv); "
            "extra = (*image_extra_vars(inv), *(('-e', json.dumps(page)) if page else ())); "
            "t0 = time.monotonic(); "
            "rc, recap = machines.run_playbook(machines.playbook_argv(inv, extra=extra), "
            "quiet=True); "
            "print(json.dumps({h: r.changed for h, r in recap.items()})); "
            "print(time.monotonic() - t0); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, str(checkout.inventory)], cwd=checkout.root,
                       env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{checkout.root}: ansible-playbook failed:\n{p.stdout[-3000:]}"
                         f"{p.stderr[-3000:]}")
    *_, changed, seconds = p.stdout.strip().splitlines()
    if any(json.loads(changed).values()):
        raise SystemExit(f"{checkout.root}: its no-op machines phase changed something: "
                         f"{changed}")
    return float(seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("-i", "--inventory", type=Path, default=REPO / "inventory" / "lab")
    ap.add_argument("-n", type=int, default=3, help="runs of each (median)")
    ap.add_argument("--baseline", default="51f8c3f",
                    help="the commit measured beside this checkout (default: stop 23's, "
                         "with package_facts; an older one converges the lab differently "
                         "and so cannot run beside this one without changing it)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ops-bench-baseline-") as tmp:
        base_root = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach",
                        str(base_root), args.baseline], check=True)
        try:
            new, old = Checkout(REPO, args.inventory), Checkout(base_root, args.inventory)
            linear = Checkout(REPO, args.inventory, {"ANSIBLE_STRATEGY": "linear"})
            rows: dict[str, dict[str, list[float]]] = {"new": {}, "baseline": {},
                                                       "new, linear": {}}
            counts: dict[str, Counter[str]] = {}
            for _ in range(args.n):
                for name, c in (("baseline", old), ("new", new)):
                    seconds, per_host = c.verify()
                    rows[name].setdefault("verify", []).append(seconds)
                    counts[name] = per_host

            def timed_noop(name: str, c: Checkout) -> None:
                """A no-op provision of ``c`` with --timings, into rows[name]."""
                seconds, machines, changed = c.provision(timings=True)
                if any(changed.values()):
                    raise SystemExit(f"the no-op provision changed something: {changed}")
                rows[name].setdefault("no-op provision", []).append(seconds)
                if machines is not None:
                    rows[name].setdefault("machines phase", []).append(machines)

            for _ in range(args.n):
                timed_noop("new", new)
                seconds, _, changed = old.provision(timings=False)
                rows["baseline"].setdefault("no-op provision", []).append(seconds)
                rows["baseline"].setdefault("machines phase", []).append(machines_alone(old))
                timed_noop("new, linear", linear)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(base_root)], check=False)

    targets = {"verify": 15.0, "no-op provision": 45.0, "machines phase": 20.0}
    def median(name: str, what: str) -> float:
        return statistics.median(rows[name].get(what, [float("nan")]))

    print(f"{'':18} {'baseline':>10} {'new':>10} {'ratio':>7} {'target':>8}"
          f" {'new, linear':>12} {'ratio':>7}")
    for what, target in targets.items():
        b, n, lin = median("baseline", what), median("new", what), median("new, linear", what)
        met = "met" if n <= target else "MISSED"
        tail = "" if math.isnan(lin) else f" {lin:11.1f}s {n / lin:7.2f}"  # not measured
        print(f"{what:18} {b:9.1f}s {n:9.1f}s {n / b:7.2f} {target:6.0f} s {met:6}{tail}")
    print("(new, linear: this checkout with ANSIBLE_STRATEGY=linear; its ratio is new / it)")
    print("issue 17's figures before any of its work (2-core dev machine, 12-student class):"
          f" verify 76 s -> {median('new', 'verify'):.1f} s,"
          f" no-op provision 98 s -> {median('new', 'no-op provision'):.1f} s")
    print("checks per host (baseline -> new; before stop 19 a check a mark skips is placed "
          "by its test id, which may read 'gpu1-/dev/nvidia0'):")
    for host in sorted(set(counts["baseline"]) | set(counts["new"])):
        b, n = counts["baseline"][host], counts["new"][host]
        print(f"  {host:10} {b:5} -> {n:5}{'' if b == n else '  DIFFERENT'}")
    b, n = sum(counts["baseline"].values()), sum(counts["new"].values())
    print(f"  {'all':10} {b:5} -> {n:5}{'' if b == n else '  DIFFERENT'}")


if __name__ == "__main__":
    main()
