"""Students' rootless containers (role student_containers, Slurm's confinement and
pam_slurm_adopt): `ops verify student_env` on the GPU servers and the login node.

What the hosts must hold comes from ``--ops-inventory``: the pushed tags and the default
(state/images.json), the students (state/accounts.json).

The GPU check (a job's container sees exactly the GPUs it asked for) has not run on a GPU
yet: no machine here has both a GPU and Podman; it skips where the host has no GPU.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from ops.images import registry as reg
from ops.images import spec as spec_mod
from tests.infra.conftest import on_every_host_at_once, ops_inventory
from tests.infra.test_gpu import NO_GPU, has_gpu

STORE = "/var/lib/course-containers/store"
CONFIG = "/etc/course-ops/student-containers.json"
MIN_SUBORDINATE = 65536


def _inventory(config: pytest.Config) -> Path:
    return Path(config.getoption("--ops-inventory"))


def is_gpu_server(host) -> bool:  # noqa: ANN001
    return host.file("/etc/slurm/gres.conf").exists


def gpu_server_only(host) -> None:  # noqa: ANN001
    if not is_gpu_server(host):
        pytest.skip("the login node runs no containers (jobs run on the GPU servers)")


@pytest.fixture(scope="session")
def store(pytestconfig: pytest.Config) -> dict:
    """The store's images and the default tag, as `ops images pull` passes them."""
    inv = ops_inventory(pytestconfig)
    kept, default = reg.store_images(inv)
    registry = reg.from_inventory(inv, spec_mod.load().repository)
    return {"images": kept, "default": default,
            "repository": f"{registry.address}/{spec_mod.load().repository}"}


@pytest.fixture(scope="session")
def pushed(store: dict) -> dict:
    if not store["default"]:
        pytest.skip("no course image pushed yet")
    return store


@pytest.mark.parametrize("package", ["podman", "crun", "uidmap", "fuse-overlayfs"])
def test_rootless_podman_is_installed(host, package: str) -> None:  # noqa: ANN001
    assert host.package(package).is_installed


def test_newuidmap_may_map_subordinate_ids(host) -> None:  # noqa: ANN001
    f = host.file("/usr/bin/newuidmap")
    caps = host.run("getcap /usr/bin/newuidmap").stdout
    assert f.exists and (f.mode & 0o4000 or "cap_setuid" in caps)


def test_containers_stay_inside_their_job(host) -> None:  # noqa: ANN001
    conf = host.file("/etc/containers/containers.conf").content_string
    assert 'cgroup_manager = "cgroupfs"' in conf
    assert 'cgroups = "disabled"' in conf
    assert 'runtime = "crun"' in conf


def test_container_storage_is_never_on_the_home(host) -> None:  # noqa: ANN001
    storage = host.file("/etc/containers/storage.conf").content_string
    line = next(x for x in storage.splitlines() if x.startswith("rootless_storage_path"))
    path = line.split("=", 1)[1].strip().strip('"')
    assert not path.startswith(("/home", "$HOME")), line
    cfg = json.loads(host.file(CONFIG).content_string)
    for key in ("store", "jobs_dir", "runtime_dir"):
        assert not cfg[key].startswith("/home"), key
    assert cfg["mount_program"].endswith("fuse-overlayfs")


def test_course_run_is_installed(host) -> None:  # noqa: ANN001
    run = host.file("/usr/local/bin/course-run")
    assert run.is_file and run.mode & 0o111 and run.user == "root"
    assert host.file("/usr/local/lib/course-ops/course_gpus.py").is_file


def test_the_node_names_the_default_tag(host, pushed: dict) -> None:  # noqa: ANN001
    text = host.file("/etc/course-ops/course-image").content_string
    assert f"tag={pushed['default']['tag']}\n" in text


def test_the_shared_store_holds_every_tag_by_its_pushed_digest(host, pushed: dict) -> None:  # noqa: ANN001,E501
    gpu_server_only(host)
    repo = pushed["repository"]
    for image in pushed["images"]:
        by_digest = host.run("podman --root %s image inspect --format '{{.Id}}' %s", STORE,
                             f"{repo}@{image['digest']}")
        assert by_digest.rc == 0, f"{image['tag']}: {image['digest']} is not in {STORE}"
        by_tag = host.run("podman --root %s image inspect --format '{{.Id}}' %s", STORE,
                          f"{repo}:{image['tag']}")
        assert by_tag.stdout == by_digest.stdout, f"{image['tag']} is not that digest"


def test_every_student_can_read_the_store(host) -> None:  # noqa: ANN001
    gpu_server_only(host)
    unreadable = host.run("find %s -path %s -prune -o \\( ! -perm -o+r -o -type d ! -perm "
                          "-o+x \\) -print", STORE, f"{STORE}/overlay/*/diff")
    assert unreadable.rc == 0 and unreadable.stdout.strip() == ""


def _ranges(host, path: str) -> list[tuple[str, int, int]]:  # noqa: ANN001
    out = []
    for line in host.file(path).content_string.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


@pytest.fixture(scope="module")
def subid_ranges(host) -> dict[str, list[tuple[str, int, int]]]:  # noqa: ANN001
    """/etc/subuid and /etc/subgid, read once per host."""
    return {path: _ranges(host, path) for path in ("/etc/subuid", "/etc/subgid")}


@pytest.mark.parametrize("path", ["/etc/subuid", "/etc/subgid"])
def test_every_student_has_one_subordinate_range(subid_ranges, student: str,  # noqa: ANN001
                                                 expected, path: str) -> None:  # noqa: ANN001
    ranges = subid_ranges[path]
    mine = [r for r in ranges if r[0] == student]
    assert len(mine) == 1, f"{student} has {len(mine)} ranges in {path}"
    _, start, count = mine[0]
    assert count >= MIN_SUBORDINATE
    recorded = expected.record(student).subid  # state/accounts.json
    assert recorded and start == recorded, f"{student}: {start}, the state file says {recorded}"
    low, high = expected.cfg.subid_range
    assert low <= start and start + count - 1 <= high
    for other, s, c in ranges:
        if other != student:
            assert start + count <= s or s + c <= start, f"{student} overlaps {other}"
    uid_lo, uid_hi = expected.cfg.uid_range
    assert start > uid_hi or start + count <= uid_lo, "overlaps the students' UIDs"


@pytest.fixture(scope="module")
def container_start(host, expected, pushed: dict, request: pytest.FixtureRequest):  # noqa: ANN001, ANN201
    """A student's one-core job on this GPU server runs a command in the course image
    (every GPU server's at once: each waits on its own node); None on the login node."""
    student = expected.students("active")[0]
    command = ("cd /tmp && srun -N1 -w \"$(hostname -s)\" -c 1 --mem=500M -t 2 -J verify "
               "course-run -- sh -c 'id -u; sed -n \"s/^ *.variant.: *.\\([a-z]*\\).*/\\1/p\" "
               "/opt/course-ops/image.json'")
    return on_every_host_at_once(request, host, lambda target: (
        target.run("runuser -u %s -- sh -c %s", student, command)
        if is_gpu_server(target) else None))


def test_a_container_starts_as_a_student_in_a_job(host, expected, pushed: dict,  # noqa: ANN001
                                                  container_start) -> None:  # noqa: ANN001
    gpu_server_only(host)
    student = expected.students("active")[0]
    uid = host.user(student).uid
    r = container_start
    assert r.rc == 0, r.stderr
    assert r.stdout.split()[:2] == [str(uid), pushed["default"]["variant"]], r.stdout


def test_a_jobs_container_sees_exactly_its_gpus(host, expected, pushed: dict) -> None:  # noqa: ANN001,E501
    gpu_server_only(host)
    if not has_gpu(host):
        pytest.skip(NO_GPU)
    student = expected.students("active")[0]
    node = host.check_output("hostname -s")
    r = host.run("runuser -u %s -- sh -c %s", student, shlex.quote(
        f"cd /tmp && srun -N1 -w {node} -c 1 --gres=gpu:1 -t 2 course-run -- nvidia-smi -L"))
    assert r.rc == 0, r.stderr
    assert len([x for x in r.stdout.splitlines() if x.startswith("GPU ")]) == 1, r.stdout


def test_pam_slurm_adopt_guards_ssh(host) -> None:  # noqa: ANN001
    gpu_server_only(host)
    lines = [x.split("#")[0].split() for x in host.file("/etc/pam.d/sshd")
             .content_string.splitlines()]
    lines = [x for x in lines if x]
    modules = [x[2] if x[0] == "account" and len(x) > 2 else " ".join(x) for x in lines]
    adopt = next(i for i, x in enumerate(lines) if "pam_slurm_adopt.so" in x)
    assert "action_adopt_failure=deny" in lines[adopt]
    assert lines[adopt][0] == "account"
    access = next(i for i, x in enumerate(lines) if "pam_access.so" in x)
    assert access < adopt, modules
    includes = [x[1] for x in lines if x[0] == "@include"]
    assert "common-session" not in includes
    for name in includes:
        assert "pam_systemd" not in host.file(f"/etc/pam.d/{name}").content_string, name


def test_each_job_gets_its_own_container_directories(host) -> None:  # noqa: ANN001
    gpu_server_only(host)
    for kind in ("prolog", "epilog"):
        script = host.file(f"/etc/slurm/{kind}.d/50-course-containers")
        assert script.is_file and script.mode & 0o100
        assert f"/etc/slurm/{kind}.sh" in host.file("/etc/slurm/slurm.conf").content_string


def test_slurm_confines_jobs_with_cgroups(host) -> None:  # noqa: ANN001
    conf = host.file("/etc/slurm/slurm.conf").content_string
    assert "ProctrackType=proctrack/cgroup" in conf
    assert "task/cgroup" in conf and "PrologFlags=Contain" in conf
    assert "DefMemPerCPU=" in conf
    if is_gpu_server(host):
        cgroup = host.file("/etc/slurm/cgroup.conf").content_string
        for key in ("ConstrainCores", "ConstrainRAMSpace", "ConstrainDevices"):
            assert f"{key}=yes" in cgroup
