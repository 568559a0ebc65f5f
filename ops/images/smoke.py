"""`ops images test`: the image's own tests in a container, then Jupyter over HTTP.

Every container started here is removed afterwards, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker.errors
import docker.types
import requests

from ops import Log
from ops.errors import OpsError

_LOG = logging.getLogger(__name__)
JUPYTER_TIMEOUT = 90.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def host_has_gpu(client: Any) -> bool:
    """The engine can hand a GPU to a container: the NVIDIA runtime is registered."""
    return "nvidia" in (client.info().get("Runtimes") or {})


@contextlib.contextmanager
def _container(client: Any, ref: str, **kwargs: Any) -> Iterator[Any]:
    container = client.containers.run(ref, detach=True, labels={"course-ops.smoke": "1"},
                                      **kwargs)
    try:
        yield container
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)


def _tag(ref: str) -> str:
    return ref.rpartition(":")[2]


def check_identity(client: Any, ref: str) -> Check:
    """The image's /opt/course-ops/image.json names the tag it was started from."""
    name = "the image records its own tag"
    with _container(client, ref, command=["cat", "/opt/course-ops/image.json"],
                    entrypoint=[]) as c:
        c.wait(timeout=60)
        raw = c.logs(stdout=True, stderr=False).decode("utf-8", "replace")
    try:
        recorded = json.loads(raw).get("tag")
    except ValueError:
        return Check(name, False, f"/opt/course-ops/image.json is not JSON: {raw[:80]!r}")
    return Check(name, recorded == _tag(ref),
                 f"/opt/course-ops/image.json: tag {recorded!r}"
                 + ("" if recorded == _tag(ref) else f", started from {_tag(ref)!r}"))


def run_tests(client: Any, ref: str, *, gpu: bool, log: Log) -> Check:
    """pytest on /opt/course-ops/tests inside the image, as its default user."""
    kwargs: dict[str, Any] = {
        "command": ["python", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                    "/opt/course-ops/tests"],
        "environment": {"COURSE_EXPECT_GPU": "1" if gpu else "0",
                        "COURSE_IMAGE_TAG": _tag(ref)},
    }
    if gpu:
        kwargs["device_requests"] = [docker.types.DeviceRequest(count=-1,
                                                                capabilities=[["gpu"]])]
    log(f"running the image's tests in {ref}" + (" with the GPUs" if gpu else ""))
    with _container(client, ref, **kwargs) as c:
        try:
            result = c.wait(timeout=900)
        except requests.RequestException:
            return Check("image tests (pytest in the container)", False,
                         "no result after 900 s")
        output = c.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    for line in output.splitlines():
        _LOG.info("  %s", line)
    summary = next((ln for ln in reversed(output.splitlines()) if ln.strip()), "")
    return Check("image tests (pytest in the container)", result.get("StatusCode") == 0,
                 summary)


def _port(container: Any, port: int) -> int:
    container.reload()
    for binding in container.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []:
        return int(binding["HostPort"])
    raise OpsError(f"{container.name}: port {port} is not published")


def check_jupyter(client: Any, ref: str, port: int, log: Log) -> list[Check]:
    """Jupyter Lab starts, answers on its port, and wants the token."""
    token = secrets.token_hex(24)
    log(f"starting Jupyter Lab in {ref}")
    checks = []
    with _container(client, ref, environment={"JUPYTER_TOKEN": token},
                    ports={f"{port}/tcp": ("127.0.0.1", None)}) as c:
        host_port = _port(c, port)
        base = f"http://127.0.0.1:{host_port}"
        deadline = time.monotonic() + JUPYTER_TIMEOUT
        status = None
        while time.monotonic() < deadline:
            c.reload()
            if c.status != "running":
                break
            try:
                status = requests.get(f"{base}/api/status", params={"token": token},
                                      timeout=3)
                if status.status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        logs = c.logs().decode("utf-8", "replace")
        if status is None or status.status_code != 200:
            last = next((ln for ln in reversed(logs.splitlines()) if ln.strip()), "no output")
            return [Check("Jupyter Lab answers HTTP", False, f"no answer: {last}")]
        checks.append(Check("Jupyter Lab answers HTTP", True,
                            f"GET /api/status with the token: {status.status_code}, "
                            f"{status.json().get('started', '')}"))
        anon = requests.get(f"{base}/api/status", timeout=5)
        checks.append(Check("Jupyter wants the token", anon.status_code == 403,
                            f"GET /api/status without it: {anon.status_code}"))
        lab = requests.get(f"{base}/lab", params={"token": token}, timeout=10)
        checks.append(Check("the Lab page loads", lab.status_code == 200
                            and "JupyterLab" in lab.text, f"GET /lab: {lab.status_code}"))
        leaked = token in logs
        checks.append(Check("the token is not in the log", not leaked,
                            "found in the container's log" if leaked else "not logged"))
    return checks


def run(client: Any, ref: str, *, port: int, gpu: bool | None = None,
        log: Log = _LOG.info, jupyter: bool = True) -> list[Check]:
    """Every check of the image; ``jupyter``: Jupyter Lab's too (image.yml's ``jupyter``)."""
    gpu = host_has_gpu(client) if gpu is None else gpu
    checks = [check_identity(client, ref), run_tests(client, ref, gpu=gpu, log=log)]
    if jupyter:
        checks += check_jupyter(client, ref, port, log)
    return checks
