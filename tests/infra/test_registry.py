"""The course image registry (role `registry`): up, TLS only, its key private."""

from __future__ import annotations

import pytest

PORT_VAR = "registry_port"


@pytest.fixture(scope="module")
def port(inventory_vars) -> int:  # noqa: ANN001
    return int(inventory_vars.get(PORT_VAR, 5000))


def test_registry_active_and_enabled(host) -> None:  # noqa: ANN001
    service = host.service("docker-registry")
    assert service.is_running and service.is_enabled


def test_registry_listens(host, port) -> None:  # noqa: ANN001
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening or \
        host.socket(f"tcp://:::{port}").is_listening


def test_registry_answers_over_tls_and_wants_a_password(host, port) -> None:  # noqa: ANN001
    r = host.run("curl -sS -o /dev/null -w '%%{http_code}' --cacert "
                 "/etc/docker/registry/tls/server.crt https://localhost:%s/v2/", port)
    assert r.stdout.strip() == "401", r.stderr  # TLS verified; anonymous requests refused


def test_registry_has_its_user(host, inventory_vars) -> None:  # noqa: ANN001
    htpasswd = host.file("/etc/docker/registry/htpasswd")
    assert htpasswd.mode & 0o007 == 0
    user = str(inventory_vars.get("registry_user", "course-ops"))
    assert host.run("grep -c '^%s:\\$2[aby]\\$' /etc/docker/registry/htpasswd",
                    user).stdout.strip() == "1"


def test_registry_refuses_plain_http(host, port) -> None:  # noqa: ANN001
    r = host.run("curl -sS -o /dev/null -w '%%{http_code}' http://localhost:%s/v2/", port)
    assert r.stdout.strip() != "200"


def test_registry_key_is_private(host) -> None:  # noqa: ANN001
    key = host.file("/etc/docker/registry/tls/server.key")
    assert key.user == "root" and key.group == "docker-registry"
    assert key.mode & 0o077 == 0o040 or key.mode & 0o077 == 0
