"""What the GPU server roles leave behind: driver configuration, CUDA paths, the container
runtime. Package and configuration checks run everywhere; GPU checks skip where the
inventory expects no GPU and fail where it expects some and finds none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.infra.conftest import ops_inventory
from tests.infra.test_gpu import has_gpu, require_gpu


def test_nouveau_is_blacklisted(host) -> None:  # noqa: ANN001
    conf = host.file("/etc/modprobe.d/blacklist-nouveau.conf")
    assert conf.exists and "blacklist nouveau" in conf.content_string


def test_persistence_daemon(host, expected_gpus) -> None:  # noqa: ANN001
    """Enabled and running where a GPU is; neither where none is (it fails without a
    driver, and a failed unit is a degraded host)."""
    svc = host.service("nvidia-persistenced")
    if not has_gpu(host) and expected_gpus == 0:
        assert not svc.is_enabled and not svc.is_running
        return
    require_gpu(host, expected_gpus)
    assert svc.is_enabled and svc.is_running


def test_cuda_paths_for_every_login(host, host_vars) -> None:  # noqa: ANN001
    profile = host.file("/etc/profile.d/cuda.sh").content_string
    assert f"/usr/local/cuda-{host_vars['cuda_toolkit_version']}/bin" in profile


def test_docker_active_and_enabled(host) -> None:  # noqa: ANN001
    docker = host.service("docker")
    assert docker.is_running and docker.is_enabled
    assert host.socket("unix:///run/docker.sock").is_listening


def test_no_student_in_the_docker_group(host, expected) -> None:  # noqa: ANN001
    members = set(host.group("docker").members) if host.group("docker").exists else set()
    students = {r.username for r in expected.state.students.values()}
    assert not members & students


def test_nvidia_runtime_and_cdi(host, expected_gpus) -> None:  # noqa: ANN001
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    if not has_gpu(host) and expected_gpus == 0:
        assert "nvidia" not in daemon.get("runtimes", {})
        return
    require_gpu(host, expected_gpus)
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert host.file("/etc/cdi/nvidia.yaml").exists
    assert "nvidia.com/gpu=all" in host.check_output("nvidia-ctk cdi list")


def _cuda_image(config: pytest.Config) -> str | None:
    """The pushed CUDA variant of the course image (state/images.json), as servers pull it."""
    from ops.images import registry as reg
    from ops.images import spec as spec_mod

    inventory = Path(config.getoption("--ops-inventory"))
    spec = spec_mod.load()
    pushed = {v: s for v, s in reg.load_state(inventory).items()
              if v in spec.variants and spec.variants[v].cuda}
    if not pushed:
        return None
    registry = reg.from_inventory(ops_inventory(config), spec.repository)
    return registry.server_ref(pushed[sorted(pushed)[0]]["tag"])


def test_a_container_sees_the_gpu(host, expected_gpus, pytestconfig) -> None:  # noqa: ANN001
    require_gpu(host, expected_gpus)
    image = _cuda_image(pytestconfig)
    if image is None:
        pytest.skip("no CUDA variant of the course image is pushed (state/images.json)")
    assert host.run("docker image inspect %s", image).rc == 0, f"{image} is not pulled here"
    r = host.run("docker run --rm --device nvidia.com/gpu=all %s nvidia-smi -L", image)
    assert r.rc == 0 and "GPU 0:" in r.stdout, r.stderr
