"""The foundation end to end on a real lab, in order, through the real CLI.

lab up (twice) -> a bad roster changes nothing -> sync -> verify -> sync again: no change
-> drift is caught by verify and repaired by sync -> roster edits planned exactly -> sync ->
verify -> an interrupted sync converges -> offboard with a checked archive -> lab down
leaves nothing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ops import REPO_ROOT
from ops.sample import make_class
from tests.lab.conftest import LAB_NAME, docker_exec, ops, verify_with_faults

pytestmark = pytest.mark.lab
NODES = ("ctl", "gpu1", "gpu2")


def container_ids() -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=course-ops.lab={LAB_NAME}"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(out.split())


def read_roster(inv: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((inv / "roster.csv").read_text("utf-8"))))


def write_roster(inv: Path, rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    (inv / "roster.csv").write_text(buf.getvalue(), "utf-8")


def usernames(inv: Path) -> dict[str, str]:
    doc = json.loads(ops(inv, "roster", "check", str(inv / "roster.csv"),
                         "--format", "json").stdout)
    return {s["student_id"]: s["username"] for s in doc["students"]}


def plan(inv: Path) -> set[tuple[str, str, str, str]]:
    doc = json.loads(ops(inv, "accounts", "plan", "--format", "json").stdout)
    assert doc["conflicts"] == []
    return {(c["host"], c["action"], c["kind"], c["subject"]) for c in doc["changes"]}


def verify(inv: Path, junit: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return ops(inv, "verify", "accounts", "--junit", str(junit), check=check)


def test_lab_up_again_is_a_no_op(lab_inventory: Path) -> None:
    before, hosts_yml = container_ids(), (lab_inventory / "hosts.yml").read_text()
    assert len(before) == 3
    mtime = (lab_inventory / "hosts.yml").stat().st_mtime_ns
    t0 = time.monotonic()
    ops(lab_inventory, "lab", "up")
    assert time.monotonic() - t0 < 30
    assert container_ids() == before
    assert (lab_inventory / "hosts.yml").read_text() == hosts_yml
    assert (lab_inventory / "hosts.yml").stat().st_mtime_ns == mtime
    key = lab_inventory / ".lab" / "id_ed25519"
    assert key.stat().st_mode & 0o777 == 0o600
    status = ops(lab_inventory, "lab", "status").stdout
    for node in NODES:
        assert node in status


def test_bad_roster_changes_nothing(lab_inventory: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("student_id,first_name,last_name,email,pair\n1,A,B,a@u.il,1\n"
                   "2,C,D,not-an-email,1\n")
    passwd = {n: docker_exec(n, "cat", "/etc/passwd", "/etc/group") for n in NODES}
    p = ops(lab_inventory, "-y", "accounts", "sync", "--roster", str(bad), check=False)
    assert p.returncode == 3
    assert f"{bad}:3: malformed email 'not-an-email'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert {n: docker_exec(n, "cat", "/etc/passwd", "/etc/group") for n in NODES} == passwd
    assert not (lab_inventory / "state" / "accounts.json").exists()


def test_sync_provisions_every_student_and_verify_passes(lab_inventory: Path,
                                                         tmp_path: Path) -> None:
    p = ops(lab_inventory, "-y", "accounts", "sync")
    assert "applied" in p.stdout
    names = usernames(lab_inventory)
    assert len(names) == 40
    for node in NODES:
        passwd = docker_exec(node, "getent", "passwd")
        assert all(f"\n{u}:" in "\n" + passwd for u in names.values()), node
    junit = tmp_path / "accounts.xml"
    p = verify(lab_inventory, junit)
    suite = ET.parse(junit).getroot()
    cases = list(suite.iter("testcase"))
    assert len(cases) > 40 * 3 * 5
    assert not [c for c in cases if c.find("failure") is not None]
    for node in NODES:
        assert node in p.stdout  # the per-host summary


def test_second_sync_reports_no_change(lab_inventory: Path) -> None:
    assert plan(lab_inventory) == set()
    p = ops(lab_inventory, "-y", "accounts", "sync")
    assert "no change" in p.stdout


def test_verify_catches_drift_and_sync_repairs_it(lab_inventory: Path, tmp_path: Path) -> None:
    names = sorted(usernames(lab_inventory).values())
    pair = sorted(line.split(":")[0] for line in docker_exec("ctl", "getent", "group")
                  .splitlines() if line.startswith("pair"))[0]
    keys = f"/home/{names[2]}/.ssh/authorized_keys"
    docker_exec("gpu1", "usermod", "-aG", "sudo", names[0])
    docker_exec("ctl", "chmod", "0755", f"/home/{names[1]}")
    docker_exec("ctl", "sh", "-c", f"echo 'ssh-ed25519 AAAAC3Nza intruder' >> {keys}")
    docker_exec("ctl", "chmod", "0777", f"/home/pairs/{pair}")
    docker_exec("ctl", "usermod", "-s", "/bin/sh", names[3])
    failed = verify_with_faults(lab_inventory, "accounts", tmp_path / "drift.xml")
    # each fault fails the check that looks at it, on the hosts that hold it: an account
    # is per host; homes and pair directories are on the lab's shared /home (every node)
    for check, subject, hosts in (("test_student_never_privileged", names[0], {"gpu1"}),
                                  ("test_student_account", names[3], {"ctl"}),
                                  ("test_home_is_private", names[1], set(NODES)),
                                  ("test_authorized_keys", names[2], set(NODES)),
                                  ("test_pair_dir", pair, set(NODES))):
        hits = {f.rsplit("://", 1)[1].rstrip("]") for f in failed
                if f.startswith(f"{check}[{subject}-")}
        assert hits == hosts, (check, subject, hits, sorted(failed))
    assert plan(lab_inventory) == {("gpu1", "change", "user", names[0]),
                                   ("ctl", "change", "dir", f"/home/{names[1]}"),
                                   ("ctl", "change", "keys", keys),
                                   ("ctl", "change", "dir", f"/home/pairs/{pair}"),
                                   ("ctl", "change", "user", names[3])}
    ops(lab_inventory, "-y", "accounts", "sync")
    verify(lab_inventory, tmp_path / "repaired.xml")


def test_roster_edits_are_planned_exactly(lab_inventory: Path, tmp_path: Path) -> None:
    rows = read_roster(lab_inventory)
    before = usernames(lab_inventory)
    by_pair: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_pair.setdefault(r["pair"], []).append(r)
    pairs = [p for p, m in by_pair.items() if len(m) == 2]
    split, drop = by_pair[pairs[0]][1], by_pair[pairs[1]][1]
    split["pair"] = "split-off"  # a pair splits: one partner becomes a single
    rows.remove(drop)  # a student drops the course
    joiner = dict(rows[0], student_id="399999999", first_name="Zoë", last_name="Newman",
                  email="zn@campus.example.ac.il", pair="late-joiner", ssh_public_key="")
    rows.append(joiner)  # a student joins
    write_roster(lab_inventory, rows)
    after = usernames(lab_inventory)
    assert {k: v for k, v in after.items() if k in before} == \
        {k: v for k, v in before.items() if k in after}  # nobody renamed
    groups = {s["student_id"]: s["pair"] for s in json.loads(
        ops(lab_inventory, "roster", "check", str(lab_inventory / "roster.csv"),
            "--format", "json").stdout)["students"]}
    new_single, joiner_group = groups[split["student_id"]], groups["399999999"]
    u_split, u_drop, u_join = before[split["student_id"]], before[drop["student_id"]], \
        after["399999999"]
    want = set()
    for h in NODES:
        want |= {(h, "add", "group", new_single), (h, "add", "group", joiner_group),
                 (h, "add", "group", u_join), (h, "add", "user", u_join),
                 (h, "change", "user", u_split), (h, "lock", "user", u_drop),
                 (h, "add", "subid", u_join)}  # the leaver keeps hers: locked, not gone
    want |= {("ctl", "add", "dir", f"/home/pairs/{new_single}"),
             ("ctl", "add", "dir", f"/home/pairs/{joiner_group}"),
             ("ctl", "add", "dir", f"/home/{u_join}"),
             ("ctl", "add", "keys", f"/home/{u_join}/.ssh/authorized_keys")}
    assert plan(lab_inventory) == want
    ops(lab_inventory, "-y", "accounts", "sync")
    assert plan(lab_inventory) == set()
    verify(lab_inventory, tmp_path / "edited.xml")
    junit = ET.parse(tmp_path / "edited.xml").getroot()
    locked = [c for c in junit.iter("testcase") if "test_left_student_is_locked" in
              c.get("name", "") and u_drop in c.get("name", "")]
    assert len(locked) == 3 and all(c.find("failure") is None and c.find("skipped") is None
                                    for c in locked)


def test_interrupted_sync_converges(lab_inventory: Path, tmp_path: Path) -> None:
    rows = read_roster(lab_inventory)
    extra = list(csv.DictReader(io.StringIO(make_class(30, seed=7))))
    for r in extra:
        r["student_id"] = "4" + r["student_id"][1:]
        r["pair"] = "x" + r["pair"]
    write_roster(lab_inventory, rows + extra)
    # small batches, so that the kill lands between two of them
    env = {**os.environ, "OPS_ACCOUNTS_CHUNK_BYTES": "1500"}
    proc = subprocess.Popen([sys.executable, "-m", "ops", "-i", str(lab_inventory), "-y",
                             "accounts", "sync"], cwd=REPO_ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env=env)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if "applying" in line or time.monotonic() > deadline:
            break
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert plan(lab_inventory), "the kill came too late to interrupt anything"
    ops(lab_inventory, "-y", "accounts", "sync")
    assert plan(lab_inventory) == set()
    verify(lab_inventory, tmp_path / "resumed.xml")


def test_offboard_archives_checks_then_removes(lab_inventory: Path, tmp_path: Path) -> None:
    state = json.loads((lab_inventory / "state" / "accounts.json").read_text())
    left = [r["username"] for r in state["students"].values() if r["status"] == "left"]
    assert len(left) == 1
    user = left[0]
    docker_exec("ctl", "sh", "-c", f"mkdir -p /home/{user}/hw1 && echo 'loss=0.12' > "
                                   f"/home/{user}/hw1/results.txt")
    archive = tmp_path / "archive"
    ops(lab_inventory, "-y", "accounts", "offboard", "--archive", str(archive))
    assert archive.stat().st_mode & 0o777 == 0o700
    tgz, manifest = archive / f"{user}.tar.gz", archive / f"{user}.sha256"
    assert tgz.stat().st_mode & 0o777 == 0o600
    with tarfile.open(tgz) as tar:
        members = tar.getnames()
        fh = tar.extractfile(f"{user}/hw1/results.txt")
        assert fh is not None and fh.read() == b"loss=0.12\n"
    listed = [rec.split("  ", 1)[1] for rec in manifest.read_text().split("\0") if rec]
    assert f"{user}/hw1/results.txt" in listed and set(listed) <= set(members)
    assert tgz.name in (archive / "SHA256SUMS").read_text()
    for node in NODES:
        assert user not in docker_exec(node, "cut", "-d:", "-f1", "/etc/passwd").split()
    assert docker_exec("ctl", "sh", "-c", f"test -e /home/{user} && echo yes || echo no") \
        .strip() == "no"
    verify(lab_inventory, tmp_path / "offboarded.xml")


OPS_USER = "opsadmin"


def as_ops_user(lab_inventory: Path, tmp_path: Path) -> Path:
    """A copy of the lab's inventory that reaches every node as a non-root ops user with
    passwordless sudo (the production shape of inventory/example), made on every node."""
    pub = (lab_inventory / ".lab" / "id_ed25519.pub").read_text().strip()
    for node in NODES:
        docker_exec(node, "sh", "-c", f"""set -e
id -u {OPS_USER} >/dev/null 2>&1 || useradd -u 1900 -m -s /bin/bash {OPS_USER}
echo '{OPS_USER} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{OPS_USER}
chmod 0440 /etc/sudoers.d/{OPS_USER}
install -d -m 0700 -o {OPS_USER} -g {OPS_USER} /home/{OPS_USER}/.ssh
printf '%s\n' '{pub}' > /home/{OPS_USER}/.ssh/authorized_keys
chown {OPS_USER}:{OPS_USER} /home/{OPS_USER}/.ssh/authorized_keys""")
    inv = tmp_path / "as-ops-user"
    shutil.copytree(lab_inventory, inv, symlinks=True)
    hosts = (inv / "hosts.yml").read_text()
    assert "ansible_user: root" in hosts
    (inv / "hosts.yml").write_text(hosts.replace("ansible_user: root",
                                                 f"ansible_user: {OPS_USER}"))
    return inv


def test_offboarding_as_a_sudo_user_never_lets_a_student_read_an_archive(
        lab_inventory: Path, tmp_path: Path) -> None:
    """An ops user with sudo fetches a big home; meanwhile another student watches every
    place they can read (inotify and rescans) for archive bytes: nothing, at any moment."""
    inv = as_ops_user(lab_inventory, tmp_path)
    ops(inv, "-y", "accounts", "sync")  # (a no-op after the tests above) through sudo
    rows = read_roster(inv)
    names = usernames(inv)
    leaver, watcher = names[rows[0]["student_id"]], names[rows[-1]["student_id"]]
    write_roster(inv, rows[1:])
    ops(inv, "-y", "accounts", "sync")  # through sudo: the leaver is locked
    docker_exec("ctl", "sh", "-c", f"head -c 160M /dev/urandom > /home/{leaver}/checkpoint.pt"
                                   f" && chown {leaver} /home/{leaver}/checkpoint.pt")
    subprocess.run(["docker", "cp", str(Path(__file__).with_name("leak_watcher.py")),
                    f"{LAB_NAME}-ctl:/usr/local/lib/leak_watcher.py"], check=True)
    docker_exec("ctl", "rm", "-f", "/tmp/.course-ops-leak-watcher-stop")
    watch = subprocess.Popen(["docker", "exec", "-u", watcher, f"{LAB_NAME}-ctl", "python3",
                              "/usr/local/lib/leak_watcher.py", "600", f"/home/{OPS_USER}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        archive = tmp_path / "archive"
        started = time.monotonic()
        ops(inv, "-y", "accounts", "offboard", "--archive", str(archive))
        seconds = time.monotonic() - started
    finally:
        docker_exec("ctl", "touch", "/tmp/.course-ops-leak-watcher-stop")
        report, errors = watch.communicate(timeout=60)
    seen = json.loads(report or "{}")
    assert "/tmp" in seen.get("watched", []), errors
    assert seen["readable"] == [], f"a student could read archive bytes: {seen['readable']}"
    assert seconds > 3, f"the fetch took {seconds:.1f} s: too short to prove anything"
    assert (archive / f"{leaver}.tar.gz").stat().st_size > 150 << 20
    assert leaver not in docker_exec("ctl", "cut", "-d:", "-f1", "/etc/passwd").split()
    assert docker_exec("ctl", "sh", "-c", "ls -A /var/lib/course-ops/offboard").strip() == ""
    verify(inv, tmp_path / "after.xml")


def test_lab_down_leaves_nothing(lab_inventory: Path) -> None:
    ops(lab_inventory, "lab", "down")
    label = f"label=course-ops.lab={LAB_NAME}"
    for what in (["ps", "-aq"], ["volume", "ls", "-q"], ["network", "ls", "-q"]):
        out = subprocess.run(["docker", *what, "--filter", label], capture_output=True,
                             text=True, check=True).stdout
        assert out.strip() == "", what
    for leftover in ("hosts.yml", ".lab", "state"):
        assert not (lab_inventory / leftover).exists(), leftover


def test_no_engine_gives_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    p = subprocess.run([sys.executable, "-m", "ops", "-i", str(REPO_ROOT / "inventory" / "lab"),
                        "lab", "status"], capture_output=True, text=True, env=env,
                       cwd=REPO_ROOT)
    assert p.returncode == 4
    assert "no Docker engine answers" in p.stderr
    assert "Traceback" not in p.stderr
