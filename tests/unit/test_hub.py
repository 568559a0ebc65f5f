"""The hub's decisions (roles/jupyterhub/files/course_hub_rules.py), its rendered
configuration for each authenticator, its pinned JupyterHub, and `ops hub status`."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

from ops import REPO_ROOT

ROLE = REPO_ROOT / "roles" / "jupyterhub"


def _rules():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("course_hub_rules",
                                                  ROLE / "files" / "course_hub_rules.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["course_hub_rules"] = module
    spec.loader.exec_module(module)
    return module


rules = _rules()
PROFILES = [rules.Profile.parse(p) for p in
            yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["jupyterhub_profiles"]]


def test_the_hubs_jupyterhub_is_the_one_locked_in_the_course_image() -> None:
    image = yaml.safe_load((REPO_ROOT / "images/course/image.yml").read_text())
    lock = (ROLE / "files" / "requirements.txt").read_text()
    pinned = re.findall(r"^jupyterhub==(\S+)", lock, re.M)
    assert pinned == [image["pins"]["jupyterhub"]]
    assert re.findall(r"^batchspawner==(\S+)", lock, re.M) == [image["pins"]["batchspawner"]]
    for block in re.split(r"\n(?=[a-z])", lock.split("\n", 1)[1]):
        if "==" in block:
            assert "--hash=sha256:" in block, block.splitlines()[0]  # every file hash-checked


def test_the_users_list_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "course-users.json"
    users = rules.CourseUsers(str(path))
    assert not users.allowed("dcohen")  # no list yet: nobody
    path.write_text(json.dumps({"allowed": ["dcohen", "ta1"], "admins": ["ta1"],
                                "emails": {"d@u.il": "dcohen"}}))
    assert users.allowed("dcohen") and not users.admin("dcohen") and users.admin("ta1")
    assert users.username_for(" D@U.IL ") == "dcohen"
    assert users.username_for("stranger@x.org") == "stranger@x.org"
    path.write_text(json.dumps({"allowed": ["ta1"], "admins": [], "emails": {}}))
    os.utime(path, (1, 1))  # a different mtime
    assert not users.allowed("dcohen") and not users.admin("ta1")


def test_profiles_give_slurm_requests_and_a_form() -> None:
    cpu, gpu = PROFILES
    assert cpu.slurm() == {"nprocs": "2", "runtime": "04:00:00", "memory": "", "gres": ""}
    assert gpu.slurm()["gres"] == "gpu:1"
    form = rules.profiles_form([rules.Profile("x", "<b>", 1, 0, "1:00:00")])
    assert "&lt;b&gt;" in form and "<b>" not in form
    assert rules.chosen(PROFILES, {"profile": ["gpu"]}) is gpu
    assert rules.chosen(PROFILES, {}) is cpu
    with pytest.raises(ValueError, match="no such profile 'big'"):
        rules.chosen(PROFILES, {"profile": ["big"]})
    for bad in ({"name": "a b", "cores": 1, "time": "1:00:00"},
                {"name": "x", "cores": 0, "time": "1:00:00"},
                {"name": "x", "cores": 1, "time": "soon"}):
        with pytest.raises(ValueError):
            rules.Profile.parse(bad)


def test_a_waiting_server_says_which_job_holds_the_pairs_gpu() -> None:
    jobs = rules.pair_gpu_jobs("41|RUNNING|gres:gpu:1\n42|PENDING|gres:gpu:1\n"
                               "43|RUNNING|N/A\n44|RUNNING|gres:gpu:1\n", "44")
    assert jobs == ["41"]
    text = rules.pending_message("QOSMaxGRESPerAccount", jobs, 30, 600)
    assert text.startswith("Waiting: your pair's GPU is in use by job 41")
    assert "9 min 30 s" in text
    assert "free GPU server" in rules.pending_message("Resources", [], 0, 600)
    assert "cancelled" in rules.timeout_message("44", ["41"], 600)
    assert "job 41" in rules.timeout_message("44", ["41"], 600)


def test_durations_read_as_the_page_says_them() -> None:
    assert [rules.duration(x) for x in (600, 60, 45, 90, 120, 3600)] == [
        "10 minutes", "1 minute", "45 s", "90 s", "2 minutes", "60 minutes"]
    assert "waited 45 s: your pair's GPU stayed in use by job 41" in \
        rules.timeout_message("44", ["41"], 45)


def test_a_job_that_fails_at_once_says_so() -> None:
    text = rules.failure_message("45", "FAILED", "NonZeroExitCode", "gpu1")
    assert text.startswith("Your server's job 45 failed on gpu1 (NonZeroExitCode)")
    assert "~/.jupyterhub-slurm-45.log" in text
    assert "cancelled" in rules.failure_message("45", "CANCELLED", "", "")


def test_an_initial_password_to_change_gets_a_page_that_says_how() -> None:
    text = rules.initial_password_message("s1")
    assert "ssh" in text and "s1" in text and "changed" in text
    assert rules.PAM_NEW_AUTHTOK_REQD == 12  # Linux-PAM's PAM_NEW_AUTHTOK_REQD


@pytest.mark.parametrize(("state", "alive"), [
    ("PENDING", True), ("CONFIGURING", True), ("RUNNING", True), ("COMPLETING", False),
    ("FAILED", False), ("COMPLETED", False), ("CANCELLED", False), ("", False),
    ("NODE_FAIL", False), ("OUT_OF_MEMORY", False)])
def test_a_starting_servers_job_is_alive_only_before_it_ends(state: str, alive: bool) -> None:
    assert rules.job_alive(state) is alive


def test_course_runs_reason_in_the_jobs_comment_reaches_the_page() -> None:
    comment = ("course-image=torch0-cpu-dead course-run: this node has no image "
               "torch0-cpu-dead (the course's default is torch0-cpu-dead): not found")
    text = rules.failure_message("46", "FAILED", "NonZeroExitCode", "gpu2", comment)
    assert "could not start the course image on gpu2: this node has no image" in text
    # a plain comment (the image's tag only) is no reason
    assert "may be missing" in rules.failure_message("46", "FAILED", "NonZeroExitCode",
                                                     "gpu2", "course-image=torch0-cpu-a")


def test_the_default_tag_comes_from_the_nodes_image_file(tmp_path: Path) -> None:
    f = tmp_path / "course-image"
    f.write_text("# comment\ntag=torch2.13.0-cpu-py3.11-abc\nvariant=cpu\n")
    assert rules.default_tag(str(f)) == "torch2.13.0-cpu-py3.11-abc"
    f.write_text("# nothing pushed yet\n")
    with pytest.raises(RuntimeError, match="No course image has been pushed"):
        rules.default_tag(str(f))
    f.write_text("tag=$(reboot)\n")
    with pytest.raises(RuntimeError):
        rules.default_tag(str(f))


def render(**override: object) -> str:
    """jupyterhub_config.py as Ansible renders it (its filters: to_json, int, default)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"),
                             undefined=jinja2.StrictUndefined)
    env.filters["to_json"] = json.dumps
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values.update(ansible_managed="managed", jupyterhub_hub_ip="10.0.0.5",
                  slurm_partition="all", **override)
    return env.get_template("jupyterhub_config.py.j2").render(**values)


@pytest.mark.parametrize("kind, lines", [
    ("pam", ['c.JupyterHub.authenticator_class = course_hub.CoursePAMAuthenticator',
             'c.PAMAuthenticator.service = "jupyterhub"']),
    ("oauth", ['c.JupyterHub.authenticator_class = course_hub.oauth_authenticator()',
               'c.GenericOAuthenticator.authorize_url = "https://sso.example.edu/auth"',
               'c.GenericOAuthenticator.username_claim = "email"',
               'c.GenericOAuthenticator.oauth_callback_url = '
               '"https://hub.example.edu/hub/oauth_callback"']),
    ("lti13", ['c.JupyterHub.authenticator_class = course_hub.lti13_authenticator()',
               'c.LTI13Authenticator.issuer = "https://moodle.example.edu"',
               'c.LTI13Authenticator.client_id = ["tool-1"]']),
])
def test_the_rendered_configuration_for_each_authenticator(kind: str,
                                                           lines: list[str]) -> None:
    text = render(jupyterhub_authenticator=kind, jupyterhub_hostname="hub.example.edu",
                  jupyterhub_oauth={"client_id": "cid", "authorize_url":
                                    "https://sso.example.edu/auth", "token_url": "t",
                                    "userdata_url": "u"},
                  jupyterhub_lti13={"issuer": "https://moodle.example.edu",
                                    "authorize_url": "a", "jwks_endpoint": "j",
                                    "client_id": "tool-1"})
    compile(text, "jupyterhub_config.py", "exec")  # valid Python
    for line in lines:
        assert line in text
    assert 'c.JupyterHub.hub_bind_url = "http://10.0.0.5:8081"' in text
    assert "c.JupyterHub.cleanup_servers = False" in text
    assert "c.ConfigurableHTTPProxy.should_start = False" in text
    assert 'c.CourseSlurmSpawner.exec_prefix = "sudo -n -u {username}"' in text
    assert "#SBATCH --comment=course-image={{image_tag}}" in text
    assert "--timeout=3600" in text
    assert ("client_secret" in text) == (kind == "oauth")
    assert ("PAMAuthenticator" in text) == (kind == "pam")


def test_hub_status_joins_servers_and_their_jobs() -> None:
    from ops.hub import servers

    users = [{"name": "dcohen", "servers": {"": {"user_options": {"profile": "gpu"},
                                                  "started": "2026-12-01T10:00:00Z",
                                                  "last_activity": "2026-12-01T10:05:00Z"}}},
             {"name": "elevi", "servers": {}}]
    jobs = "7|dcohen|pair001|gpu1|RUNNING|2026-12-01T10:00:01\n8|elevi|pair001||PENDING|N/A\n"
    (s,) = servers(users, jobs)
    assert (s.student, s.pair, s.job, s.node, s.state, s.profile) == \
        ("dcohen", "pair001", "7", "gpu1", "RUNNING", "gpu")
    (gone,) = servers([users[0]], "")
    assert gone.state == "gone" and gone.job == ""


def test_the_partners_gpu_job_comes_from_the_controllers_copy(tmp_path) -> None:  # noqa: ANN001
    """Slurm hides the partner's job from the student (PrivateData): the hub reads the
    controller's per-minute copy, and only a fresh one."""
    import json
    import time

    f = tmp_path / "hub.json"
    f.write_text(json.dumps({"at": time.time(), "gpu_jobs": {"pair001": ["41", "77"]}}))
    assert rules.hub_file_jobs(str(f), "pair001", "77") == ["41"]
    assert rules.hub_file_jobs(str(f), "pair002", "77") == []
    f.write_text(json.dumps({"at": time.time() - 600, "gpu_jobs": {"pair001": ["41"]}}))
    assert rules.hub_file_jobs(str(f), "pair001", "77") == []  # stale: not said
    f.write_text("{not json")
    assert rules.hub_file_jobs(str(f), "pair001", "77") == []
    assert rules.hub_file_jobs(str(tmp_path / "none.json"), "pair001", "77") == []
