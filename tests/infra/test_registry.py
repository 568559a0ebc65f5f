"""The course image registry (role `registry`): up, TLS only, a password for everything."""

from __future__ import annotations

import pytest
import requests

from ops.images import registry as reg
from ops.images import spec as spec_mod
from tests.infra.conftest import ops_inventory


@pytest.fixture(scope="module")
def registry(pytestconfig: pytest.Config) -> reg.Registry:
    return reg.from_inventory(ops_inventory(pytestconfig), spec_mod.load().repository)


@pytest.fixture(scope="module")
def port(registry: reg.Registry) -> str:
    return registry.address.rsplit(":", 1)[1]


def test_registry_active_and_enabled(host) -> None:  # noqa: ANN001
    service = host.service("docker-registry")
    assert service.is_running and service.is_enabled


def test_registry_listens(host, port) -> None:  # noqa: ANN001
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening or \
        host.socket(f"tcp://:::{port}").is_listening


def test_registry_tls_verifies_and_anonymous_is_refused(registry) -> None:  # noqa: ANN001
    """By the name the servers use (or the lab's loopback port), with the inventory's CA."""
    r = requests.get(registry.url(""), timeout=10,
                     verify=str(registry.ca) if registry.ca else True)
    assert r.status_code == 401


def test_registry_accepts_the_course_ops_user(registry) -> None:  # noqa: ANN001
    r = requests.get(registry.url(""), timeout=10, auth=registry.require_auth(),
                     verify=str(registry.ca) if registry.ca else True)
    assert r.status_code == 200


def test_registry_refuses_plain_http(host, port) -> None:  # noqa: ANN001
    r = host.run("curl -sS -o /dev/null -w '%%{http_code}' http://localhost:%s/v2/", port)
    assert r.stdout.strip() == "400"  # "Client sent an HTTP request to an HTTPS server"


def test_registry_htpasswd_has_only_bcrypt_hashes(host, registry) -> None:  # noqa: ANN001
    htpasswd = host.file("/etc/docker/registry/htpasswd")
    assert htpasswd.mode & 0o007 == 0
    lines = host.check_output("cat /etc/docker/registry/htpasswd").splitlines()
    assert [ln.split(":", 1)[0] for ln in lines] == [registry.user]
    assert all(ln.split(":", 1)[1].startswith(("$2a$", "$2b$", "$2y$")) for ln in lines)


def test_registry_key_is_private(host) -> None:  # noqa: ANN001
    key = host.file("/etc/docker/registry/tls/server.key")
    assert key.user == "root" and key.group == "docker-registry"
    assert key.mode & 0o037 == 0
