"""The course's JupyterHub (role jupyterhub, `ops verify hub`): services, where each part
listens, TLS by name, the proxy's routes, the culler, and a sudo rule exactly as narrow as
batchspawner needs."""

from __future__ import annotations

import json

import pytest
import requests

from ops import roles
from tests.infra.conftest import ops_inventory

CONFIG = "/etc/jupyterhub/jupyterhub_config.py"


def setting(host_vars: dict, key: str):  # noqa: ANN201
    return roles.setting(host_vars, "jupyterhub", key)


@pytest.fixture(scope="module")
def hub_user(host_vars) -> str:  # noqa: ANN001
    return str(setting(host_vars, "jupyterhub_user"))


@pytest.fixture(scope="module")
def hub_bind(host) -> str:  # noqa: ANN001
    line = host.check_output(f"sed -n 's/^c.JupyterHub.hub_bind_url = \"\\(.*\\)\"$/\\1/p' "
                             f"{CONFIG}")
    assert line.startswith("http://"), f"{CONFIG} names no hub_bind_url"
    return line


@pytest.mark.parametrize("unit", ["jupyterhub-proxy", "jupyterhub"])
def test_hub_and_proxy_run_as_their_own_units(host, unit: str, hub_user: str) -> None:  # noqa: ANN001
    svc = host.service(unit)
    assert svc.is_running and svc.is_enabled
    pid = host.check_output(f"systemctl show -p MainPID --value {unit}")
    assert host.check_output(f"ps -o user= -p {pid}") == hub_user  # never root


def test_the_hub_api_listens_on_the_cluster_network_only(host, hub_bind) -> None:  # noqa: ANN001
    address = hub_bind.split("//", 1)[1]
    ip, port = address.rsplit(":", 1)
    assert ip not in ("0.0.0.0", "127.0.0.1")
    assert host.socket(f"tcp://{ip}:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


@pytest.mark.parametrize("key", ["jupyterhub_proxy_port", "jupyterhub_proxy_api_port"])
def test_the_proxy_listens_on_loopback_only(host, host_vars, key: str) -> None:  # noqa: ANN001
    port = int(setting(host_vars, key))
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_the_proxy_routes_to_the_hub(host, host_vars, hub_bind) -> None:  # noqa: ANN001
    api = int(setting(host_vars, "jupyterhub_proxy_api_port"))
    out = host.check_output(
        "sh -c '. /etc/jupyterhub/proxy.env && curl -sSf -H \"Authorization: token "
        f"$CONFIGPROXY_AUTH_TOKEN\" http://127.0.0.1:{api}/api/routes'")
    routes = json.loads(out)
    assert routes.get("/", {}).get("target", "").rstrip("/") == hub_bind.rstrip("/")


def test_the_hub_answers_over_https_by_name(host, pytestconfig) -> None:  # noqa: ANN001
    """From this machine, as a student's browser: TLS verified, the login page, the hub's
    own security headers (not the website's, which would break JupyterLab)."""
    from ops import hub as hub_mod
    from ops.images import registry as reg

    inv = ops_inventory(pytestconfig)
    target = next((h for h in hub_mod.hub_hosts(inv) if h.name == host.backend.host), None)
    if target is None:
        pytest.skip("not the inventory's hub host")
    ca = target.vars.get("tls_ca_certificate")
    verify = str(reg._templated_path(str(ca), inv.dir)) if ca else True
    r = requests.get(hub_mod.hub_url(inv, target) + "login", timeout=15, verify=verify)
    assert r.status_code == 200 and "password" in r.text.lower()
    assert "frame-ancestors" in r.headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" not in r.headers.get("Content-Security-Policy", "")
    assert r.headers.get("Strict-Transport-Security")


def test_the_idle_culler_runs_under_the_hub(host, hub_user) -> None:  # noqa: ANN001
    procs = host.check_output(f"ps -o args= -u {hub_user}")
    assert "jupyterhub_idle_culler" in procs and "--timeout=" in procs


def test_the_sudo_rule_is_exactly_batchspawners(host, hub_user, expected) -> None:  # noqa: ANN001
    rules = host.check_output(f"sudo -l -U {hub_user}")
    may_run = rules.split("may run the following commands", 1)[-1]
    entries = [ln.strip() for ln in may_run.splitlines() if ln.strip().startswith("(")]
    runas = f"(%{expected.cfg.course_group}, %{expected.cfg.staff_group})"
    assert entries == [f"{runas} NOPASSWD: /usr/bin/sbatch, /usr/bin/squeue, "
                       "/usr/bin/scancel"]
    student = expected.students("active")[0]
    as_hub = f"runuser -u {hub_user} -- sudo -n"
    assert host.run(f"{as_hub} -u {student} /usr/bin/squeue -h -u {student}").rc == 0
    assert host.run(f"{as_hub} -u {student} /usr/bin/id").rc != 0  # no other command
    assert host.run(f"{as_hub} -u root /usr/bin/squeue -h").rc != 0  # never root
    assert host.run(f"{as_hub} -u {student} -E /usr/bin/squeue -h").rc != 0  # no SETENV


def test_shadow_is_readable_only_where_pam_is_the_authenticator(host, host_vars,  # noqa: ANN001
                                                                hub_user) -> None:
    pam = setting(host_vars, "jupyterhub_authenticator") == "pam"
    unit = host.file("/etc/systemd/system/jupyterhub.service").content_string
    assert ("SupplementaryGroups=shadow" in unit) == pam
    assert hub_user not in host.group("shadow").members  # never a standing membership


@pytest.mark.parametrize("path, mode, group", [
    ("/etc/jupyterhub/course-users.json", 0o640, "jupyterhub"),
    ("/etc/jupyterhub/ops-token", 0o640, "jupyterhub"),
    ("/etc/jupyterhub/ops-api-header", 0o600, "root"),
    ("/etc/jupyterhub/proxy.env", 0o640, "jupyterhub"),
])
def test_the_hubs_secrets_and_lists_are_private(host, path: str, mode: int,  # noqa: ANN001
                                                group: str) -> None:
    f = host.file(path)
    assert f.exists, f"{path} is missing"
    assert (f.user, f.group, f.mode) == ("root", group, mode)


def test_the_hub_lets_in_exactly_the_roster_and_the_staff(host, expected) -> None:  # noqa: ANN001
    doc = json.loads(host.file("/etc/jupyterhub/course-users.json").content_string)
    staff = sorted(n for n, m in expected.state.staff.items() if m.status == "active")
    assert doc["allowed"] == sorted([*expected.students("active"), *staff])
    assert doc["admins"] == staff
