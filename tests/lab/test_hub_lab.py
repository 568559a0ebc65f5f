"""JupyterHub on the provisioned lab (issue 12), as students meet it: over HTTPS on the port
ctl publishes for 443, through nginx, the hub's PAM logins with the students' initial
passwords (state/initial-passwords.csv), each server a Slurm job of the student's pair in
the course image (course-run on gpu1 or gpu2).

- In headless Chromium a student logs in at /hub/login, picks the GPU profile, JupyterLab
  loads (a screenshot in artifacts/); through the server's REST API and websocket a kernel
  prints the locked torch version; squeue shows the job under the pair's account on a GPU
  server with the image's tag in its comment.
- Another student gets no access to that server; a hub restart keeps it (same job).
- A locked student (off the roster, synced) cannot log in; back on the roster, can.
- A spawn whose image tag is gone from the store fails with the reason and leaves no job.
- Culling: with the idle timeout at 60 s the server and its job are gone within 3 minutes.

Shares the session's provisioned lab with the image pushed (the students' store holds it)
and leaves it as it found it (no server running, the roster and the hub's settings back).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops import REPO_ROOT
from ops.inventory import load
from ops.state import StateFile
from tests.lab.conftest import LAB_NAME, docker_exec, ops, verify_with_faults
from tests.lab.hub_client import HubError, HubSession, initial_passwords, own_passwords
from tests.lab.labtools import READABLE, STORE, chromium, wait_for

pytestmark = pytest.mark.lab
ARTIFACTS = REPO_ROOT / "artifacts"
CONFIG = "/etc/jupyterhub/jupyterhub_config.py"
IMAGE_FILE = "/etc/course-ops/course-image"
REF = "ctl:5000/course-ops/course"


@dataclass
class Hub:
    inv: Path
    base: str
    ca: Path
    passwords: dict[str, str]
    pair_of: dict[str, str]  # username -> pair group (the Slurm account)

    def session(self, user: str) -> HubSession:
        s = HubSession(self.base, self.ca, user)
        r = s.login(self.passwords[user])
        assert r.status_code == 200 and s.logged_in(), (r.status_code, r.text[-500:])
        return s

    def students(self) -> list[str]:
        """Active students with an initial password, one per pair first."""
        seen: set[str] = set()
        first, rest = [], []
        for user in sorted(self.passwords):
            if user not in self.pair_of:
                continue
            (rest if self.pair_of[user] in seen else first).append(user)
            seen.add(self.pair_of[user])
        return first + rest


def squeue(user: str) -> list[dict[str, str]]:
    out = docker_exec("ctl", "squeue", "-h", "-u", user, "-o", "%i|%T|%a|%N|%k|%j")
    keys = ("id", "state", "account", "node", "comment", "name")
    return [dict(zip(keys, line.split("|"), strict=True))
            for line in out.splitlines() if line.strip()]


def hub_jobs(user: str) -> list[dict[str, str]]:
    return [j for j in squeue(user) if j["name"] == "jupyterhub"]


def restart_hub() -> None:
    docker_exec("ctl", "systemctl", "restart", "jupyterhub")
    wait_for("the hub to answer", lambda: docker_exec(
        "ctl", "sh", "-c", "curl -s -o /dev/null -w '%{http_code}' "
        "http://127.0.0.1:8000/hub/health || true") == "200", timeout=120)


def test_an_initial_password_gets_a_page_that_says_to_change_it(provisioned_lab: Path
                                                                ) -> None:
    """The last student (by name) keeps the initial password: the hub fixture sets the
    others' own."""
    inv = provisioned_lab
    web = load(inv).hosts_in("web")[0]
    user, initial = sorted(initial_passwords(inv).items())[-1]
    assert user not in own_passwords(inv, LAB_NAME)
    s = HubSession(f"https://127.0.0.1:{web.vars['lab_ports'][443]}",
                   inv / ".lab" / "tls" / "ca.crt", user)
    r = s.login(initial)
    assert r.status_code == 403 and "must be changed before the first login" in r.text
    assert not s.logged_in()
    r = s.login(initial + "x")  # a wrong one is still just wrong
    assert r.status_code == 200 and "Invalid username or password" in r.text


def test_verify_hub_fails_on_exactly_a_readable_secret(provisioned_lab: Path,
                                                      tmp_path: Path) -> None:
    token = "/etc/jupyterhub/ops-token"
    docker_exec("ctl", "chmod", "0644", token)
    try:
        failed = verify_with_faults(provisioned_lab, "hub", tmp_path / "hub.xml")
        assert len(failed) == 1 and "test_the_hubs_secrets_and_lists_are_private" in \
            next(iter(failed)) and token in next(iter(failed)), failed
    finally:
        docker_exec("ctl", "chmod", "0640", token)


@pytest.fixture(scope="module")
def hub(provisioned_lab: Path, pushed_image: str) -> Iterator[Hub]:
    inv = provisioned_lab
    web = load(inv).hosts_in("web")[0]
    passwords = own_passwords(inv, LAB_NAME)
    state = StateFile(inv).load()
    pair_of = {s.username: state.pairs[s.pair].group if s.pair in state.pairs else s.pair
               for s in state.students.values() if s.status == "active"}
    h = Hub(inv, f"https://127.0.0.1:{web.vars['lab_ports'][443]}",
            inv / ".lab" / "tls" / "ca.crt", passwords, pair_of)
    yield h
    for user in passwords:  # no server left running for the next module
        for job in hub_jobs(user):
            docker_exec("ctl", "scancel", job["id"])


@pytest.fixture(scope="module")
def locked_version() -> str:
    lock = (REPO_ROOT / "images" / "course" / "lock" / "cpu.txt").read_text()
    m = re.search(r"^torch==(\S+)", lock, re.M)
    assert m, "the cpu lock pins no torch"
    return m.group(1)


@pytest.fixture(scope="module")
def running(hub: Hub, locked_version: str) -> Iterator[tuple[str, HubSession]]:
    """The first student's GPU-profile server, started in a real browser (JupyterLab
    loaded, a screenshot taken), then reached with the same login over HTTP."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    user = hub.students()[0]
    with chromium("1280,900") as driver:
        driver.set_page_load_timeout(60)
        driver.get(f"{hub.base}/hub/login")
        driver.find_element(By.ID, "username_input").send_keys(user)
        driver.find_element(By.ID, "password_input").send_keys(hub.passwords[user])
        driver.find_element(By.ID, "login_submit").click()
        WebDriverWait(driver, 60).until(ec.presence_of_element_located(
            (By.NAME, "profile")))
        Select(driver.find_element(By.NAME, "profile")).select_by_value("gpu")
        driver.find_element(By.CSS_SELECTOR, "form#spawn_form [type=submit]").click()
        WebDriverWait(driver, 300).until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, "#jp-main-dock-panel, .jp-LabShell")))
        WebDriverWait(driver, 60).until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, ".jp-Launcher, .jp-LauncherCard")))
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "hub-jupyterlab.png"
        assert driver.save_screenshot(str(shot))
        url = driver.current_url
    assert f"/user/{user}/lab" in url, url
    assert shot.stat().st_size > 10_000
    session = hub.session(user)
    assert session.open_lab().status_code == 200
    yield user, session
    session.stop()


def test_jupyterlab_in_a_browser_runs_the_locked_torch(running: tuple[str, HubSession],
                                                      locked_version: str) -> None:
    _, session = running
    result = session.run_code("import torch; print(torch.__version__)")
    assert result.error == "" and result.stdout.strip() == locked_version, result


def test_the_server_is_a_job_of_the_pair_on_a_gpu_server_in_the_image(
        hub: Hub, running: tuple[str, HubSession], pushed_image: str) -> None:
    user, session = running
    jobs = hub_jobs(user)
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert job["state"] == "RUNNING" and job["node"] in ("gpu1", "gpu2"), job
    assert job["account"] == hub.pair_of[user], job
    assert job["comment"] == f"course-image={pushed_image}", job
    gres = docker_exec("ctl", "scontrol", "show", "job", "-o", job["id"])
    assert re.search(r"gres/gpu[:=]1", gres), gres  # the GPU profile's one GPU
    model = session.server()
    assert model and model["ready"] and model["user_options"] == {"profile": "gpu"}
    shown = json.loads(ops(hub.inv, "hub", "status", "--format", "json").stdout)
    assert shown["url"].endswith("/hub/")
    row = next(r for r in shown["servers"] if r["student"] == user)
    assert (row["job"], row["node"], row["pair"], row["profile"], row["state"]) == (
        job["id"], job["node"], hub.pair_of[user], "gpu", "RUNNING"), row
    # the server runs inside the container (course-run), as the student, in the image
    code = ("import os, json; print(json.dumps([os.getuid(), "
            "open('/opt/course-ops/image.json').read()]))")
    uid, image_json = json.loads(session.run_code(code).stdout)
    assert uid == int(docker_exec("ctl", "id", "-u", user))
    assert json.loads(image_json)["tag"] == pushed_image


def test_another_student_cannot_reach_the_server(hub: Hub,
                                                 running: tuple[str, HubSession]) -> None:
    user, _ = running
    other = next(u for u in hub.students() if u != user)
    s = hub.session(other)
    r = s.http.get(f"{hub.base}/user/{user}/lab", timeout=60, allow_redirects=True)
    assert r.status_code == 403 or f"/user/{user}/" not in r.url, (r.status_code, r.url)
    api = s.http.get(f"{hub.base}/user/{user}/api/kernels", timeout=60,
                     allow_redirects=False)
    assert api.status_code in (302, 403), api.status_code
    if api.status_code == 302:
        assert f"/user/{user}/" not in api.headers.get("location", "")


def test_a_hub_restart_keeps_the_server_and_its_job(hub: Hub,
                                                    running: tuple[str, HubSession],
                                                    locked_version: str) -> None:
    user, session = running
    before = [j["id"] for j in hub_jobs(user)]
    restart_hub()
    assert [j["id"] for j in hub_jobs(user)] == before
    model = wait_for("the hub to see the server again", session.server, timeout=60)
    assert model["ready"]
    assert session.run_code("import torch; print(torch.__version__)").stdout.strip() \
        == locked_version


def test_a_locked_student_cannot_log_in(hub: Hub) -> None:
    """Off the roster and synced: locked, the hub refuses them (their own password is
    right). Back on the roster: a new initial password, which the hub says to change."""
    roster = hub.inv / "roster.csv"
    original = roster.read_text(encoding="utf-8")
    state = StateFile(hub.inv).load()
    leaver_id, leaver = next((sid, s) for sid, s in sorted(state.students.items())
                             if s.username in hub.passwords and s.status == "active")
    user = leaver.username
    lines = original.splitlines(keepends=True)
    roster.write_text("".join(ln for ln in lines if not ln.startswith(f"{leaver_id},")),
                      encoding="utf-8")
    try:
        ops(hub.inv, "-y", "accounts", "sync")
        s = HubSession(hub.base, hub.ca, user)
        r = s.login(hub.passwords[user])
        assert not s.logged_in(), r.url
        assert r.status_code == 200 and "Invalid username or password" in r.text
    finally:
        roster.write_text(original, encoding="utf-8")
        ops(hub.inv, "-y", "accounts", "sync")
    s = HubSession(hub.base, hub.ca, user)
    assert s.login(initial_passwords(hub.inv)[user]).status_code == 403
    hub.passwords.update(own_passwords(hub.inv, LAB_NAME))  # they set their own again
    assert hub.session(user).logged_in()


def test_a_spawn_whose_image_is_gone_fails_with_the_reason_and_leaves_no_job(
        hub: Hub, pushed_image: str) -> None:
    """The hub names a tag the stores no longer hold (tagged, then removed from every
    GPU server's store): the spawn fails with course-run's reason; no job stays."""
    gone = "torch0.0.0-cpu-py3.11-00000000dead"
    original = docker_exec("ctl", "cat", IMAGE_FILE)
    for node in ("gpu1", "gpu2"):
        docker_exec(node, "podman", "--root", STORE, "tag", f"{REF}:{pushed_image}",
                    f"{REF}:{gone}")
        docker_exec(node, "podman", "--root", STORE, "untag", f"{REF}:{pushed_image}",
                    f"{REF}:{gone}")  # that one name only (no name: all of them)
        docker_exec(node, "sh", "-c", READABLE)
        names = docker_exec(node, "podman", "--root", STORE, "images", "--format",
                            "{{.Repository}}:{{.Tag}}").split()
        assert f"{REF}:{pushed_image}" in names and f"{REF}:{gone}" not in names, names
    user = hub.students()[1]
    docker_exec("ctl", "sh", "-c", f"sed -i 's/^tag=.*/tag={gone}/' {IMAGE_FILE}")
    try:
        s = hub.session(user)
        s.spawn("cpu")
        started = time.monotonic()
        with pytest.raises(HubError) as failed:
            s.wait_ready(timeout=240)
        assert time.monotonic() - started < 180  # at once, not after the queue timeout
        assert f"has no image {gone}" in str(failed.value), failed.value
        wait_for("no job of the failed spawn", lambda: not hub_jobs(user), timeout=60)
        assert s.server() is None
    finally:
        docker_exec("ctl", "sh", "-c", f"cat > {IMAGE_FILE} <<'EOF'\n{original}EOF")


def gpu_pair(hub: Hub) -> tuple[str, str]:
    """A pair of two: (student, partner), for the pair's GPU cap."""
    pair = next(p for p in sorted(set(hub.pair_of.values()))
                if sum(1 for v in hub.pair_of.values() if v == p) == 2)
    student, partner = sorted(u for u, p in hub.pair_of.items() if p == pair)
    return student, partner


@pytest.fixture(scope="module")
def short_timeouts(hub: Hub) -> Iterator[None]:
    """The hub with an idle timeout of 60 s (culled every 15 s) and a spawn timeout of 45 s,
    for the tests below (one restart for both, and one to put the settings back)."""
    original = docker_exec("ctl", "cat", CONFIG)
    docker_exec("ctl", "sed", "-i", "-e", "s/--timeout=[0-9]*/--timeout=60/",
                "-e", "s/--cull-every=[0-9]*/--cull-every=15/", "-e",
                "s/^c.CourseSlurmSpawner.queue_timeout = .*/c.CourseSlurmSpawner.queue_timeout"
                " = 45/", CONFIG)
    try:
        restart_hub()
        yield
    finally:
        docker_exec("ctl", "sh", "-c", f"cat > {CONFIG} <<'EOF'\n{original}EOF")
        restart_hub()


@pytest.fixture(scope="module")
def idle_server(hub: Hub, short_timeouts: None) -> tuple[str, HubSession, float]:
    """A one-core server, opened once, then left alone (its browser closed) while the test
    of the spawn timeout runs: (student, session, when it was left)."""
    user = next(u for u in hub.students()[2:] if hub.pair_of[u] != hub.pair_of[gpu_pair(hub)[0]])
    s = hub.session(user)
    s.spawn("cpu1")
    s.wait_ready(timeout=300)
    assert s.open_lab().status_code == 200
    assert hub_jobs(user), "the server has no job"
    s.http.close()  # the browser is closed: nothing is active any more
    return user, s, time.monotonic()


def test_a_second_gpu_server_of_a_pair_waits_says_why_then_is_cancelled(
        hub: Hub, short_timeouts: None, idle_server: tuple[str, HubSession, float]) -> None:
    """The pair's GPU cap holds in the hub: the partner's GPU job runs, the student's GPU
    server waits with the page naming that job, and after the spawn timeout (45 s here)
    its job is cancelled with a page that says so; no job of it stays."""
    student, partner = gpu_pair(hub)
    holder = ""
    try:
        out = docker_exec("ctl", "runuser", "-u", partner, "--", "sh", "-c",
                          f"cd /home/{partner} && course-sbatch -g 1 -c 1 -J holder sleep 600")
        holder = re.search(r"Submitted batch job (\d+)", out).group(1)  # type: ignore[union-attr]
        wait_for("the partner's GPU job to run", lambda: docker_exec(
            "ctl", "squeue", "-h", "-j", holder, "-o", "%T").strip() == "RUNNING")
        # Slurm shows the hub (asking as the student) only the student's own jobs: the
        # holder comes from the controller's per-minute copy; made now, not in a minute
        docker_exec("ctl", "systemctl", "start", "course-usage-pairs.service")
        s = hub.session(student)
        s.spawn("gpu")
        events = s.progress(timeout=150)
        said = [e.get("message", "") for e in events]
        assert any(f"your pair's GPU is in use by job {holder}" in m for m in said), said
        assert events[-1].get("failed"), said[-3:]
        assert "waited 45 s" in said[-1] and f"in use by job {holder}" in said[-1], said[-1]
        assert "cancelled" in said[-1]
        wait_for("no job of the cancelled server", lambda: not [
            j for j in hub_jobs(student) if j["state"] in ("PENDING", "RUNNING")],
            timeout=60)
        assert s.server() is None
    finally:
        if holder:
            docker_exec("ctl", "scancel", holder)


def test_an_idle_server_is_culled_with_its_job(
        hub: Hub, idle_server: tuple[str, HubSession, float]) -> None:
    """Idle for 60 s (culled every 15 s): the server and its job are gone within 3 minutes
    of its browser closing (the spawn-timeout test ran meanwhile)."""
    user, s, left = idle_server
    wait_for("the culler to stop the server", lambda: s.server() is None,
             timeout=180 - (time.monotonic() - left), every=5)
    wait_for("the server's job to end", lambda: not hub_jobs(user),
             timeout=180 - (time.monotonic() - left), every=2)
