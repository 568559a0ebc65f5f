"""The Docker engine, as every part of ops that uses it reaches it: one pinged client, the
SDK's exceptions as one-line errors, a lookup that answers None for "no such object".

It owns talking to the engine, nothing of what is asked of it (the lab's containers are
ops/lab.py's, the course image's builds ops/images/'s, the site builder's ops/site/'s).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import requests.exceptions

from ops.errors import EngineError, OpsError

_LOG = logging.getLogger(__name__)
#: The label on every image course-ops makes (its value: which: lab-base, site-builder...)
IMAGE_LABEL = "course-ops.image"
#: seconds the SDK waits for one API call (an image import or a commit can take a while)
API_TIMEOUT = 120
ENGINE_HINT = (
    "start one (`sudo systemctl start docker`, or `sudo dockerd &` where there is no "
    "systemd); install it with `sudo apt-get install docker.io`"
)


def address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def client() -> Any:
    """A Docker client that has answered a ping, or :class:`EngineError`."""
    try:
        client = docker.from_env(timeout=API_TIMEOUT)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        _LOG.debug("the Docker engine did not answer: %s", exc)
        if _permission_denied(exc):
            raise EngineError(
                f"the Docker engine at {address()} refuses this user (permission denied)",
                hint="run as root, or join the docker group (`sudo usermod -aG docker $USER`, "
                "then log in again)",
            ) from exc
        raise EngineError(
            f"no Docker engine answers at {address()}", hint=ENGINE_HINT
        ) from exc
    return client


def _permission_denied(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # the SDK wraps requests, which wraps urllib3, which wraps OSError
        if seen is None:
            return False
        if isinstance(seen, PermissionError) or "Permission denied" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def errors(what: str) -> Iterator[None]:
    """Turn the Docker SDK's exceptions into one-line :class:`OpsError` messages."""
    try:
        yield
    except docker.errors.APIError as exc:  # before requests': it is also an HTTPError
        raise OpsError(f"{what}: {one_line(exc.explanation or str(exc))}") from exc
    except docker.errors.DockerException as exc:
        raise OpsError(f"{what}: {one_line(str(exc))}") from exc
    except requests.exceptions.ConnectionError as exc:
        raise EngineError(
            f"lost the Docker engine at {address()} while {what}", hint=ENGINE_HINT
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise OpsError(f"{what}: the Docker engine did not answer in time ({exc})") from exc


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def get(collection: Any, name: str) -> Any | None:
    try:
        return collection.get(name)
    except docker.errors.NotFound:
        return None
