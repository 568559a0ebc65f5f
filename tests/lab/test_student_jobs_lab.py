"""Students' work in the course image on the lab (issue 11), through the student tools as a
student would use them: course-sbatch, course-shell, course-jupyter, ssh to a GPU server.

On the shared provisioned lab, after the cpu image is pushed and pulled (conftest's
pushed_image). Students are never in docker or sudo (the accounts spec checks it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import LAB_NAME, docker_exec, ops, verify_with_faults
from tests.lab.hub_client import initial_passwords, set_own_password
from tests.lab.labtools import JOBS, READABLE, STORE, UNREADABLE, wait_for

pytestmark = pytest.mark.lab
TRAIN = """\
import sys, torch, torch.nn as nn
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(8, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
loss = nn.functional.cross_entropy(model(x), y)
opt.zero_grad(); loss.backward(); opt.step()
torch.save({"model": model.state_dict(), "loss": loss.item()}, sys.argv[1])
print("saved", sys.argv[1], "loss", round(loss.item(), 3))
"""

#: Inside the container: what a student can and cannot reach (printed as JSON).
ISOLATION = """\
import json, os, pwd, sys
me = os.getuid()
others = sys.argv[1:]
def writable(path):
    try:
        with open(path, "w"):
            pass
        os.unlink(path)
        return True
    except OSError:
        return False
pids = [p for p in os.listdir("/proc") if p.isdigit()]
foreign = [p for p in pids if os.stat(f"/proc/{p}").st_uid != me]
print(json.dumps({
    "root_paths_writable": [p for p in ("/etc/x", "/usr/x", "/opt/venv/x", "/x",
                                        "/var/lib/x") if writable(p)],
    "foreign_processes": foreign,
    "visible_others": [p for p in others if os.path.exists(p)],
}))
"""


def as_student(user: str, command: str, check: bool = True,
               timeout: int = 180) -> subprocess.CompletedProcess[str]:
    """``command`` as ``user`` on the login node, from their home."""
    return subprocess.run(["docker", "exec", "-w", f"/home/{user}", f"{LAB_NAME}-ctl",
                           "runuser", "-u", user, "--", "sh", "-c", command],
                          capture_output=True, text=True, check=check, timeout=timeout)


def job_field(job: str, name: str) -> str:
    """A field of ``scontrol show job`` (the controller's own view: accounting lags)."""
    out = docker_exec("ctl", "scontrol", "show", "job", "-o", job)
    m = re.search(rf"(?:^| ){name}=(\S*)", out)
    return m.group(1) if m else ""


def job_state(job: str) -> str:
    return job_field(job, "JobState")


ENDED = ("COMPLETED", "FAILED", "CANCELLED", "OUT_OF_MEMORY", "TIMEOUT", "NODE_FAIL")


def running_on(job: str) -> str | None:
    out = docker_exec("ctl", "squeue", "-h", "-j", job, "-o", "%T %N").split()
    return out[1] if out and out[0] == "RUNNING" else None


def submitted(r: subprocess.CompletedProcess[str]) -> str:
    m = re.search(r"Submitted batch job (\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    return m.group(1)


def finished(user: str, job: str, timeout: float = 240) -> str:
    """The job's output once the job has ended."""
    wait_for(f"job {job} to end", lambda: job_state(job) in ENDED, timeout)
    return as_student(user, f"cat slurm-*-{job}.out").stdout


@pytest.fixture(scope="module")
def lab(provisioned_lab: Path, pushed_image: str) -> Path:
    return provisioned_lab


@pytest.fixture(scope="module")
def tag(pushed_image: str) -> str:
    return pushed_image


@pytest.fixture(scope="module")
def pairs(lab: Path) -> list[tuple[str, list[str]]]:
    """(pair group, members) of the active two-student pairs."""
    out = []
    for line in docker_exec("ctl", "getent", "group").splitlines():
        name, _, _, members = line.split(":")
        if name.startswith("pair") and len(members.split(",")) == 2:
            out.append((name, members.split(",")))
    return sorted(out)


def uid(user: str) -> int:
    return int(docker_exec("ctl", "id", "-u", user))


# ---------------------------------------------------------------- the course's work


@pytest.fixture(scope="module")
def training(lab: Path, pairs: list[tuple[str, list[str]]]) -> dict:
    """A training step of a small CNN, submitted with course-sbatch; the checkpoint in the
    pair directory."""
    pair, (student, partner) = pairs[0]
    ckpt = f"/home/pairs/{pair}/cnn.pt"
    as_student(student, f"rm -f {ckpt}; printf %s {shlex.quote(TRAIN)} > train.py")
    job = submitted(as_student(student, f"course-sbatch -c 1 --mem 2G python train.py {ckpt}"))
    return {"pair": pair, "student": student, "partner": partner, "ckpt": ckpt, "job": job,
            "out": finished(student, job)}


def test_a_training_step_runs_in_the_image(training: dict) -> None:
    assert f"saved {training['ckpt']} loss" in training["out"], training["out"]
    assert "done (exit 0)" in training["out"]
    assert job_state(training["job"]) == "COMPLETED"


def test_the_output_names_the_pushed_tag_on_its_first_line(training: dict, tag: str) -> None:
    """Read inside the container from the image's own /opt/course-ops/image.json ("tag")."""
    first = training["out"].splitlines()[0]
    assert first.startswith("*** course job 'python' starting in image "), first
    assert f"in image {tag} on gpu" in first, first


def test_the_job_records_its_tag(training: dict, tag: str) -> None:
    assert job_field(training["job"], "Comment") == f"course-image={tag}"


def test_the_checkpoint_belongs_to_the_student_and_the_pair(training: dict) -> None:
    owner = docker_exec("ctl", "stat", "-c", "%U:%G", training["ckpt"]).strip()
    assert owner == f"{training['student']}:{training['pair']}"


def test_the_partner_reads_the_checkpoint(training: dict) -> None:
    r = as_student(training["partner"], f"head -c 2 {training['ckpt']} | od -c | head -1")
    assert "P   K" in r.stdout  # torch.save writes a zip


def test_another_pair_cannot_read_it(training: dict, pairs: list) -> None:
    stranger = pairs[1][1][0]
    r = as_student(stranger, f"cat {training['ckpt']} > /dev/null", check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_help_names_the_tag_and_the_gpu_cap(lab: Path, pairs: list, tag: str) -> None:
    student = pairs[0][1][0]
    for tool in ("course-sbatch", "course-shell", "course-jupyter"):
        text = as_student(student, f"{tool} --help").stdout
        assert f"default: {tag}" in text, tool
        assert "your pair may use 1 at a time" in text, tool


# ---------------------------------------------------------------- containment


@pytest.fixture(scope="module")
def sleeper(lab: Path, pairs: list) -> Iterator[dict]:
    """A one-CPU job whose container prints its CPUs, then sleeps (cancelled at the end)."""
    student = pairs[1][1][1]
    job = submitted(as_student(student, "course-sbatch -c 1 -J sleeper python -c "
                                        "'import os, time; print(sorted(os.sched_getaffinity(0)),"
                                        " flush=True); time.sleep(600)'"))
    node = wait_for("the job to run", lambda: running_on(job))
    out = wait_for("its CPUs", lambda: (o := as_student(
        student, f"cat slurm-*-{job}.out 2>/dev/null || true").stdout).count("\n") >= 2 and o)
    try:
        yield {"student": student, "job": job, "node": node, "out": out}
    finally:
        docker_exec("ctl", "scancel", job)


def test_one_cpu_inside_the_container(sleeper: dict) -> None:
    cpus = json.loads(sleeper["out"].splitlines()[1])
    assert len(cpus) == 1, sleeper["out"]


def test_the_containers_processes_are_among_the_jobs(sleeper: dict) -> None:
    listed = {line.split()[0] for line in docker_exec(
        sleeper["node"], "scontrol", "listpids", sleeper["job"]).splitlines()[1:]}
    mine = docker_exec(sleeper["node"], "ps", "-u", sleeper["student"], "-o", "pid=,args=")
    pids = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in mine.splitlines()}
    assert any("time.sleep(600)" in a for a in pids.values()), mine
    assert any("conmon" in a for a in pids.values()), mine
    assert set(pids) <= listed, set(pids) - listed


def test_outside_the_user_namespace_the_container_is_the_student(sleeper: dict) -> None:
    ps = docker_exec(sleeper["node"], "ps", "-eo", "uid=,args=")
    python = [line for line in ps.splitlines() if "time.sleep(600)" in line
              and "course-sbatch" not in line and "slurm_script" not in line]
    assert python and {int(line.split()[0]) for line in python} == {uid(sleeper["student"])}


def test_scancel_leaves_no_container_and_no_process(sleeper: dict) -> None:
    docker_exec("ctl", "scancel", sleeper["job"])
    wait_for("the job to end", lambda: job_state(sleeper["job"]) == "CANCELLED")
    node, student = sleeper["node"], sleeper["student"]
    left = wait_for("its processes to go", lambda: (p := subprocess.run(
        ["docker", "exec", f"{LAB_NAME}-{node}", "pgrep", "-u", student, "-a"],
        capture_output=True, text=True)).returncode == 1 and p, timeout=30)
    assert left.stdout == ""
    # the epilog removes the job's container storage once the job's processes are gone
    wait_for("the job's storage to go", lambda: sleeper["job"] not in docker_exec(
        node, "ls", JOBS).split(), timeout=30)


def test_a_job_over_its_memory_is_killed_out_of_memory(lab: Path, pairs: list) -> None:
    student = pairs[1][1][0]
    job = submitted(as_student(student, "course-sbatch -c 1 --mem=300M -J oom python -c "
                                        "'b = bytearray(1024 ** 3); print(len(b))'"))
    out = finished(student, job)
    assert "done (exit 0)" not in out
    assert job_state(job) == "OUT_OF_MEMORY"


def test_inside_the_container_a_student_reaches_only_their_own(lab: Path, pairs: list) -> None:
    (_, (student, _)), (other_pair, (other, _)) = pairs[0], pairs[1]
    as_student(student, f"printf %s {shlex.quote(ISOLATION)} > isolation.py")
    sleep = submitted(as_student(other, "course-sbatch -c 1 -J other sleep 120"))
    try:
        wait_for("the other student's job to run", lambda: running_on(sleep))
        job = submitted(as_student(student, "course-sbatch -c 1 -J iso python isolation.py "
                                            f"/home/{other} /home/pairs/{other_pair}"))
        out = finished(student, job)
    finally:
        docker_exec("ctl", "scancel", sleep)
    seen = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert seen == {"root_paths_writable": [], "foreign_processes": [], "visible_others": []}


def test_a_file_written_inside_is_the_students_on_the_host(training: dict) -> None:
    out = docker_exec("ctl", "stat", "-c", "%u", training["ckpt"]).strip()
    assert int(out) == uid(training["student"])


# ---------------------------------------------------------------- interactive


def test_course_shell_runs_through_a_pty(lab: Path, pairs: list, tag: str) -> None:
    student = pairs[0][1][1]
    inner = "test -t 0 && echo stdin-is-a-tty; id -u; test -f /opt/course-ops/image.json && " \
            "echo in-the-image"
    r = as_student(student, "script -qec " + shlex.quote(
        f"course-shell -c 1 -t 5 -- sh -c {shlex.quote(inner)}") + " /dev/null </dev/null")
    # script(1) echoes the pty's NULs as ^@
    lines = [x.replace("^@", "").strip("\x00\r") for x in r.stdout.splitlines()]
    assert "stdin-is-a-tty" in lines, r.stdout
    assert str(uid(student)) in lines and "in-the-image" in lines


def test_course_jupyter_serves_the_images_lab_with_its_token(lab: Path, pairs: list) -> None:
    student = pairs[0][1][1]
    r = as_student(student, "course-jupyter -c 1 -t 00:10:00", timeout=300)
    try:
        m = re.search(r"ssh -N -L (\d+):(\w+):\d+ .*\n.*\n\s*http://localhost:\d+/lab\?token="
                      r"([0-9a-f]+)", r.stdout)
        assert m, r.stdout + r.stderr
        port, node, token = m.groups()
        url = f"http://{node}:{port}/api/status"

        def code(u: str) -> str:
            return docker_exec("ctl", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", u)
        assert code(f"{url}?token={token}") == "200"
        assert code(url) == "403"
    finally:
        docker_exec("ctl", "scancel", "-u", student, "-n", "jupyter")


# ---------------------------------------------------------------- ssh to a GPU server


@pytest.fixture(scope="module")
def ssh_student(lab: Path, pairs: list, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[str, list[str]]]:
    """A student with a key of the test's in authorized_keys (restored afterwards), and the
    ssh command line to gpu1."""
    student = pairs[2][1][0]
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True)
    keys = f"/home/{student}/.ssh/authorized_keys"
    before = docker_exec("ctl", "cat", keys)
    as_student(student, f"printf '%s\\n' {shlex.quote(key.with_suffix('.pub').read_text())}"
                        f" >> {keys}")
    # Where the lab turns password login on, the initial password must be changed at the
    # first login on each node (shadow is per node): on gpu1 the student does it as sshd
    # would ask them to with a terminal, so BatchMode ssh is not stopped by the prompt.
    initial = initial_passwords(lab).get(student) if (
        lab / "state" / "initial-passwords.csv").exists() else None
    if initial and "must be changed" in docker_exec("gpu1", "chage", "-l", student):
        set_own_password(LAB_NAME, "gpu1", student, initial)
    hosts = (lab / "hosts.yml").read_text()
    port = re.search(r"gpu1: \{ansible_host: 127.0.0.1, ansible_port: (\d+)", hosts).group(1)
    known = re.search(r"UserKnownHostsFile=(\S+)", hosts).group(1)  # the lab's own
    argv = ["ssh", "-i", str(key), "-p", port, "-o", "BatchMode=yes", "-o",
            "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}", "-o",
            "ConnectTimeout=10", f"{student}@127.0.0.1"]
    try:
        yield student, argv
    finally:
        docker_exec("ctl", "sh", "-c", f"printf %s {shlex.quote(before)} > {keys}")


def test_ssh_to_a_gpu_server_without_a_job_is_refused(ssh_student: tuple) -> None:
    _, argv = ssh_student
    r = subprocess.run([*argv, "true"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "no active jobs on this node" in r.stderr


def test_ssh_with_a_job_is_adopted_and_ended_with_it(ssh_student: tuple) -> None:
    student, argv = ssh_student
    job = as_student(student, "sbatch --parsable -w gpu1 -c 1 -t 5 --wrap 'sleep 300'"
                     ).stdout.strip()
    try:
        wait_for("the job to run", lambda: running_on(job))
        cgroup = subprocess.run([*argv, "cat /proc/self/cgroup"], capture_output=True,
                                text=True, timeout=60)
        assert cgroup.returncode == 0, cgroup.stderr
        assert f"/job_{job}/step_extern" in cgroup.stdout
        session = subprocess.Popen([*argv, "sleep 300; echo survived"], text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(3)
        assert session.poll() is None
    finally:
        docker_exec("ctl", "scancel", job)
    out, _ = session.communicate(timeout=60)
    assert session.returncode != 0 and "survived" not in out


# ---------------------------------------------------------------- verify, prune


def test_verify_student_env_fails_on_exactly_an_unreadable_store(
        lab: Path, tmp_path: Path) -> None:
    """Every check of the area passes but the one that looks at the fault (a file of the
    students' shared store no student may read, on gpu2)."""
    docker_exec("gpu2", "sh", "-c", f"chmod o-r $(find {STORE} -maxdepth 2 -type f | head -1)")
    try:
        failed = verify_with_faults(lab, "student_env", tmp_path / "env.xml")
        assert failed == {"test_every_student_can_read_the_store[ansible://gpu2]"}, failed
    finally:
        docker_exec("gpu2", "sh", "-c", READABLE)


def test_prune_keeps_a_tag_a_job_uses_then_removes_it(lab: Path, pairs: list,
                                                      tag: str) -> None:
    """An older tag (the same digest under another name, in every store and the history;
    tagged here as the role's pull does, without a playbook run): kept while a running
    job's comment names it, removed after; the store stays readable."""
    old = "torch0.0.0-cpu-py3.11-000000000000"
    ref = "ctl:5000/course-ops/course"
    state_file = lab / "state" / "images.json"
    state = json.loads(state_file.read_text())
    entry = next(h for h in state["history"] if h["tag"] == tag)
    state["history"].insert(0, {**entry, "tag": old, "pushed_at": "2000-01-01T00:00:00+00:00"})
    state_file.write_text(json.dumps(state))
    for node in ("gpu1", "gpu2"):
        docker_exec(node, "podman", "--root", STORE, "tag", f"{ref}@{entry['digest']}",
                    f"{ref}:{old}")
        docker_exec(node, "sh", "-c", READABLE)
    student = pairs[0][1][0]
    job = submitted(as_student(student, f"course-sbatch -c 1 --image {old} -J old sleep 120"))
    try:
        wait_for("the job's container to run", lambda: "in image" in as_student(
            student, f"cat slurm-*-{job}.out 2>/dev/null || true").stdout)
        kept = ops(lab, "-y", "images", "prune", "--keep", "1",
                   env={**os.environ, "COLUMNS": "250"})  # one table row a line
        assert re.search(rf"{old}\s.*keep: a running or pending job uses it", kept.stdout), \
            kept.stdout
        for node in ("gpu1", "gpu2"):
            assert f"{ref}:{old}" in docker_exec(node, "podman", "--root", STORE, "images",
                                                 "--format", "{{.Repository}}:{{.Tag}}")
    finally:
        docker_exec("ctl", "scancel", job)
    wait_for("the job to leave the queue", lambda: not docker_exec(
        "ctl", "squeue", "-h", "-j", job).strip())
    ops(lab, "-y", "images", "prune", "--keep", "1")
    for node in ("gpu1", "gpu2"):
        tags = docker_exec(node, "podman", "--root", STORE, "images", "--format",
                           "{{.Repository}}:{{.Tag}}").split()
        assert f"{ref}:{old}" not in tags and f"{ref}:{tag}" in tags
        assert f"{ref}:<none>" not in tags  # the digest's name does not keep it
    assert old not in json.dumps(json.loads(state_file.read_text())["history"])
    for node in ("gpu1", "gpu2"):  # prune left the store's metadata readable to students
        assert docker_exec(node, "sh", "-c", UNREADABLE) == ""
