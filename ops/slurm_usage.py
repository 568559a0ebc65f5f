"""GPU time per pair, from Slurm's own records: slurmdbd's jobs (``sacct``) and slurmctld's
association manager (the budgets and their usage exactly as Slurm enforces them).

One file, two places. ``ops usage`` runs :data:`READ` on the controller (one SSH command,
one call to each Slurm daemon: never one per pair) and hands its output to :func:`report`;
on the controller the role ``slurm`` installs this file as
``/usr/local/lib/course-ops/course_usage.py``, where the staff page's timer (``report``)
and the students' ``course-usage`` (``student``) run the same code. Only the standard
library, and matplotlib where a plot is drawn.

Figures: a job's GPU-hours are its allocated ``gres/gpu`` times its run time inside the
window (a running job counts up to now), CPU-hours the same with its CPUs. "Budget used" is
the association manager's figure (GrpTRESMins usage), which counts every job since the
budget was set, and may differ from the window's sum.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import html
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: What ``ops usage`` runs on the controller, as root: ``sh -c READ sh SINCE UNTIL``.
#: Times are epoch seconds throughout (``SLURM_TIME_FORMAT=%s``); the window and the
#: controller's clock and UTC offset come first, so days are the controller's days.
READ = r"""
set -u
since=$(date -d "$1" +%s) || { echo "#error: --since: not a date: $1"; exit 0; }
until=$(date -d "$2" +%s) || { echo "#error: --until: not a date: $2"; exit 0; }
echo "#window $since $until $(date +%s) $(date +%z)"
echo '#jobs'
SLURM_TIME_FORMAT=%s sacct -aXnP --noconvert -S "$(date -d "@$since" +%Y-%m-%dT%H:%M:%S)" \
  -E "$(date -d "@$until" +%Y-%m-%dT%H:%M:%S)" \
  -o JobID,User,Account,AllocTRES,AllocCPUS,Start,End,State 2>&1 || echo '#error: sacct failed'
echo '#assoc'
scontrol -o show assoc_mgr flags=assoc 2>&1 || echo '#error: scontrol show assoc_mgr failed'
echo '#nodes'
sinfo -hN -o '%N|%G' 2>&1 || echo '#error: sinfo failed'
"""

JSON_SCHEMA_DOC = """\
{"since": ISO time, "until": ISO time, "generated": ISO time, "gpus": int,
 "pairs": [{"pair", "account", "jobs", "gpu_hours", "cpu_hours",
            "budget_gpu_hours" (null: none), "budget_used_gpu_hours",
            "budget_used_percent" (null: no budget),
            "students": [{"username", "jobs", "gpu_hours", "cpu_hours"}]}],
 "others": [same as a pair: jobs outside the pairs (the staff)],
 "occupancy": [{"date", "gpu_hours", "percent"}]}"""


class UsageError(Exception):
    """Slurm could not be read, or its output is not what this code knows."""


@dataclass(frozen=True)
class Job:
    jobid: str
    user: str
    account: str
    gpus: int
    cpus: int
    start: int | None  # epoch seconds; None: never started
    end: int | None  # None: still running


@dataclass
class Assoc:
    account: str
    user: str
    parent: str
    gpu_minutes_limit: int | None  # GrpTRESMins gres/gpu; None: no limit
    gpu_minutes_used: float  # as the association manager counts it
    gpu_minutes_running: float = 0.0  # what its running jobs may still use (GrpTRESRunMins)


@dataclass
class Raw:
    since: int
    until: int
    now: int
    utc_offset: int  # seconds east of UTC (the controller's)
    jobs: list[Job] = field(default_factory=list)
    assocs: list[Assoc] = field(default_factory=list)
    gpus: int = 0  # the cluster's GPUs


def _tres(text: str, name: str) -> int:
    """A count from a TRES list (``cpu=2,gres/gpu=1,mem=2G``); 0 when absent."""
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key == name and value.isdigit():
            return int(value)
    return 0


def _epoch(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) > 0 else None


_PAIR = re.compile(r"(\S+?)=((?:[^\s(]|\([^)]*\))*)")
_USED = re.compile(r"gres/gpu=(N|\d+)\(([\d.]+)\)")


def parse_assoc(line: str) -> Assoc | None:
    """One line of ``scontrol -o show assoc_mgr flags=assoc``."""
    fields = dict(_PAIR.findall(line))
    if "Account" not in fields:
        return None
    parent = fields.get("ParentAccount", "")
    parent = parent.split("(")[0] if parent not in ("", "(null)") else ""
    user = fields.get("UserName", "")
    user = "" if user in ("(null)", "") else user.split("(")[0]
    m = _USED.search(fields.get("GrpTRESMins", ""))
    limit = None if not m or m.group(1) == "N" else int(m.group(1))
    used = float(m.group(2)) if m else 0.0
    run = _USED.search(fields.get("GrpTRESRunMins", ""))
    return Assoc(fields["Account"], user, parent, limit, used,
                 float(run.group(2)) if run else 0.0)


def parse(output: str) -> Raw:
    """:data:`READ`'s output."""
    raw: Raw | None = None
    section = ""
    nodes: dict[str, int] = {}
    for line in output.splitlines():
        if line.startswith("#error:"):
            raise UsageError(line[len("#error:"):].strip())
        if line.startswith("#window "):
            since, until, now, offset = line.split()[1:5]
            sign = -1 if offset.startswith("-") else 1
            secs = sign * (int(offset[1:3]) * 3600 + int(offset[3:5]) * 60)
            raw = Raw(int(since), int(until), int(now), secs)
            continue
        if line.startswith("#"):
            section = line[1:].strip()
            continue
        if raw is None or not line.strip():
            continue
        if section == "jobs":
            f = line.split("|")
            if len(f) < 8:
                raise UsageError(f"sacct printed an unexpected line: {line[:120]}")
            raw.jobs.append(Job(f[0], f[1], f[2], _tres(f[3], "gres/gpu"),
                                int(f[4]) if f[4].isdigit() else 0, _epoch(f[5]), _epoch(f[6])))
        elif section == "assoc":
            a = parse_assoc(line)
            if a is not None:
                raw.assocs.append(a)
        elif section == "nodes":
            name, _, gres = line.partition("|")
            count = 0
            for g in gres.split(","):
                m = re.match(r"gpu(?::[^:()]+)?:(\d+)", g)
                if m:
                    count += int(m.group(1))
            nodes[name.strip()] = count
    if raw is None:
        raise UsageError("no answer from the controller (is this course-ops' controller?)")
    raw.gpus = sum(nodes.values())
    return raw


def _seconds(job: Job, since: int, until: int, now: int) -> int:
    """The job's run time inside [since, until]."""
    if job.start is None:
        return 0
    end = job.end if job.end is not None else now
    return max(0, min(end, until) - max(job.start, since))


def _round(x: float) -> float:
    return round(x, 6)


def _iso(epoch: int, offset: int) -> str:
    tz = dt.timezone(dt.timedelta(seconds=offset))
    return dt.datetime.fromtimestamp(epoch, tz).isoformat(timespec="seconds")


def report(raw: Raw, course: str, staff_account: str = "course-staff",
           pair_names: dict[str, str] | None = None) -> dict[str, Any]:
    """The report: each pair (an account under ``course``) with its students, the jobs
    outside the pairs, and the cluster's GPU occupancy per day. ``pair_names`` maps an
    account to the roster's pair (else the pair is named by its account)."""
    pair_names = pair_names or {}
    accounts = {a.account: a for a in raw.assocs if not a.user}
    members: dict[str, list[str]] = {}
    for a in raw.assocs:
        if a.user:
            members.setdefault(a.account, []).append(a.user)
    pair_accounts = sorted(n for n, a in accounts.items()
                           if a.parent == course and n != staff_account)

    def blank(name: str) -> dict[str, Any]:
        return {"jobs": 0, "gpu_seconds": 0, "cpu_seconds": 0, "name": name}

    per_pair = {n: blank(n) for n in pair_accounts}
    per_user: dict[tuple[str, str], dict[str, Any]] = {
        (n, u): blank(u) for n in pair_accounts for u in sorted(set(members.get(n, [])))}
    others: dict[tuple[str, str], dict[str, Any]] = {}
    day = 86400
    first = (raw.since + raw.utc_offset) // day
    last = (raw.until - 1 + raw.utc_offset) // day
    by_day = {d: 0 for d in range(first, last + 1)}
    for job in raw.jobs:
        secs = _seconds(job, raw.since, raw.until, raw.now)
        if job.start is None or (secs == 0 and job.start >= raw.until):
            continue
        if job.end is not None and job.end < raw.since:
            continue
        if job.account in per_pair:
            rows = [per_pair[job.account],
                    per_user.setdefault((job.account, job.user), blank(job.user))]
        else:
            rows = [others.setdefault((job.account, job.user), blank(job.user))]
        for r in rows:
            r["jobs"] += 1
            r["gpu_seconds"] += job.gpus * secs
            r["cpu_seconds"] += job.cpus * secs
        if job.gpus and secs:  # GPU-seconds per local day
            end = (job.end if job.end is not None else raw.now)
            t, stop = max(job.start, raw.since), min(end, raw.until)
            while t < stop:
                d = (t + raw.utc_offset) // day
                nxt = min(stop, (d + 1) * day - raw.utc_offset)
                if d in by_day:
                    by_day[d] += job.gpus * (nxt - t)
                t = nxt

    def figures(r: dict[str, Any]) -> dict[str, Any]:
        return {"jobs": r["jobs"], "gpu_hours": _round(r["gpu_seconds"] / 3600),
                "cpu_hours": _round(r["cpu_seconds"] / 3600)}

    pairs = []
    for n in pair_accounts:
        a = accounts[n]
        budget = None if a.gpu_minutes_limit is None else a.gpu_minutes_limit / 60
        used = a.gpu_minutes_used / 60
        students = [{"username": u, **figures(r)}
                    for (acct, u), r in sorted(per_user.items()) if acct == n]
        pairs.append({"pair": pair_names.get(n, n), "account": n, **figures(per_pair[n]),
                      "budget_gpu_hours": None if budget is None else _round(budget),
                      "budget_used_gpu_hours": _round(used),
                      "budget_used_percent": round(100 * used / budget, 1) if budget
                      else None,
                      "students": students})
    occupancy = []
    for d, gpu_secs in sorted(by_day.items()):
        lo = max(raw.since, d * day - raw.utc_offset)
        hi = min(raw.until, (d + 1) * day - raw.utc_offset)
        capacity = raw.gpus * max(0, hi - lo)
        occupancy.append({"date": dt.date.fromordinal(dt.date(1970, 1, 1).toordinal() + d)
                          .isoformat(), "gpu_hours": _round(gpu_secs / 3600),
                          "percent": round(100 * gpu_secs / capacity, 1) if capacity else 0.0})
    return {
        "since": _iso(raw.since, raw.utc_offset), "until": _iso(raw.until, raw.utc_offset),
        "generated": _iso(raw.now, raw.utc_offset), "gpus": raw.gpus, "pairs": pairs,
        "others": [{"account": acct, "username": u, **figures(r)}
                   for (acct, u), r in sorted(others.items())],
        "occupancy": occupancy,
    }


# ---------------------------------------------------------------- formats

def _num(x: float | None, unit: str = "") -> str:
    return "-" if x is None else f"{x:.2f}{unit}"


def table_rows(rep: dict[str, Any]) -> list[list[str]]:
    """Pairs, each followed by its students (indented): pair, account, jobs, GPU-h, CPU-h,
    budget, used."""
    rows = []
    for p in rep["pairs"]:
        used = "-" if p["budget_used_percent"] is None else (
            f"{p['budget_used_gpu_hours']:.2f} ({p['budget_used_percent']:.1f}%)")
        rows.append([p["pair"], p["account"], str(p["jobs"]), _num(p["gpu_hours"]),
                     _num(p["cpu_hours"]), _num(p["budget_gpu_hours"]), used])
        for s in p["students"]:
            rows.append([f"  {s['username']}", "", str(s["jobs"]), _num(s["gpu_hours"]),
                         _num(s["cpu_hours"]), "", ""])
    return rows


TABLE_HEADER = ["pair", "account", "jobs", "GPU-h", "CPU-h", "budget GPU-h", "budget used"]


def to_text(rep: dict[str, Any]) -> str:
    rows = [TABLE_HEADER, *table_rows(rep)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEADER))]
    lines = [f"GPU usage {rep['since']} .. {rep['until']} ({rep['gpus']} GPUs)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rep: dict[str, Any]) -> str:
    """One row per pair (username empty) and one per student of it."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["pair", "account", "username", "jobs", "gpu_hours", "cpu_hours",
                "budget_gpu_hours", "budget_used_gpu_hours", "budget_used_percent"])
    for p in rep["pairs"]:
        w.writerow([p["pair"], p["account"], "", p["jobs"], p["gpu_hours"], p["cpu_hours"],
                    "" if p["budget_gpu_hours"] is None else p["budget_gpu_hours"],
                    p["budget_used_gpu_hours"],
                    "" if p["budget_used_percent"] is None else p["budget_used_percent"]])
        for s in p["students"]:
            w.writerow([p["pair"], p["account"], s["username"], s["jobs"], s["gpu_hours"],
                        s["cpu_hours"], "", "", ""])
    return buf.getvalue()


# ---------------------------------------------------------------- deadlines and plots

def deadlines(schedule: Any, pages: Iterable[str] | dict[str, str | None] = ()
              ) -> list[tuple[str, str]]:
    """Homework deadlines from a course site's ``_data/schedule.yml`` (already parsed): each
    row with a ``date`` whose ``homework`` names one of the site's ``pages`` (a collection
    document, e.g. ``hw1``; a dict gives each page's own ``due`` date, which wins over the
    row's) or says "due"/"deadline"; ``(YYYY-MM-DD, label)``, by date. Rows of another
    shape are passed over: the schedule is the site's, not ours."""
    due = dict(pages) if isinstance(pages, dict) else dict.fromkeys(pages)
    out = []
    for row in schedule if isinstance(schedule, list) else []:
        if not isinstance(row, dict) or "date" not in row:
            continue
        when = row["date"]
        date = when.isoformat()[:10] if isinstance(when, dt.date) else str(when)[:10]
        try:
            dt.date.fromisoformat(date)
        except ValueError:
            continue
        for key in ("homework", "deadline", "due"):
            value = row.get(key)
            items = value if isinstance(value, list) else [value]
            for item in items:
                if not isinstance(item, str | int) or isinstance(item, bool):
                    continue
                text = str(item).strip()
                if key != "homework" or text in due or re.search(
                        r"\b(due|deadline|submi)", text, re.I):
                    out.append((due.get(text) or date, text))
    return sorted(set(out))


def plot_series(rep: dict[str, Any], marks: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """What :func:`draw` plots, as plain data (so a test can check it)."""
    return {
        "pairs": [p["pair"] for p in rep["pairs"]],
        "gpu_hours": [p["gpu_hours"] for p in rep["pairs"]],
        "budgets": [p["budget_gpu_hours"] for p in rep["pairs"]],
        "days": [o["date"] for o in rep["occupancy"]],
        "occupancy": [o["percent"] for o in rep["occupancy"]],
        "deadlines": [(d, label) for d, label in marks
                      if rep["occupancy"] and rep["occupancy"][0]["date"] <= d
                      <= rep["occupancy"][-1]["date"]],
        "title": f"GPU usage {rep['since'][:10]} .. {rep['until'][:10]}",
    }


def draw(series: dict[str, Any], path: str) -> None:
    """A PNG: GPU-hours per pair against each pair's budget, and the cluster's GPU
    occupancy per day with the homework deadlines marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(series["pairs"])
    width = min(40.0, max(8.0, 0.25 * n))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, 8), constrained_layout=True)
    x = list(range(n))
    top.bar(x, series["gpu_hours"], color="#4c72b0", label="GPU-hours used")
    budget_x = [i for i, b in zip(x, series["budgets"], strict=True) if b is not None]
    budget_y = [b for b in series["budgets"] if b is not None]
    if budget_x:
        top.scatter(budget_x, budget_y, marker="_", s=max(60, 4000 / max(n, 1)),
                    color="#c44e52", linewidths=2, label="budget", zorder=3)
    top.set_xticks(x)
    top.set_xticklabels(series["pairs"], rotation=90, fontsize=7 if n > 40 else 9)
    top.set_ylabel("GPU-hours")
    top.set_title(series["title"])
    top.legend(loc="upper right")
    days = [dt.date.fromisoformat(d) for d in series["days"]]
    bottom.plot(days, series["occupancy"], color="#55a868", marker="o" if len(days) < 60
                else None, label="GPU occupancy")
    bottom.set_ylim(0, 100)
    bottom.set_ylabel("GPUs busy (% of the day)")
    for d, label in series["deadlines"]:
        day = dt.date.fromisoformat(d)
        bottom.axvline(day, color="#c44e52", linestyle="--", linewidth=1)
        bottom.text(day, 97, f" {label}", rotation=90, va="top", fontsize=8,
                    color="#c44e52")
    bottom.tick_params(axis="x", labelrotation=30)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def to_html(rep: dict[str, Any], image: str | None = "usage.png") -> str:
    """The staff page: the plots and the table."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in TABLE_HEADER)
    body = "\n".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                     for row in table_rows(rep))
    img = f'<p><img src="{esc(image)}" alt="GPU usage per pair and occupancy"></p>' \
        if image else ""
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>GPU usage (course staff)</title>"
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}</style>"
        "</head><body>\n"
        f"<h1>GPU usage per pair</h1>\n<p>{esc(rep['since'])} .. {esc(rep['until'])}, "
        f"{rep['gpus']} GPUs; made {esc(rep['generated'])}. Budget used is Slurm's own "
        "figure (every job since the budget was set).</p>\n"
        f"{img}\n<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>\n"
        "</body></html>\n"
    )


# ---------------------------------------------------------------- on the controller

#: the course's Slurm accounts (role slurm); the staff page's settings (role usage_page)
CONFIG = "/etc/course-ops/usage.json"
PAGE_CONFIG = "/etc/course-ops/usage-page.json"
#: each pair's budget as of the last minute, readable by its members only (role slurm's
#: timer): Slurm shows a student their own association, not their pair's
PAIRS_DIR = "/var/lib/course-ops/pair-usage"


def _config(path: str = CONFIG) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return dict(json.load(f))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: {exc} (run ops provision)") from None


def read_local(since: str, until: str) -> Raw:
    """:data:`READ` run here (on the controller)."""
    done = subprocess.run(["sh", "-c", READ, "sh", since, until], capture_output=True,
                          text=True, timeout=300, check=False)
    return parse(done.stdout)


def _write(path: str, data: bytes | str) -> None:
    tmp = f"{path}.tmp"
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(tmp, mode) as f:
        f.write(data)
    os.replace(tmp, path)


def main_report(args: argparse.Namespace) -> int:
    """The staff page: index.html, usage.png and usage.json in ``--out``."""
    cfg, page = _config(args.config), _config(args.page_config)
    rep = report(read_local(args.since or page.get("since") or "now - 120 days", "now"),
                 cfg["course_account"], cfg.get("staff_account", "course-staff"))
    marks = [(str(d), str(label)) for d, label in page.get("deadlines", [])]
    os.makedirs(args.out, exist_ok=True)
    draw(plot_series(rep, marks), os.path.join(args.out, "usage.png.tmp.png"))
    os.replace(os.path.join(args.out, "usage.png.tmp.png"), os.path.join(args.out, "usage.png"))
    _write(os.path.join(args.out, "usage.json"), json.dumps(rep, indent=1) + "\n")
    _write(os.path.join(args.out, "index.html"), to_html(rep))
    return 0


def gpu_jobs(squeue: str) -> dict[str, list[dict[str, str]]]:
    """Running jobs holding GPUs, per account, from ``squeue -h -t RUNNING -o
    '%i|%u|%a|%b'`` (root's view)."""
    out: dict[str, list[dict[str, str]]] = {}
    for line in squeue.splitlines():
        f = line.split("|")
        if len(f) >= 4 and re.search(r"gpu(?::[^:,]+)?:[1-9]", f[3]):
            out.setdefault(f[2], []).append({"job": f[0], "user": f[1], "gres": f[3]})
    return out


def _write_private(path: str, doc: Any, gid: int) -> None:
    """``doc`` as JSON at ``path``, root's and readable by group ``gid`` only (0640)."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.chown(tmp, 0, gid)
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)


#: every pair's GPU jobs for the hub (its own group only): Slurm shows the hub, which asks
#: as the student, only the student's own jobs, not the partner's that holds the GPU
HUB_FILE = "hub.json"


def main_pairs(args: argparse.Namespace) -> int:
    """Each pair's budget, used and running GPU-minutes and its running GPU jobs into
    ``--dir``/<account>.json, owned by root and readable by the pair's group (the account's
    name) only; every pair's GPU jobs into ``hub.json`` for the hub's group."""
    import grp

    cfg = _config(args.config)
    now = int(time.time())
    lines = _run("scontrol", "-o", "show", "assoc_mgr", "flags=assoc").splitlines()
    pairs = [a for a in (parse_assoc(line) for line in lines)
             if a is not None and not a.user and a.parent == cfg["course_account"]
             and a.account != cfg.get("staff_account", "course-staff")]
    running = gpu_jobs(_run("squeue", "-h", "-t", "RUNNING", "-o", "%i|%u|%a|%b"))
    os.makedirs(args.dir, mode=0o755, exist_ok=True)
    keep = set()
    for a in pairs:
        try:
            gid = grp.getgrnam(a.account).gr_gid
        except KeyError:
            continue  # no such group on this host: nobody to show it to
        name = f"{a.account}.json"
        keep.add(name)
        _write_private(os.path.join(args.dir, name), {
            "account": a.account, "budget_gpu_minutes": a.gpu_minutes_limit,
            "used_gpu_minutes": a.gpu_minutes_used,
            "running_gpu_minutes": a.gpu_minutes_running,
            "gpu_jobs": running.get(a.account, []), "at": now}, gid)
    hub = cfg.get("hub_group")
    try:
        hub_gid = grp.getgrnam(str(hub)).gr_gid if hub else None
    except KeyError:
        hub_gid = None
    if hub_gid is not None:
        keep.add(HUB_FILE)
        _write_private(os.path.join(args.dir, HUB_FILE), {
            "at": now, "gpu_jobs": {a.account: [j["job"] for j in running.get(a.account, [])]
                                    for a in pairs}}, hub_gid)
    for old in os.listdir(args.dir):
        if old.endswith(".json") and old not in keep:
            os.unlink(os.path.join(args.dir, old))
    return 0


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode:
        raise UsageError(f"{argv[0]} failed: {done.stderr.strip()[:200]}")
    return done.stdout


#: what a pending job's reason means for a student of the course
REASONS = {
    "AssocGrpGRESMinutes": "your pair's GPU budget is spent; the staff can raise it",
    "AssocGrpGRESRunMinutes": "your pair's running GPU jobs may use the rest of its budget",
    "MaxGRESPerAccount": "your pair's GPU is in use; it starts when that job ends",
}


def main_student(args: argparse.Namespace) -> int:
    """course-usage: the caller's pair's GPU-hours used and left, their running and pending
    jobs, and when each pending one is expected to start. Slurm shows a student only their
    own association and jobs (PrivateData)."""
    user = os.environ.get("USER") or _run("id", "-un").strip()
    assocs = [a for a in (parse_assoc(line) for line in _run(
        "scontrol", "-o", "show", "assoc_mgr", "flags=assoc", f"users={user}").splitlines())
        if a is not None and a.user == user]
    if not assocs:
        print(f"course-usage: {user} has no Slurm account (not on the course's roster?)")
        return 1
    for a in assocs:
        try:
            with open(os.path.join(args.dir, f"{a.account}.json"), encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            print(f"account {a.account}: its GPU budget is not known yet (try again in a "
                  "minute)")
            continue
        limit, used = doc["budget_gpu_minutes"], float(doc["used_gpu_minutes"])
        at = dt.datetime.fromtimestamp(int(doc["at"])).strftime("%H:%M")
        if limit is None:
            print(f"pair account {a.account}: {used / 60:.2f} GPU-hours used; no GPU budget "
                  f"(as of {at})")
        else:
            left = max(0.0, limit - used - float(doc["running_gpu_minutes"])) / 60
            print(f"pair account {a.account}: {used / 60:.2f} of {limit / 60:.2f} GPU-hours "
                  f"used ({100 * used / limit if limit else 100:.0f}%), {left:.2f} left after "
                  f"your running jobs (as of {at})")
            print("  a GPU job starts only if its GPUs x time limit fit in what is left: near "
                  "the end of the budget, ask for a shorter --time")
        for j in doc.get("gpu_jobs", []):
            who = "you" if j.get("user") == user else j.get("user", "your partner")
            print(f"  your pair's GPU job {j.get('job')} ({who}) is running")
    running = _run("squeue", "--me", "-h", "-t", "RUNNING", "-o", "%i|%j|%b|%M|%L")
    pending = _run("squeue", "--me", "-h", "-t", "PENDING", "--start", "-o", "%i|%j|%b|%S|%r")
    print("running jobs:" if running.strip() else "running jobs: none")
    for line in running.splitlines():
        jobid, name, gres, ran, left = (line.split("|") + [""] * 5)[:5]
        print(f"  {jobid} {name} ({gres or 'no GPU'}): running {ran}, {left} left")
    print("pending jobs:" if pending.strip() else "pending jobs: none")
    for line in pending.splitlines():
        jobid, name, gres, start, reason = (line.split("|") + [""] * 5)[:5]
        when = "not yet known" if start in ("N/A", "", "Unknown") else start
        print(f"  {jobid} {name} ({gres or 'no GPU'}): expected start {when} "
              f"({reason}{': ' + REASONS[reason] if reason in REASONS else ''})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="course-usage", description=main_student.__doc__)
    sub = ap.add_subparsers(dest="cmd")
    r = sub.add_parser("report", help="the staff page (root, on the controller)")
    r.add_argument("--out", required=True)
    r.add_argument("--since")
    r.add_argument("--config", default=CONFIG)
    r.add_argument("--page-config", default=PAGE_CONFIG)
    s = sub.add_parser("pairs", help="each pair's budget for its members (root, a timer)")
    s.add_argument("--dir", default=PAIRS_DIR)
    s.add_argument("--config", default=CONFIG)
    ap.set_defaults(dir=PAIRS_DIR)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "report":
            return main_report(args)
        return main_pairs(args) if args.cmd == "pairs" else main_student(args)
    except (UsageError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"course-usage: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
