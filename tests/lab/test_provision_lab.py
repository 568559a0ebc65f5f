"""`ops provision` on the lab, molecule's sequence through the real CLI: converge from
scratch -> converge again, expect changed=0 -> check mode, expect no change -> verify (the
GPU checks skip with their reason: the lab has no GPU) -> drift caught, reboot reported;
then Slurm as the students use it: GPU jobs, the per-pair GPU cap, a stranger refused,
a node lost and back, a controller restart."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from ops.machines import Recap, parse_output
from tests.lab import labtools
from tests.lab.conftest import LAB_NAME, docker_exec, ops, verify_with_faults

pytestmark = pytest.mark.lab
NODES = ("ctl", "gpu1", "gpu2")


def recaps(p: subprocess.CompletedProcess[str]) -> dict[str, Recap]:
    r = parse_output(p.stdout.splitlines())
    assert set(r) == set(NODES), p.stdout[-2000:]
    return r


def test_provision_converges_from_scratch(
        first_converge: subprocess.CompletedProcess[str]) -> None:
    p = first_converge
    r = recaps(p)
    assert all(x.failed == 0 and x.unreachable == 0 for x in r.values())
    assert r["gpu1"].changed > 0 and r["gpu2"].changed > 0
    # no GPU in a container: said out loud, not skipped silently
    said = " ".join(p.stdout.split())
    assert "gpu1: a container: user-space packages and configuration only" in said
    assert "gpu1: no NVIDIA GPU on host: Docker only" in said
    assert "provision summary" in p.stdout
    for node in ("gpu1", "gpu2"):
        assert docker_exec(node, "systemctl", "is-active", "docker").strip() == "active"
        assert docker_exec(node, "dpkg-query", "-W", "-f=${Status}", "nvidia-smi") == \
            "install ok installed"


@pytest.fixture(scope="module")
def jump_lab(provisioned_lab: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same lab, but gpu1 and gpu2 named by their lab-network names, which only ctl
    resolves: nothing reaches them but through ctl as a jump host (ProxyJump=ctl), host
    keys checked against a known_hosts of the variant's own. Everything else of the
    inventory (group_vars, roster, state, secrets) is the shared lab's, by symlink."""
    inv = tmp_path_factory.mktemp("jump") / "lab"
    inv.mkdir()
    for entry in provisioned_lab.iterdir():
        if entry.name != "hosts.yml":
            (inv / entry.name).symlink_to(entry)
    known = inv.parent / "known_hosts"
    lab_vars = yaml.safe_load((provisioned_lab / "hosts.yml").read_text())["all"]["vars"]
    lab_known = re.search(r"UserKnownHostsFile=(\S+)", lab_vars["ansible_ssh_common_args"])
    assert lab_known, lab_vars
    known.write_text(Path(lab_known.group(1)).read_text())
    common = lab_vars["ansible_ssh_common_args"].replace(lab_known.group(1), str(known))
    hosts = yaml.safe_load((provisioned_lab / "hosts.yml").read_text())
    hosts["all"]["vars"]["ansible_ssh_common_args"] = common
    for node in ("gpu1", "gpu2"):
        hosts["all"]["children"]["gpu_servers"]["hosts"][node] = {
            "ansible_host": node, "ansible_port": 22,
            "ansible_ssh_common_args": f"{common} -o ProxyJump=ctl"}
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    for node in ("gpu1", "gpu2"):  # this machine cannot resolve them: only ctl can
        with pytest.raises(OSError):
            socket.getaddrinfo(node, 22)
    return inv


def test_a_second_provision_through_a_jump_host_repairs_a_hand_edit_and_nothing_else(
        jump_lab: Path) -> None:
    """Every tool (Ansible, pyinfra, testinfra, ssh/rsync) reaches gpu1 and gpu2 through ctl
    with strict host-key checking, and a file edited by hand on a node (an admin who
    turned unattended upgrades off) is repaired by the next provision: no shortcut skips
    it because the inputs did not change. So is a package removed by hand (the apt tasks
    are skipped only where the run's package_facts lists every package they install)."""
    managed = "/etc/apt/apt.conf.d/20auto-upgrades"
    docker_exec("gpu1", "sh", "-c", "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q "
                                    "unattended-upgrades >/dev/null")
    assert "install ok installed" not in docker_exec("gpu1", "sh", "-c",
                                                     "dpkg -s unattended-upgrades || true")
    want = docker_exec("gpu2", "cat", managed)
    docker_exec("gpu2", "sed", "-i", "s/Unattended-Upgrade \"1\"/Unattended-Upgrade \"0\"/",
                managed)
    assert docker_exec("gpu2", "cat", managed) != want
    p = ops(jump_lab, "-y", "provision")
    r = recaps(p)
    assert {h: x.changed for h, x in r.items()} == {"ctl": 0, "gpu1": 1, "gpu2": 1}
    assert docker_exec("gpu2", "cat", managed) == want
    assert "install ok installed" in docker_exec("gpu1", "dpkg", "-s", "unattended-upgrades")
    assert p.stdout.count("0 change(s)") == 3  # the accounts, through the jump host too
    # verify ran there: its table's row (host, passed, failed, skipped), none failed
    assert re.search(r"^│ gpu1\s+│ [1-9]\d*\s+│ 0\s+│ \d+\s+│$", p.stdout, re.M), p.stdout[-3000:]
    plan = ops(jump_lab, "accounts", "plan")
    assert "no change" in plan.stdout + plan.stderr
    ops(jump_lab, "verify", "accounts")
    ops(jump_lab, "site", "deploy")
    # the host key is checked on the far side of the jump: a wrong one stops the run
    known = jump_lab.parent / "known_hosts"
    good = known.read_text()
    gpu1 = [line for line in good.splitlines() if ",gpu1," in line]
    gpu2_key = next(line for line in good.splitlines() if ",gpu2," in line and "ed25519" in line)
    kept = [line for line in good.splitlines() if line not in gpu1]
    known.write_text("\n".join([*kept, f"{gpu1[0].split()[0]} {gpu2_key.split(' ', 1)[1]}"])
                     + "\n")
    try:
        bad = ops(jump_lab, "accounts", "plan", check=False)
        assert bad.returncode == 5 and "Host key for gpu1 does not match" in bad.stderr, \
            bad.stderr
    finally:
        known.write_text(good)


def test_check_mode_reports_no_change(jump_lab: Path) -> None:
    """After the repair above, through the jump host too: the lab has converged."""
    before = docker_exec("gpu1", "stat", "-c", "%Y", "/etc/motd", "/etc/docker/daemon.json")
    p = ops(jump_lab, "provision", "--check", "--diff")
    r = recaps(p)
    assert {h: x.changed for h, x in r.items()} == {h: 0 for h in NODES}
    assert docker_exec("gpu1", "stat", "-c", "%Y", "/etc/motd",
                       "/etc/docker/daemon.json") == before


def test_gpu_checks_skip_with_the_reason(provisioned_lab: Path, tmp_path: Path) -> None:
    junit = tmp_path / "gpu.xml"
    ops(provisioned_lab, "verify", "gpu", "--junit", str(junit))
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    skipped = [c.find("skipped") for c in cases if c.find("skipped") is not None]
    passed = [c for c in cases if c.find("skipped") is None and c.find("failure") is None]
    assert skipped and all("no NVIDIA GPU on host" in (s.get("message") or "")
                           for s in skipped)
    assert {c.get("name", "").split("[")[0] for c in passed} == \
        {"test_nouveau_is_not_loaded"}  # nvcc is not installed on Debian: that one skips


def test_a_student_in_the_docker_group_is_caught_and_removed(provisioned_lab: Path,
                                                            tmp_path: Path) -> None:
    student = docker_exec("gpu1", "getent", "group", "course").strip().split(":")[3] \
        .split(",")[0]
    docker_exec("gpu1", "usermod", "-aG", "docker", student)
    p = ops(provisioned_lab, "verify", "gpu_servers", "--junit", str(tmp_path / "d.xml"),
            check=False)
    assert p.returncode == 1
    failed = [c.get("name", "") for c in ET.parse(tmp_path / "d.xml").getroot()
              .iter("testcase") if c.find("failure") is not None]
    assert failed == ["test_no_student_in_the_docker_group[ansible://gpu1]"]
    ops(provisioned_lab, "-y", "accounts", "sync")
    assert student not in docker_exec("gpu1", "getent", "group", "docker")
    ops(provisioned_lab, "verify", "gpu_servers")


def test_a_pending_reboot_is_reported(provisioned_lab: Path) -> None:
    docker_exec("gpu2", "sh", "-c", "echo nvidia-driver > /run/reboot-required.pkgs && "
                                    "touch /run/reboot-required")
    try:
        p = ops(provisioned_lab, "verify", "common", check=False)
        assert p.returncode == 1
        assert "reboot required (nvidia-driver)" in p.stdout
        # the driver's role and the report (tagged always): not the whole site's check
        check = ops(provisioned_lab, "provision", "--check", "--limit", "gpu2", "--tags",
                    "nvidia_driver", check=False)
        assert recaps_reboot(check) == {"gpu2"}
    finally:
        docker_exec("gpu2", "rm", "-f", "/run/reboot-required", "/run/reboot-required.pkgs")


def test_no_unit_fails_and_a_failed_one_fails_verify(provisioned_lab: Path,
                                                    tmp_path: Path) -> None:
    """After provision every node is healthy (systemd "running", not "degraded": no
    persistence daemon failing where no GPU is); a failed unit fails `verify common` unless
    the inventory names it in verify_ignore_failed_units."""
    ops(provisioned_lab, "lab", "status")  # exits non-zero if any node is degraded
    for node in ("gpu1", "gpu2"):
        assert docker_exec(node, "sh", "-c", "systemctl is-enabled nvidia-persistenced "
                                             "|| true").strip() == "disabled"
    unit = "course-ops-fault.service"
    docker_exec("gpu1", "systemd-run", f"--unit={unit}", "--", "false")
    host_vars = provisioned_lab / "host_vars"
    try:
        wait_for("the unit to fail", lambda: docker_exec(
            "gpu1", "sh", "-c", f"systemctl is-failed {unit} || true").strip() == "failed",
            timeout=30)
        junit = tmp_path / "common.xml"
        p = ops(provisioned_lab, "verify", "common", "--junit", str(junit), check=False)
        assert p.returncode == 1
        failed = [c.get("name", "") for c in ET.parse(junit).getroot().iter("testcase")
                  if c.find("failure") is not None]
        assert failed == ["test_no_systemd_unit_has_failed[ansible://gpu1]"]
        host_vars.mkdir(exist_ok=True)
        (host_vars / "gpu1.yml").write_text(f"verify_ignore_failed_units: [{unit}]\n")
        ops(provisioned_lab, "verify", "common")
    finally:
        docker_exec("gpu1", "systemctl", "reset-failed", unit)
        (host_vars / "gpu1.yml").unlink(missing_ok=True)


def recaps_reboot(p: subprocess.CompletedProcess[str]) -> set[str]:
    return {h for h, x in parse_output(p.stdout.splitlines()).items() if x.reboot_required}


# ---------------------------------------------------------------- Slurm


def as_student(user: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", "-w", "/tmp", f"{LAB_NAME}-ctl", "runuser", "-u",
                           user, "--", "sh", "-c", command], capture_output=True, text=True,
                          check=check, timeout=120)


def pairs_with_members() -> list[tuple[str, list[str]]]:
    out = []
    for line in docker_exec("ctl", "getent", "group").splitlines():
        name, _, _, members = line.split(":")
        if name.startswith("pair") and members:
            out.append((name, members.split(",")))
    return sorted(out)


def squeue() -> dict[str, tuple[str, str, str]]:
    """job id -> (state, reason, node)."""
    rows = docker_exec("ctl", "squeue", "-h", "-o", "%i|%T|%r|%N").splitlines()
    return {r.split("|")[0]: tuple(r.split("|")[1:]) for r in rows}  # type: ignore[misc]


def wait_for(what, predicate, timeout: float = 180):  # noqa: ANN001, ANN201
    return labtools.wait_for(what, predicate, timeout, every=2)


def node_state(node: str) -> str:
    return docker_exec("ctl", "sinfo", "-h", "-n", node, "-o", "%T").strip()


def test_a_student_runs_a_gpu_job(provisioned_lab: Path) -> None:
    pair, members = pairs_with_members()[0]
    r = as_student(members[0], f"srun -A {pair} --gres=gpu:1 -c 1 hostname")
    assert r.stdout.strip() in ("gpu1", "gpu2")


def test_one_gpu_per_pair_and_pairs_run_side_by_side(provisioned_lab: Path) -> None:
    (p1, m1), (p2, m2) = [p for p in pairs_with_members() if len(p[1]) == 2][:2]
    submit = "sbatch --parsable -A {} --gres=gpu:1 -c 1 --wrap 'sleep 300'"
    first = as_student(m1[0], submit.format(p1)).stdout.strip()
    second = as_student(m1[1], submit.format(p1)).stdout.strip()
    other = as_student(m2[0], submit.format(p2)).stdout.strip()
    try:
        # which of the pair's two runs is the scheduler's (fair-share priority, which the
        # partners' earlier jobs move); exactly one does, the other waits on the pair's cap
        jobs = wait_for("the jobs to be scheduled",
                        lambda: (q := squeue()) and q.get(other, ("",))[0] == "RUNNING"
                        and "RUNNING" in (q.get(first, ("",))[0], q.get(second, ("",))[0])
                        and q)
        states = sorted([jobs[first], jobs[second]])
        assert [s[0] for s in states] == ["PENDING", "RUNNING"], states
        assert "MaxGRESPerAccount" in states[0][1]  # the QOS's per-pair GPU cap
    finally:
        docker_exec("ctl", "scancel", first, second, other)


def test_a_user_not_on_the_roster_cannot_submit(provisioned_lab: Path) -> None:
    docker_exec("ctl", "useradd", "-M", "stranger")
    try:
        r = as_student("stranger", "sbatch --gres=gpu:1 --wrap true", check=False)
        assert r.returncode != 0
        assert "Invalid account" in r.stderr
    finally:
        docker_exec("ctl", "userdel", "stranger")


def test_a_lost_node_is_marked_down_and_comes_back(provisioned_lab: Path) -> None:
    pair, members = pairs_with_members()[0]
    docker_exec("gpu2", "systemctl", "stop", "slurmd")
    try:
        wait_for("gpu2 to be marked down", lambda: "down" in node_state("gpu2"))
        r = as_student(members[0], f"srun -A {pair} --gres=gpu:1 -c 1 hostname")
        assert r.stdout.strip() == "gpu1"
        assert node_state("gpu1") == "idle"
    finally:
        docker_exec("gpu2", "systemctl", "start", "slurmd")
    wait_for("gpu2 to return to idle", lambda: node_state("gpu2") == "idle")
    assert node_state("gpu1") == "idle"


def test_a_controller_restart_keeps_jobs_and_accounting(provisioned_lab: Path) -> None:
    pair, members = pairs_with_members()[1]
    job = as_student(members[0], f"sbatch --parsable -A {pair} --gres=gpu:1 -c 1 "
                                 "--wrap 'sleep 300'").stdout.strip()
    try:
        wait_for("the job to run", lambda: squeue().get(job, ("",))[0] == "RUNNING")
        docker_exec("ctl", "systemctl", "restart", "slurmctld")
        wait_for("the controller to answer", lambda: subprocess.run(
            ["docker", "exec", f"{LAB_NAME}-ctl", "scontrol", "ping"], capture_output=True,
            text=True).stdout.count("UP") >= 1)
        assert squeue()[job][0] == "RUNNING"
        acct = docker_exec("ctl", "sacct", "-n", "-P", "-X", "-j", job, "-o", "account,user")
        assert acct.strip() == f"{pair}|{members[0]}"
    finally:
        docker_exec("ctl", "scancel", job)


def test_verify_slurm_fails_with_a_daemon_down_and_passes_with_it_up(provisioned_lab: Path,
                                                                    tmp_path: Path) -> None:
    """slurmd stopped on gpu2: its daemon check fails there, and the controller's node check
    may see the node go unresponsive too; a pair's GPU budget changed by hand and the staff's
    coordinator role taken away fail their checks; nothing else fails. Started again and
    the accounts synced (which repairs both), all pass."""
    docker_exec("gpu2", "systemctl", "stop", "slurmd")
    docker_exec("ctl", "sacctmgr", "-i", "modify", "account", "where", "name=pair001", "set",
                "GrpTRESMins=gres/gpu=1")
    docker_exec("ctl", "sacctmgr", "-i", "delete", "coordinator", "account=course",
                "names=labta")
    try:
        failed = verify_with_faults(provisioned_lab, "slurm", tmp_path / "slurm.xml")
        faults = {"test_daemons[ansible://gpu2]",
                  "test_every_pair_has_its_gpu_budget[pair001-ansible://ctl]",
                  "test_the_staff_see_every_pairs_jobs[ansible://ctl]"}
        assert faults <= failed, failed
        assert failed <= {*faults, "test_nodes_are_idle[ansible://ctl]"}
    finally:
        ops(provisioned_lab, "-y", "accounts", "sync")
        docker_exec("gpu2", "systemctl", "start", "slurmd")
        wait_for("gpu2 to be back in Slurm", lambda: docker_exec(
            "ctl", "sinfo", "-h", "-n", "gpu2", "-o", "%T").strip() in ("idle", "mixed",
                                                                      "allocated"), timeout=120)
    ops(provisioned_lab, "verify", "slurm")


def test_verify_gpu_fails_where_gpus_are_expected_and_none_show(provisioned_lab: Path,
                                                              tmp_path: Path) -> None:
    """The lab's GPU servers have no GPU (the inventory says so: the checks skip); told to
    expect one, every GPU check fails on both, none passes having checked nothing."""
    failed = verify_with_faults(provisioned_lab, "gpu", tmp_path / "gpu.xml",
                                "--expect-gpus", "1")
    assert {f for f in failed if "gpu1" in f} and {f for f in failed if "gpu2" in f}, failed
    assert all(re.search(r"ansible://gpu[12]\b", f) for f in failed), failed
    assert "test_nvidia_smi_lists_the_expected_gpus[ansible://gpu1]" in failed, failed


def test_course_sbatch_runs_a_command_with_the_course_defaults(provisioned_lab: Path,
                                                             pushed_image: str) -> None:
    pair, members = pairs_with_members()[0]
    user = members[0]
    r = as_student(user, "cd ~ && course-sbatch --help | head -1 && "
                         "course-sbatch -J answer python3 -c 'print(6 * 7)'")
    assert r.stdout.startswith("Usage: course-sbatch")
    job = r.stdout.split()[-1]
    out = f"/home/{user}/slurm-*-{job}.out"
    text = wait_for("the job's output", lambda: as_student(
        user, f"cat {out} 2>/dev/null || true").stdout.count("done (exit 0)") and
        as_student(user, f"cat {out}").stdout)
    assert "\n42\n" in text
    # slurmctld sends the job's start (with what it allocated) to slurmdbd on its own
    # schedule: the job can have finished before sacct knows its AllocTRES
    def accounted() -> str:
        out = docker_exec("ctl", "sacct", "-n", "-P", "-X", "-j", job, "-o", "account,alloctres")
        return out if "gres/gpu=" in out else ""

    info = wait_for("the job's allocation in the accounting database", accounted, timeout=60)
    assert info.startswith(f"{pair}|") and "gres/gpu=1" in info and "cpu=2" in info


def test_course_jupyter_prints_the_tunnel(provisioned_lab: Path, pushed_image: str) -> None:
    """The image's own Jupyter Lab (course-run; the student-jobs module checks its token):
    the tool submits, waits for the URL in the job's log, and prints the tunnel and the
    tokened URL."""
    pair, members = pairs_with_members()[0]
    user = members[1]
    r = as_student(user, "cd ~ && course-jupyter -c 1 -t 00:10:00")
    try:
        assert "ssh -N -L" in r.stdout and f"{user}@ctl" in r.stdout, r.stdout + r.stderr
        assert re.search(r"http://localhost:\d+/lab\?token=[0-9a-f]{32,}", r.stdout)
    finally:
        docker_exec("ctl", "scancel", "-u", user)
        as_student(user, "rm -f ~/.course-jupyter-*.log")


def test_a_student_who_leaves_loses_the_association_not_the_history(
        provisioned_lab: Path) -> None:
    _pair, members = pairs_with_members()[1]
    user = members[0]  # ran a job in the controller-restart test
    assert user in docker_exec("ctl", "sacct", "-n", "-X", "-P", "-a", "-o", "user",
                               "-S", "2000-01-01")
    state = (provisioned_lab / "state" / "accounts.json").read_text()
    sid = next(k for k, r in json.loads(state)["students"].items()
               if r["username"] == user)
    roster = provisioned_lab / "roster.csv"
    rows = list(csv.DictReader(io.StringIO(roster.read_text("utf-8"))))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(r for r in rows if r["student_id"] != sid)
    roster.write_text(buf.getvalue(), "utf-8")
    ops(provisioned_lab, "-y", "accounts", "sync")
    assert docker_exec("ctl", "sacctmgr", "-nP", "show", "assoc", "where", f"user={user}",
                       "format=account").strip() == ""
    assert user in docker_exec("ctl", "sacct", "-n", "-X", "-P", "-a", "-o", "user",
                               "-S", "2000-01-01")  # job history kept
    r = as_student(user, "sbatch --wrap true", check=False)
    assert r.returncode != 0  # locked out of Slurm as well
    ops(provisioned_lab, "verify", "slurm")
