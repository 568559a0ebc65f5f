"""What the course's hub decides, as plain functions (no JupyterHub import: unit-tested
in course-ops' own tests, installed beside course_hub.py on the hub host).

- who may log in and who is an admin: the accounts sync's list
  (/etc/jupyterhub/course-users.json: roster students not locked, the staff);
- the spawn page's profiles, and the Slurm request each one makes;
- what the page says while a server waits (the pair's GPU in use by job N) and when its
  job fails or is cancelled.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

USERS_FILE = "/etc/jupyterhub/course-users.json"
_TIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")


class CourseUsers:
    """The accounts sync's list of users, re-read whenever the file changes (a login after
    a sync sees the new roster without a hub restart)."""

    def __init__(self, path: str = USERS_FILE) -> None:
        self.path = path
        self._mtime: float | None = None
        self._doc: dict[str, Any] = {"allowed": [], "admins": [], "emails": {}}

    def doc(self) -> dict[str, Any]:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:  # no list (yet): nobody may log in
            self._mtime, self._doc = None, {"allowed": [], "admins": [], "emails": {}}
            return self._doc
        if mtime != self._mtime:
            with open(self.path, encoding="utf-8") as fh:
                self._doc = json.load(fh)
            self._mtime = mtime
        return self._doc

    def allowed(self, username: str) -> bool:
        return username in set(self.doc().get("allowed", []))

    def admin(self, username: str) -> bool:
        return username in set(self.doc().get("admins", []))

    def username_for(self, claim: str) -> str:
        """An OAuth/LTI claim (an e-mail) -> the course username; unknown: as it came."""
        return str(self.doc().get("emails", {}).get(claim.strip().lower(), claim))


@dataclass(frozen=True)
class Profile:
    name: str
    display: str
    cores: int
    gpus: int
    time: str
    memory: str = ""  # e.g. "8G"; empty: Slurm's DefMemPerCPU

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Profile:
        p = cls(str(raw["name"]), str(raw.get("display", raw["name"])), int(raw["cores"]),
                int(raw.get("gpus", 0)), str(raw["time"]), str(raw.get("memory", "") or ""))
        if not re.fullmatch(r"[a-z0-9_-]{1,32}", p.name) or p.cores < 1 or p.gpus < 0 \
                or not _TIME.match(p.time) or not re.fullmatch(r"(\d+[KMGT]?)?", p.memory):
            raise ValueError(f"bad profile {raw!r}")
        return p

    def slurm(self) -> dict[str, str]:
        """batchspawner's req_* values for this profile."""
        return {"nprocs": str(self.cores), "runtime": self.time, "memory": self.memory,
                "gres": f"gpu:{self.gpus}" if self.gpus else ""}


def profiles_form(profiles: list[Profile]) -> str:
    """The spawn page's choice of profiles (the first one is preselected)."""
    options = "".join(
        f'<option value="{html.escape(p.name)}"{" selected" if i == 0 else ""}>'
        f"{html.escape(p.display)} (up to {html.escape(p.time)})</option>"
        for i, p in enumerate(profiles))
    return ('<label for="profile">Where your server runs</label>'
            f'<select class="form-control" name="profile" id="profile">{options}</select>')


def chosen(profiles: list[Profile], formdata: dict[str, list[str]]) -> Profile:
    """The profile a form (or the REST API's user_options) names; an unknown one is refused."""
    name = (formdata.get("profile") or [profiles[0].name])[0]
    for p in profiles:
        if p.name == name:
            return p
    raise ValueError(f"no such profile {name!r}; choose one of "
                     f"{', '.join(p.name for p in profiles)}")


def pending_message(reason: str, pair_gpu_jobs: list[str], waited: float,
                    timeout: float) -> str:
    """What the spawn page says while the server's job waits in Slurm's queue."""
    left = max(0, int(timeout - waited))
    tail = f" (it is cancelled if it has not started in {left // 60} min {left % 60} s)"
    if "MaxGRESPerAccount" in reason or "MaxTRESPerAccount" in reason:
        if pair_gpu_jobs:
            jobs = ", ".join(pair_gpu_jobs)
            return (f"Waiting: your pair's GPU is in use by job {jobs}; your server starts "
                    f"when it ends{tail}")
        return f"Waiting: your pair's GPU limit is reached{tail}"
    if reason in ("Resources", "Priority"):
        return f"Waiting for a free {'GPU server' if reason == 'Resources' else 'turn'}{tail}"
    return f"Waiting in Slurm's queue ({reason or 'pending'}){tail}"


def duration(seconds: float) -> str:
    """``10 minutes``, ``1 minute``, ``45 s``: how long, as the page says it."""
    s = int(seconds)
    if s < 120 and s % 60:
        return f"{s} s"
    m = s // 60
    return f"{m} minute{'s' if m != 1 else ''}"


def timeout_message(job_id: str, pair_gpu_jobs: list[str], timeout: float) -> str:
    why = (f"your pair's GPU stayed in use by job {', '.join(pair_gpu_jobs)}"
           if pair_gpu_jobs else "it did not start")
    return (f"Your server's job {job_id} waited {duration(timeout)}: {why}. "
            "The job was cancelled; try again later or choose the CPU profile.")


#: PAM's "authentication token is no longer valid; new one required" (an initial password
#: not changed yet, or one past its maximum age)
PAM_NEW_AUTHTOK_REQD = 12


def initial_password_message(username: str) -> str:
    """The login page's answer to a right password that must be changed first."""
    return (f"The password of {username} must be changed before the first login here: log "
            f"in once with ssh ({username}@ the login node) and set your own password when "
            f"asked, then log in here with it.")


def failure_message(job_id: str, state: str, reason: str, node: str,
                    comment: str = "") -> str:
    """A job that ended before its server answered: say so at once, with why (course-run's
    own reason, from the job's comment, where it refused to start) and where to look."""
    where = f" on {node}" if node and node not in ("(null)", "None") else ""
    log = f"~/.jupyterhub-slurm-{job_id}.log"
    refused = comment.split("course-run:", 1)[1].strip() if "course-run:" in comment else ""
    if refused:
        return (f"Your server's job {job_id} could not start the course image{where}: "
                f"{refused} (tell the course staff if it persists; the job's output is "
                f"{log}).")
    if state in ("FAILED", "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY", "TIMEOUT"):
        return (f"Your server's job {job_id} {state.lower().replace('_', ' ')}{where}"
                f" ({reason or 'no reason given'}) before the server started: the course "
                f"image may be missing there or refused to start; see {log}.")
    if state == "CANCELLED":
        return f"Your server's job {job_id} was cancelled{where} before it started."
    return (f"Your server's job {job_id} ended ({state or 'gone'}){where} before the server "
            f"started; see {log}.")


#: squeue states of a job that may still become the server (COMPLETING is a job ending)
_ALIVE = ("PENDING", "CONFIGURING", "RUNNING", "SUSPENDED", "REQUEUED", "RESIZING")


def job_alive(squeue_state: str) -> bool:
    """From ``squeue -h -j JOB -t all -o %T``: may the job still start the server? An
    empty answer (the job left the controller's memory) is a job that is gone."""
    state = squeue_state.strip().split("\n")[0].strip()
    return state.startswith(_ALIVE)


def pair_gpu_jobs(squeue_lines: str, own_job: str) -> list[str]:
    """Running jobs of the pair's account holding GPUs, from ``squeue -h -o '%i|%T|%b'``."""
    out = []
    for line in squeue_lines.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3 and parts[0] != own_job and parts[1] == "RUNNING" \
                and "gpu" in parts[2]:
            out.append(parts[0])
    return out


def hub_file_jobs(path: str, account: str, own_job: str, max_age: float = 180) -> list[str]:
    """The pair's running GPU jobs from the controller's copy for the hub (written every
    minute as root, readable by the hub's group: Slurm shows the hub, asking as the
    student, only the student's own jobs); none when it is missing or older than
    ``max_age`` seconds."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        if time.time() - float(doc["at"]) > max_age:
            return []
        return [str(j) for j in doc["gpu_jobs"].get(account, []) if str(j) != own_job]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def default_tag(path: str) -> str:
    """The course image every new server runs: ``tag=`` of the node's image file (written
    by `ops provision` / `ops images pull`); none is a spawn that can never start."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("tag=") and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
                                                             line[4:].strip()):
                    return line[4:].strip()
    except OSError:
        pass
    raise RuntimeError("No course image has been pushed to this cluster yet, so no server "
                       "can start; the course staff run `ops images push` and `ops images "
                       "pull`.")
