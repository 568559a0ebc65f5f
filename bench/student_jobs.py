"""Benchmark: students' jobs in the course image on a provisioned lab (issue 11 §4).

Measured in one run, as a student on the login node submits them with course-sbatch:

- the time from submission to the job's first output line, over N jobs in the image and
  N with ``--no-image`` (the baseline, same run): medians and their difference (target:
  the image adds at most 2 s);
- one single-CPU job per CPU of every GPU server, submitted at once: all must succeed;
  the time until the last one is done;
- the disk a student's container costs on the node: the job's own container storage
  (everything of the image is in the shared store) while a job runs and after it ends
  (target: under 100 MB per student, whatever the image's size).

    python bench/student_jobs.py [-i inventory/lab] [-n 10]
        (a lab after `ops provision`, `ops images push` and `ops images pull`)
"""

from __future__ import annotations

import argparse
import re
import shlex
import statistics
import subprocess
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
JOBS = "/var/lib/course-containers/jobs"


class Lab:
    def __init__(self, inventory: Path) -> None:
        gv = yaml.safe_load((inventory / "group_vars" / "all.yml").read_text())
        self.name = gv.get("lab_name", "course-ops-lab")

    def exec(self, node: str, *argv: str, user: str | None = None, check: bool = True) -> str:
        cmd = ["docker", "exec", "-w", f"/home/{user}" if user else "/", f"{self.name}-{node}"]
        if user:
            cmd += ["runuser", "-u", user, "--"]
        return subprocess.run([*cmd, *argv], check=check, capture_output=True,
                              text=True).stdout

    def student(self) -> str:
        for line in self.exec("ctl", "getent", "group").splitlines():
            name, _, _, members = line.split(":")
            if name.startswith("pair") and members:
                return members.split(",")[0]
        raise SystemExit("no student on the lab: run `ops provision` first")

    def cpus(self) -> int:
        out = self.exec("ctl", "sinfo", "-h", "-N", "-o", "%N %c")
        return sum(int(line.split()[1]) for line in set(out.splitlines()))

    def submit(self, user: str, args: str) -> tuple[str, float]:
        t0 = time.monotonic()
        out = self.exec("ctl", "sh", "-c", f"course-sbatch {args}", user=user)
        m = re.search(r"Submitted batch job (\d+)", out)
        if not m:
            raise SystemExit(f"course-sbatch {args}: {out}")
        return m.group(1), t0

    def first_line(self, user: str, job: str, t0: float, marker: str,
                   timeout: float = 300) -> float:
        """Seconds from submission until ``marker`` (a line the command prints) appears."""
        while time.monotonic() - t0 < timeout:
            out = self.exec("ctl", "sh", "-c", f"cat slurm-*-{job}.out 2>/dev/null || true",
                            user=user)
            if marker in out:
                return time.monotonic() - t0
            time.sleep(0.1)
        raise SystemExit(f"job {job}: no output after {timeout} s")

    def ended(self, job: str) -> str:
        out = self.exec("ctl", "scontrol", "show", "job", "-o", job, check=False)
        m = re.search(r"JobState=(\S+)", out)
        return m.group(1) if m else "GONE"


def to_first_line(lab: Lab, user: str, n: int) -> tuple[list[float], list[float]]:
    """(in the image, bare host) times, the two kinds alternating (no order advantage)."""
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(n):
        for image in (i % 2 == 0, i % 2 == 1):
            flag = "" if image else "--no-image "
            marker = f"bench-{'image' if image else 'host'}-{i}-{time.time_ns()}"
            job, t0 = lab.submit(user, f"-c 1 -J first {flag}echo {marker}")
            times[image].append(lab.first_line(user, job, t0, marker))
    return times[True], times[False]


def at_once(lab: Lab, user: str, jobs: int) -> tuple[float, list[str]]:
    t0 = time.monotonic()
    # different pairs' QOS caps GPUs per pair: these jobs ask for none
    ids = [lab.submit(user, f"-c 1 -g 0 -J wide{i} python -c 'print(sum(range(10**6)))'")[0]
           for i in range(jobs)]
    states: dict[str, str] = {}
    while time.monotonic() - t0 < 600:
        states = {j: lab.ended(j) for j in ids}
        if all(s in ("COMPLETED", "FAILED", "CANCELLED", "OUT_OF_MEMORY", "TIMEOUT", "GONE")
               for s in states.values()):
            break
        time.sleep(0.5)
    return time.monotonic() - t0, list(states.values())


def disk(lab: Lab, user: str) -> tuple[int, int, str]:
    """KiB of a running job's container storage, and of the student's after it ended."""
    marker = f"bench-disk-{time.time_ns()}"
    job, t0 = lab.submit(user, f"-c 1 -J disk sh -c {shlex.quote(f'echo {marker}; sleep 60')}")
    lab.first_line(user, job, t0, marker)
    node = lab.exec("ctl", "squeue", "-h", "-j", job, "-o", "%N").strip()
    during = int(lab.exec(node, "du", "-sk", f"{JOBS}/{job}").split()[0])
    lab.exec("ctl", "scancel", job)
    while lab.ended(job) not in ("CANCELLED", "GONE"):
        time.sleep(0.5)
    time.sleep(2)
    uid = lab.exec(node, "id", "-u", user).strip()
    left = lab.exec(node, "sh", "-c", f"find {JOBS} /var/lib/course-containers/users "
                                      f"-user {uid} -print0 | du -sk --files0-from=- "
                                      "--total 2>/dev/null | tail -n1 || echo 0")
    store = lab.exec(node, "du", "-sh", "/var/lib/course-containers/store").split()[0]
    return during, int(left.split()[0] if left.strip() else 0), store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-i", "--inventory", type=Path, default=REPO / "inventory" / "lab")
    ap.add_argument("-n", type=int, default=10, help="jobs per kind for the first-line time")
    args = ap.parse_args()
    lab = Lab(args.inventory)
    user = lab.student()

    image, host = to_first_line(lab, user, args.n)
    h, i = statistics.median(host), statistics.median(image)
    print(f"submission -> first output line, median of {args.n}: --no-image {h:.2f} s, "
          f"in the image {i:.2f} s: the image adds {i - h:.2f} s (ratio {i / h:.2f}; "
          f"target: adds <= 2 s) {'OK' if i - h <= 2 else 'MISSED'}")

    cpus = lab.cpus()
    took, states = at_once(lab, user, cpus)
    ok = states.count("COMPLETED")
    print(f"{cpus} single-CPU jobs at once (one per CPU of the GPU servers): {ok}/{cpus} "
          f"completed, the last after {took:.1f} s "
          f"({took / i:.1f}x one job's first line) {'OK' if ok == cpus else 'MISSED'}")

    during, after, store = disk(lab, user)
    print(f"disk per student: {during / 1024:.1f} MB while a job runs (its own container "
          f"storage), {after / 1024:.1f} MB after it ends; the shared store holds {store} "
          f"once per node (target: < 100 MB per student) "
          f"{'OK' if during < 100 * 1024 else 'MISSED'}")


if __name__ == "__main__":
    main()
