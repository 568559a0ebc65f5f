"""Benchmark: `ops usage` over a slurmdbd holding real jobs of 300 pairs.

The bench makes 300 pair accounts of its own under the course's account (``bench001`` ...,
root their only member), submits four short jobs per pair as two job arrays (one of them
on a GPU: the lab's placeholder GPUs are counted by Slurm), waits until slurmdbd has them
all, then times, in the same run:
- `ops usage --format json` (one SSH command: one sacct, one scontrol, one sinfo), and
- the baseline: one ``sacct -A <pair>`` per pair (run in one shell on the controller, so
  the baseline pays no SSH per pair: a lower bound of a per-pair script's cost).
Target: `ops usage` at most 5 s. It removes its accounts at the end (their jobs stay in
the history, as every removed association's do) unless --keep.

    python bench/usage.py [-i inventory/lab] [--pairs 300] [--runs 3]   (a provisioned lab)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402


def ctl(container: str, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(["docker", "exec", "-i", container, *argv], check=True,
                          capture_output=True, text=True, input=stdin).stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", "--inventory", type=Path, default=REPO / "inventory" / "lab")
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the bench's accounts")
    args = ap.parse_args()
    inv = args.inventory.resolve()
    lab = yaml.safe_load((inv / "group_vars" / "all.yml").read_text())["lab_name"]
    course = yaml.safe_load((inv / "group_vars" / "all.yml").read_text()).get(
        "accounts_course_group", "course")
    container = f"{lab}-ctl"
    names = [f"bench{i:03d}" for i in range(1, args.pairs + 1)]
    cluster = ctl(container, "sacctmgr", "-nP", "show", "cluster", "format=cluster").split()[0]
    load = [f"Cluster - '{cluster}'", f"Parent - '{course}'",
            *(f"Account - '{n}':Description='{n}':Organization='{course}'" for n in names)]
    for n in names:
        load += [f"Parent - '{n}'", "User - 'root':Fairshare=1"]
    ctl(container, "sh", "-c", 'f=$(mktemp) && cat > "$f" && sacctmgr -i load file="$f"; '
        'rc=$?; rm -f "$f"; exit $rc', stdin="\n".join(load) + "\n")
    t0 = time.monotonic()
    first = int(ctl(container, "date", "+%s"))
    script = "\n".join(
        f"sbatch -Q -A {n} -c 1 -t 1 -o /dev/null --array=0-1 --wrap true && "
        f"sbatch -Q -A {n} -c 1 -t 1 -o /dev/null --array=0-1 --gres=gpu:1 --wrap true"
        for n in names)
    ctl(container, "sh", "-ec", script)
    want = 4 * args.pairs
    since = ctl(container, "date", "-d", f"@{first - 60}", "+%Y-%m-%dT%H:%M:%S").strip()
    while True:
        done = [s for s in ctl(container, "sacct", "-aXnP", "-S", since, "-o", "state",
                               "-A", ",".join(names)).split() if s == "COMPLETED"]
        print(f"\r{len(done)}/{want} jobs recorded", end="", flush=True)
        if len(done) >= want:
            break
        if time.monotonic() - t0 > 3600:
            print("\nthe jobs did not finish within an hour", file=sys.stderr)
            return 1
        time.sleep(10)
    print(f"\n{want} jobs of {args.pairs} pairs ran in {time.monotonic() - t0:.0f} s")
    until = ctl(container, "date", "+%Y-%m-%dT%H:%M:%S").strip()

    def ours() -> tuple[float, dict]:
        t = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "ops", "-i", str(inv), "usage", "--since",
                            since, "--until", until, "--format", "json"], cwd=REPO,
                           check=True, capture_output=True, text=True)
        return time.monotonic() - t, json.loads(p.stdout)

    loop = "\n".join(f"sacct -XnP -S {since} -E {until} -A {n} "
                     "-o JobID,User,AllocTRES,AllocCPUS,Start,End >/dev/null" for n in names)

    def baseline() -> float:
        t = time.monotonic()
        ctl(container, "sh", "-ec", loop)
        return time.monotonic() - t

    mine, base, rep = [], [], {}
    for _ in range(args.runs):
        secs, rep = ours()
        mine.append(secs)
        base.append(baseline())
    bench = [p for p in rep["pairs"] if p["account"].startswith("bench")]
    jobs = sum(p["jobs"] for p in bench)
    assert len(bench) == args.pairs and jobs >= want, (len(bench), jobs)
    m, b = statistics.median(mine), statistics.median(base)
    print(f"ops usage (median of {args.runs}): {m:.2f} s for {len(rep['pairs'])} pairs, "
          f"{jobs} bench jobs   target <= 5 s: {'met' if m <= 5 else 'MISSED'}")
    print(f"per-pair sacct loop (median of {args.runs}): {b:.2f} s")
    print(f"ratio ops usage / per-pair loop: {m / b:.3f}  ({b / m:.1f}x faster)")
    if not args.keep:
        ctl(container, "sacctmgr", "-i", "delete", "user", "where", "name=root",
            f"account={','.join(names)}")
        ctl(container, "sacctmgr", "-i", "delete", "account", "where",
            f"name={','.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
