"""The course image on the GPU servers (role `course_image`): the tags pushed last.

What "pushed last" means comes from ``--ops-inventory``'s state/images.json; every GPU
server must hold each of those tags, and the image under it must be the pushed digest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.images import registry as reg
from ops.images import spec as spec_mod
from tests.infra.conftest import ops_inventory


def _wanted(config: pytest.Config) -> list[tuple[str, str, str]]:
    inventory = Path(config.getoption("--ops-inventory"))
    state = reg.load_state(inventory)
    if not state:
        return []
    registry = reg.from_inventory(ops_inventory(config), spec_mod.load().repository)
    return [(v, registry.server_ref(s["tag"]), s.get("digest", "")) for v, s in
            sorted(state.items())]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "wanted" in metafunc.fixturenames:
        wanted = _wanted(metafunc.config)
        metafunc.parametrize("wanted", wanted or [pytest.param(
            None, marks=pytest.mark.skip(reason="no course image pushed yet"))],
            ids=[w[0] for w in wanted] or ["none"])


def test_the_course_image_is_on_the_server(host, wanted) -> None:  # noqa: ANN001
    _, ref, _ = wanted
    assert host.run("docker image inspect %s", ref).rc == 0, f"{ref} is not pulled"


def test_it_is_the_pushed_digest(host, wanted) -> None:  # noqa: ANN001
    _, ref, digest = wanted
    inspect = host.run("docker image inspect %s", ref)
    assert inspect.rc == 0, f"{ref} is not pulled"
    repo_digests = json.loads(inspect.stdout)[0]["RepoDigests"]
    assert any(d.endswith(f"@{digest}") for d in repo_digests), repo_digests


def test_the_docker_engine_trusts_the_registry_ca(host, wanted) -> None:  # noqa: ANN001
    _, ref, _ = wanted
    address = ref.split("/", 1)[0]
    assert host.file(f"/etc/docker/certs.d/{address}/ca.crt").is_file
