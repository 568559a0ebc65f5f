"""Benchmark: the course hub on a provisioned lab (issue 12 §4), as students meet it.

Measured in one run, over HTTPS through nginx as a browser does it (tests/lab/hub_client.py):

- login to a kernel's first result: log in, spawn the CPU profile, wait for the server, open
  JupyterLab (the hub's OAuth), start a kernel and run ``print(1)``; the median of N (5),
  each from a fresh login and with the server stopped after; the time to a ready server
  (the spawn alone) beside it, so the part the hub and Slurm take shows;
- one server per CPU of the lab's GPU nodes (the lab's one-core profile, ``cpu1``),
  spawned at once by as many students: all must reach a running kernel; the time until
  the last one does.

The students log in with their own passwords (set once, as at a first ssh login, and kept
in the lab's .lab/hub-test-passwords.json, as the hub's lab tests do).

    python bench/hub.py [-i inventory/lab] [-n 5]
        (a lab after `ops provision`, `ops images push` and `ops images pull`)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ops.inventory import load  # noqa: E402
from tests.lab.hub_client import HubSession, own_passwords  # noqa: E402


class Lab:
    def __init__(self, inventory: Path) -> None:
        self.inv = inventory
        gv = yaml.safe_load((inventory / "group_vars" / "all.yml").read_text())
        self.name = gv.get("lab_name", "course-ops-lab")
        web = load(inventory).hosts_in("web")[0]
        self.base = f"https://127.0.0.1:{web.vars['lab_ports'][443]}"
        self.ca = inventory / ".lab" / "tls" / "ca.crt"
        self.passwords = own_passwords(inventory, self.name)

    def exec(self, node: str, *argv: str) -> str:
        return subprocess.run(["docker", "exec", f"{self.name}-{node}", *argv], check=True,
                              capture_output=True, text=True).stdout

    def students(self) -> list[str]:
        members = set()
        for line in self.exec("ctl", "getent", "group").splitlines():
            name, _, _, users = line.split(":")
            if users and name != "course-staff" and "pair" in name:
                members.update(users.split(","))
        return sorted(u for u in self.passwords if u in members)

    def cpu_slots(self, cores_per_server: int) -> int:
        out = self.exec("ctl", "sinfo", "-h", "-N", "-o", "%N %c")
        cpus = sum(int(c) for n, c in (ln.split() for ln in out.splitlines())
                   if n.startswith("gpu"))
        return max(1, cpus // cores_per_server)

    def hub_jobs(self) -> int:
        return len(self.exec("ctl", "squeue", "-h", "-n", "jupyterhub").splitlines())


def one_server(lab: Lab, user: str, profile: str = "cpu", keep: bool = False
               ) -> tuple[float, float, HubSession]:
    """(seconds to a ready server, seconds to the kernel's first result, the session),
    from login; the server stopped after, unless ``keep``."""
    s = HubSession(lab.base, lab.ca, user)
    t0 = time.monotonic()
    s.login(lab.passwords[user])
    s.spawn(profile)
    s.wait_ready(timeout=600)
    ready = time.monotonic() - t0
    s.open_lab()
    out = s.run_code("print(1)")
    first = time.monotonic() - t0
    if out.stdout.strip() != "1":
        raise RuntimeError(f"{user}: the kernel printed {out.stdout!r} {out.error}")
    if not keep:
        s.stop()
    return ready, first, s


def wait_no_jobs(lab: Lab, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while lab.hub_jobs() and time.monotonic() < deadline:
        time.sleep(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", "--inventory", type=Path, default=REPO / "inventory" / "lab")
    ap.add_argument("-n", type=int, default=5, help="logins to a first result (median)")
    ap.add_argument("--profile", default="cpu1",
                    help="the profile of the servers spawned at once (the lab's: 1 core)")
    ap.add_argument("--cores", type=int, default=1, help="that profile's cores")
    args = ap.parse_args()
    lab = Lab(args.inventory.resolve())
    students = lab.students()
    if not students:
        print("no student with an initial password: provision the lab first")
        return 2

    rows = []
    for i in range(args.n):
        wait_no_jobs(lab)
        rows.append(one_server(lab, students[i % len(students)]))
    ready = statistics.median(r[0] for r in rows)
    first = statistics.median(r[1] for r in rows)
    print(f"login -> ready server        median {ready:6.1f} s  (n={args.n}: "
          + ", ".join(f"{r[0]:.1f}" for r in rows) + ")")
    print(f"login -> first kernel result median {first:6.1f} s  (n={args.n}: "
          + ", ".join(f"{r[1]:.1f}" for r in rows) + ")")
    print(f"  of which the server after it was ready: {first - ready:.1f} s")

    slots = min(lab.cpu_slots(args.cores), len(students))
    wait_no_jobs(lab)
    t0 = time.monotonic()
    with ThreadPoolExecutor(slots) as pool:
        results = list(pool.map(lambda u: one_server(lab, u, args.profile, keep=True),
                                students[:slots]))
    last = time.monotonic() - t0
    running = lab.hub_jobs()  # every server still holds its job here
    for *_, s in results:
        s.stop()
    print(f"{slots} CPU servers at once: all {len(results)} reached a kernel ({running} "
          f"jobs running together); the last after {last:.1f} s"
          f" (one alone: {first:.1f} s, ratio {last / first:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
