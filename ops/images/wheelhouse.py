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

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

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


def platforms(platform: str) -> list[str]:
    """pip's platform tags for a uv platform: ``x86_64-manylinux_2_28`` -> every
    ``manylinux_2_N_x86_64`` up to 2.28 (and the legacy names) that such a system runs."""
    arch, _, libc = platform.partition("-")
    major, minor = (int(x) for x in libc.removeprefix("manylinux_").split("_"))
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    return tags + [f"{name}_{arch}" for m, name in legacy.items() if m <= minor]


def target_tags(python: str, platform: str) -> set[Tag]:
    """The wheel tags a CPython ``python`` on ``platform`` installs."""
    version = tuple(int(x) for x in python.split(".")[:2])
    plats = platforms(platform)
    return set(cpython_tags(version, platforms=plats)) | set(
        compatible_tags(version, f"cp{version[0]}{version[1]}", plats))


def missing(directory: Path, lock: Lock, python: str, platform: str) -> list[Locked]:
    """Pinned packages with no wheel in ``directory`` that has a hash the lock allows and
    a tag the image's Python and platform install."""
    wanted = target_tags(python, platform)
    by_project: dict[str, set[str]] = {}
    for name, digest in hashes(directory).items():
        try:
            project, _, _, tags = parse_wheel_filename(name)
        except InvalidWheelFilename:
            continue
        if tags & wanted:
            by_project.setdefault(normalize(str(project)), set()).add(digest)
    return [
        p for p in lock.packages.values() if not by_project.get(p.name, set()) & set(p.hashes)
    ]


def fill(directory: Path, lock: Lock, log: Log, *, python: str, platform: str) -> None:
    """Download the lock's missing wheels into ``directory``, for the image's Python and
    platform, not this machine's (pip checks the hashes)."""
    directory.mkdir(parents=True, exist_ok=True)
    todo = missing(directory, lock, python, platform)
    if not todo:
        return
    log(f"fetching {len(todo)} wheel(s) into {directory}")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
        req.write("".join(p.requirement() for p in todo))
        req.flush()
        argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                "--require-hashes", "--only-binary=:all:", "--implementation", "cp",
                "--python-version", python, "--dest", str(directory), "-r", req.name]
        for tag in platforms(platform):
            argv += ["--platform", tag]
        _LOG.info("$ %s", " ".join(argv))
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()
                 and not ln.startswith("WARNING: Location")]
        raise OpsError(f"pip download failed: {lines[-1] if lines else done.returncode}",
                       hint="is PyPI reachable? or put the wheels into the wheelhouse yourself")
    left = missing(directory, lock, python, platform)
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
