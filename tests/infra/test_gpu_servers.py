"""What the GPU server roles leave behind: driver configuration, CUDA paths, the container
runtime. Package and configuration checks run everywhere; GPU checks skip without a GPU."""

from __future__ import annotations

import json

import pytest

from tests.infra.test_gpu import NO_GPU, has_gpu


def test_nouveau_is_blacklisted(host) -> None:  # noqa: ANN001
    conf = host.file("/etc/modprobe.d/blacklist-nouveau.conf")
    assert conf.exists and "blacklist nouveau" in conf.content_string


def test_persistence_daemon(host) -> None:  # noqa: ANN001
    svc = host.service("nvidia-persistenced")
    assert svc.is_enabled
    if not has_gpu(host):
        pytest.skip(NO_GPU)
    assert svc.is_running


def test_cuda_paths_for_every_login(host, inventory_vars) -> None:  # noqa: ANN001
    profile = host.file("/etc/profile.d/cuda.sh").content_string
    assert f"/usr/local/cuda-{inventory_vars['cuda_toolkit_version']}/bin" in profile


def test_docker_active_and_enabled(host) -> None:  # noqa: ANN001
    docker = host.service("docker")
    assert docker.is_running and docker.is_enabled
    assert host.socket("unix:///run/docker.sock").is_listening


def test_no_student_in_the_docker_group(host, expected) -> None:  # noqa: ANN001
    members = set(host.group("docker").members) if host.group("docker").exists else set()
    students = {r.username for r in expected.state.students.values()}
    assert not members & students


def test_nvidia_runtime_and_cdi(host) -> None:  # noqa: ANN001
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    if not has_gpu(host):
        assert "nvidia" not in daemon.get("runtimes", {})
        pytest.skip(NO_GPU)
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert host.file("/etc/cdi/nvidia.yaml").exists
    assert "nvidia.com/gpu=all" in host.check_output("nvidia-ctk cdi list")


def test_a_container_sees_the_gpu(host, inventory_vars) -> None:  # noqa: ANN001
    if not has_gpu(host):
        pytest.skip(NO_GPU)
    image = inventory_vars.get("course_image")
    if not image or host.run("docker image inspect %s", image).rc != 0:
        pytest.skip("the course image is not on this host")
    r = host.run("docker run --rm --device nvidia.com/gpu=all %s nvidia-smi -L", image)
    assert r.rc == 0 and "GPU 0:" in r.stdout, r.stderr
