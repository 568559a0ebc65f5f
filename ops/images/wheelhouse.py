"""A wheelhouse: a directory of wheels that a build installs from, offline.

``fill`` downloads what a lock file pins and the directory lacks (pip, on this machine,
with the lock's hashes); ``missing`` says which pins have no wheel with a locked hash;
``serve`` serves the directory on 127.0.0.1 for the duration of a build, so the build
needs no network and the wheels never enter the build context or an image layer.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import logging
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ops.errors import OpsError
from ops.images.spec import Lock, Locked, normalize

_LOG = logging.getLogger(__name__)
Log = Callable[[str], None]

#: A fixed port keeps the build arguments, and so Docker's layer cache, the same
#: from one build to the next; another free port is used when it is taken.
PORT = 47831
_INDEX = ".course-ops-hashes.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def hashes(directory: Path) -> dict[str, str]:
    """``sha256:...`` of every wheel, cached by name, size and mtime in the directory."""
    index_path = directory / _INDEX
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    out: dict[str, str] = {}
    fresh: dict[str, list[object]] = {}
    for wheel in sorted(directory.glob("*.whl")):
        st = wheel.stat()
        key = [st.st_size, st.st_mtime_ns]
        cached = index.get(wheel.name)
        digest = cached[2] if cached and cached[:2] == key else _sha256(wheel)
        fresh[wheel.name] = [*key, digest]
        out[wheel.name] = digest
    if fresh != index:
        with contextlib.suppress(OSError):
            index_path.write_text(json.dumps(fresh, indent=0, sort_keys=True))
    return out


def _project(wheel_name: str) -> str:
    return normalize(wheel_name.split("-", 1)[0])


def missing(directory: Path, lock: Lock) -> list[Locked]:
    """Pinned packages with no wheel in ``directory`` whose hash the lock allows."""
    by_project: dict[str, set[str]] = {}
    for name, digest in hashes(directory).items():
        by_project.setdefault(_project(name), set()).add(digest)
    return [
        p for p in lock.packages.values() if not by_project.get(p.name, set()) & set(p.hashes)
    ]


def fill(directory: Path, lock: Lock, log: Log) -> None:
    """Download the lock's missing wheels into ``directory`` (pip checks the hashes)."""
    directory.mkdir(parents=True, exist_ok=True)
    todo = missing(directory, lock)
    if not todo:
        return
    log(f"fetching {len(todo)} wheel(s) into {directory}")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
        req.write("".join(p.requirement() for p in todo))
        req.flush()
        argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                "--require-hashes", "--only-binary=:all:", "--dest", str(directory),
                "-r", req.name]
        _LOG.info("$ %s", " ".join(argv))
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()
                 and not ln.startswith("WARNING: Location")]
        raise OpsError(f"pip download failed: {lines[-1] if lines else done.returncode}",
                       hint="is PyPI reachable? or put the wheels into the wheelhouse yourself")
    left = missing(directory, lock)
    if left:
        names = ", ".join(f"{p.name}=={p.version}" for p in left[:5])
        raise OpsError(f"{directory}: still no wheel with a locked hash for {names}",
                       hint="re-lock with `ops images lock`, or add the wheels")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        _LOG.debug("wheelhouse: " + format, *args)


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1; yield its URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), handler)
    except OSError:
        _LOG.warning("port %d is taken: the wheelhouse gets another, so Docker's layer "
                     "cache is not reused for this build", PORT)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
