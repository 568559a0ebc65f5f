"""GPU budgets and usage on the lab (issue 15): `ops usage` against what slurmdbd recorded,
a spent budget that holds a pair's next GPU job (never kills the running one) until the
staff raise it, privacy between pairs, course-usage, and the staff's page.

On the shared provisioned lab; the lab's placeholder GPUs are counted by Slurm like real
ones. The lab's inventory sets PriorityCalcPeriod to a minute, so a budget's usage shows
within a minute.
"""

from __future__ import annotations

import base64
import json
import shlex
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops import slurm_usage as su
from tests.lab.conftest import LAB_NAME, docker_exec, ops
from tests.lab.labtools import wait_for

pytestmark = pytest.mark.lab


def as_student(user: str, command: str, check: bool = True) -> str:
    p = subprocess.run(["docker", "exec", "-w", "/tmp", f"{LAB_NAME}-ctl", "runuser", "-u",
                        user, "--", "sh", "-c", command], capture_output=True, text=True,
                       timeout=120, check=False)
    if check and p.returncode:
        raise AssertionError(f"{user}: {command}: exit {p.returncode}: {p.stderr[-1000:]}")
    return p.stdout


def sbatch(user: str, account: str, *args: str) -> str:
    out = as_student(user, shlex.join(["sbatch", "--parsable", "-A", account, "-c", "1",
                                       "-o", "/dev/null", *args]))
    return out.strip().split(";")[0]


def job(jobid: str) -> dict[str, str]:
    out = docker_exec("ctl", "scontrol", "show", "job", "-o", jobid)
    return dict(f.split("=", 1) for f in out.split() if "=" in f)


def controller_time(offset: int = 0) -> str:
    """The controller's clock (``ops usage`` takes its times), ``offset`` seconds away."""
    now = int(docker_exec("ctl", "date", "+%s"))
    return docker_exec("ctl", "date", "-d", f"@{now + offset}", "+%Y-%m-%dT%H:%M:%S").strip()


@pytest.fixture(scope="module")
def pairs(provisioned_lab: Path) -> list[tuple[str, str, list[str]]]:
    """Three pairs of two students each: (pair key, account, usernames)."""
    state = json.loads((provisioned_lab / "state" / "accounts.json").read_text())
    members: dict[str, list[str]] = {}
    for s in state["students"].values():
        if s["status"] == "active":
            members.setdefault(s["pair"], []).append(s["username"])
    chosen = [(k, state["pairs"][k]["group"], sorted(v)) for k, v in sorted(members.items())
              if len(v) == 2 and state["pairs"][k]["status"] == "active"]
    assert len(chosen) >= 3
    return chosen[-3:]  # the last ones: other modules' jobs run as the first students


@pytest.fixture(scope="module")
def budgets_file(provisioned_lab: Path) -> Iterator[Path]:
    path = provisioned_lab / "gpu-budgets.yml"
    yield path
    path.unlink(missing_ok=True)
    ops(provisioned_lab, "-y", "accounts", "sync")


def sacct_seconds(since: str, until: str) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(account, user) -> jobs, GPU-seconds, CPU-seconds as slurmdbd recorded them, clipped
    to the window as `ops usage` documents."""
    s, u = (int(docker_exec("ctl", "date", "-d", t, "+%s")) for t in (since, until))
    out = docker_exec("ctl", "env", "SLURM_TIME_FORMAT=%s", "sacct", "-aXnP", "-S", since,
                      "-E", until, "-o", "User,Account,AllocTRES,AllocCPUS,Start,End")
    got: dict[tuple[str, str], tuple[int, int, int]] = {}
    for line in out.splitlines():
        user, account, tres, cpus, start, end = line.split("|")
        if not start.isdigit():
            continue
        stop = int(end) if end.isdigit() else u
        secs = max(0, min(stop, u) - max(int(start), s))
        gpus = next((int(t.split("=")[1]) for t in tres.split(",")
                     if t.startswith("gres/gpu=")), 0)
        n, g, c = got.get((account, user), (0, 0, 0))
        got[(account, user)] = (n + 1, g + gpus * secs, c + int(cpus) * secs)
    return got


def test_ops_usage_reports_the_gpu_seconds_slurm_recorded(provisioned_lab: Path, pairs,  # noqa: ANN001
                                                          tmp_path: Path) -> None:
    since = controller_time(-60)
    (_, a_acct, (a1, a2)), (_, b_acct, (b1, _b2)) = pairs[0], pairs[1]
    mine = [sbatch(a1, a_acct, "--gres=gpu:1", "-t", "1", "--wrap", "sleep 4"),
            sbatch(a2, a_acct, "--gres=gpu:1", "-t", "1", "--wrap", "sleep 2"),
            sbatch(b1, b_acct, "--gres=gpu:1", "-t", "1", "--wrap", "sleep 6")]

    def done() -> bool:
        out = docker_exec("ctl", "sacct", "-nXP", "-j", ",".join(mine), "-o", "State,End")
        return len(out.splitlines()) == 3 and all(
            line.startswith("COMPLETED|") and "Unknown" not in line for line in out.splitlines())

    wait_for("the three jobs are recorded as completed", done, timeout=180, every=2)
    time.sleep(1)
    until = controller_time()
    rep = json.loads(ops(provisioned_lab, "usage", "--since", since, "--until", until,
                         "--format", "json").stdout)
    want = sacct_seconds(since, until)
    by_account = {p["account"]: p for p in rep["pairs"]}
    for account, users in ((a_acct, (a1, a2)), (b_acct, (b1,))):
        p = by_account[account]
        jobs = sum(want.get((account, u), (0, 0, 0))[0] for u in users)
        gpu = sum(want.get((account, u), (0, 0, 0))[1] for u in users)
        assert p["jobs"] == jobs >= len(users)
        assert abs(p["gpu_hours"] * 3600 - gpu) < 0.05, (p, want)
        for s in p["students"]:
            n, g, c = want.get((account, s["username"]), (0, 0, 0))
            assert s["jobs"] == n and abs(s["gpu_hours"] * 3600 - g) < 0.05
            assert abs(s["cpu_hours"] * 3600 - c) < 0.05
    # our jobs alone: 1 GPU x ~4 s + 1 x ~2 s for pair A, 1 GPU x ~6 s for pair B (a
    # pair may use one GPU at a time)
    assert by_account[a_acct]["gpu_hours"] * 3600 >= 5
    assert by_account[b_acct]["gpu_hours"] * 3600 >= 5
    assert rep["gpus"] == 4 and rep["occupancy"]
    assert {p["account"] for p in rep["pairs"]} >= {a for _k, a, _u in pairs}
    # the other formats carry the same figures; the plot is a PNG with the pairs on it
    rows = ops(provisioned_lab, "usage", "--since", since, "--until", until, "--format",
               "csv", "--plot", str(tmp_path / "usage.png")).stdout.splitlines()
    pair_row = next(r.split(",") for r in rows if r.startswith(f"{pairs[0][0]},{a_acct},,"))
    assert float(pair_row[4]) == by_account[a_acct]["gpu_hours"]
    png = (tmp_path / "usage.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # a bad flag stops before any host, in one line
    bad = ops(provisioned_lab, "usage", "--since", "last week", check=False)
    assert bad.returncode == 2 and "expected a date" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) <= 2


def test_a_spent_budget_holds_the_next_gpu_job_until_it_is_raised(
        provisioned_lab: Path, pairs, budgets_file: Path) -> None:  # noqa: ANN001
    key, acct, (s1, s2) = pairs[2]
    docker_exec("ctl", "scancel", "-A", acct)  # nothing of the pair's left by other modules
    wait_for("the pair has no job", lambda: not docker_exec(
        "ctl", "squeue", "-h", "-A", acct).strip(), timeout=60)

    def used() -> int:
        """The pair's GPU-minutes as the association manager counts them (whole minutes)."""
        out = docker_exec("ctl", "scontrol", "-o", "show", "assoc_mgr", "flags=assoc",
                          f"accounts={acct}")
        assocs = [su.parse_assoc(line) for line in out.splitlines()]
        return int(next(a for a in assocs if a and a.account == acct and not a.user)
                   .gpu_minutes_used)

    before = used()  # other modules' GPU jobs of this pair count too
    budget = before + 3  # three GPU-minutes left
    budgets_file.write_text(f"# a pair with three GPU-minutes left\n{key}: {budget / 60!r}\n")
    plan = ops(provisioned_lab, "accounts", "plan", "--format", "json").stdout
    assert {"action": "change", "subject": f"budget {acct}"}.items() <= next(
        c for c in json.loads(plan)["changes"] if c["subject"] == f"budget {acct}").items()
    ops(provisioned_lab, "-y", "accounts", "sync")
    row = docker_exec("ctl", "sacctmgr", "-nP", "show", "assoc", "where", f"account={acct}",
                      "format=user,grptresmins").splitlines()
    assert f"|gres/gpu={budget}" in row
    # the running job fits (3 GPU-minutes of time limit) and is never killed
    first = sbatch(s1, acct, "--gres=gpu:1", "-t", "3", "--wrap", "sleep 62")  # > 1 minute

    def first_runs() -> bool:
        info = job(first)
        assert info["JobState"] in ("PENDING", "RUNNING"), info
        return info["JobState"] == "RUNNING"

    try:
        wait_for("the first job runs", first_runs, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {job(first)}") from None
    wait_for("the first job ends", lambda: job(first)["JobState"] != "RUNNING", timeout=150,
             every=2)
    assert (job(first)["JobState"], job(first)["ExitCode"]) == ("COMPLETED", "0:0")
    wait_for("Slurm counts the first job against the budget", lambda: used() >= before + 1,
             timeout=90, every=2)
    # 3 - 1 GPU-minutes left: a job of 3 GPU-minutes is held, with the budget's reason
    held = sbatch(s2, acct, "--gres=gpu:1", "-t", "3", "--wrap", "sleep 1")
    wait_for("the next GPU job is held for the budget",
             lambda: job(held)["Reason"] == "AssocGrpGRESMinutes", timeout=60)
    cpu = sbatch(s2, acct, "-t", "1", "--wrap", "true")  # CPU jobs still run
    wait_for("the CPU job runs", lambda: job(cpu)["JobState"] == "COMPLETED", timeout=60)
    assert job(held)["JobState"] == "PENDING"
    # course-usage tells the student, and only about their own pair and jobs
    wait_for("course-usage shows the budget", lambda: f"of {budget / 60:.2f} GPU-hours used"
             in as_student(s2, "course-usage"), timeout=90, every=3)
    said = as_student(s2, "course-usage")
    assert f"pair account {acct}:" in said and str(held) in said
    assert "AssocGrpGRESMinutes" in said
    assert all(a not in said for _k, a, _u in pairs[:2])
    partner = as_student(s1, "course-usage")
    assert f"pair account {acct}:" in partner and str(held) not in partner
    # privacy: the partner's job is not shown to the other, nor is any other pair's
    others = as_student(s1, "sacct -aXn -S now-1hour -o user,account")
    assert {tuple(line.split()) for line in others.splitlines()} <= {(s1, acct)}
    assert str(held) not in as_student(s1, "squeue -h -o %i")
    # the staff raise it (the file beside the roster), the sync releases the job
    budgets_file.write_text(f"{key}: {(budget + 60) / 60!r}\n")
    ops(provisioned_lab, "-y", "accounts", "sync")
    wait_for("the held job starts", lambda: job(held)["JobState"] in ("RUNNING", "COMPLETED"),
             timeout=120, every=2)


def test_a_bad_budget_file_stops_before_any_host(provisioned_lab: Path, pairs,  # noqa: ANN001
                                                 budgets_file: Path) -> None:
    budgets_file.write_text(f"{pairs[0][0]}: 10\nno-such-pair: 5\n")
    p = ops(provisioned_lab, "accounts", "plan", check=False)
    assert p.returncode == 3, p.stderr
    assert f"{budgets_file}:2: pair 'no-such-pair' is not in the roster" in p.stderr
    budgets_file.unlink()


def test_the_staff_page_is_made_published_and_behind_a_password(provisioned_lab: Path,  # noqa: ANN001
                                                                pairs) -> None:
    docker_exec("ctl", "systemctl", "start", "course-usage-page.service")  # the timer's job
    from ops import inventory as inv_mod

    port = inv_mod.load(provisioned_lab).hosts_in("web")[0].vars["lab_ports"][443]
    base = f"https://127.0.0.1:{port}/cs236781/staff/usage/"
    ctx = ssl.create_default_context(cafile=str(provisioned_lab / ".lab" / "tls" / "ca.crt"))
    ctx.check_hostname = False

    def get(path: str, auth: str | None) -> tuple[int, bytes]:
        req = urllib.request.Request(base + path)
        if auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:  # noqa: S310
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, b""

    password = (provisioned_lab / ".secrets" / "usage-page-password").read_text().strip()
    assert get("", None)[0] == 401
    assert get("", "staff:wrong")[0] == 401
    assert get("usage.json", None)[0] == 401
    status, page = get("", f"staff:{password}")
    assert status == 200 and b"GPU usage per pair" in page
    assert all(acct.encode() in page for _k, acct, _u in pairs)
    status, png = get("usage.png", f"staff:{password}")
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    secret = provisioned_lab / ".secrets" / "usage-page-password"
    assert secret.stat().st_mode & 0o777 == 0o600
    # the controller's key may only write the page: no shell on the web host
    shell = subprocess.run(["docker", "exec", f"{LAB_NAME}-ctl", "ssh", "-i",
                            "/etc/course-ops/usage-page/id_ed25519", "-o", "BatchMode=yes",
                            "-o", "UserKnownHostsFile=/etc/course-ops/usage-page/known_hosts",
                            "course-usage-page@ctl", "id"], capture_output=True, text=True,
                           timeout=30, check=False)
    assert "uid=" not in shell.stdout and shell.returncode != 0
