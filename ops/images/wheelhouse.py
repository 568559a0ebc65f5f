"""A wheelhouse: a directory of wheels that a build installs from, offline.

``fill`` downloads what a lock file pins and the directory lacks (pip, on this machine,
with the lock's hashes); ``missing`` says which pins have no wheel with a locked hash;
``serve`` serves the directory on 127.0.0.1 for the duration of a build, so the build
needs no network and the wheels never enter the build context or an image layer.

A project PyPI has only as source (image.yml's ``from_source``) has no wheel to download:
``fill`` builds it with :func:`build_from_source` from the sdist lock/sources.txt pins (pip
checks its hash), with the build tools pinned there (hash-checked, nothing else on the
path), reproducibly (fixed timestamps, umask and environment), and keeps the wheel only if
its sha256 is the one the variant's lock records.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Collection, Iterator
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from ops import Log
from ops import run as run_mod
from ops.errors import OpsError
from ops.images.spec import Lock, Locked, SourceBuilds, normalize

_LOG = logging.getLogger(__name__)

#: A fixed port keeps the build arguments, and so Docker's layer cache, the same
#: from one build to the next; another free port is used when it is taken.
#: $OPS_WHEELHOUSE_PORT sets another (machines where several checkouts build at once).
PORT = int(os.environ.get("OPS_WHEELHOUSE_PORT") or 47831)
_INDEX = ".course-ops-hashes.json"


#: The timestamp of every file in a wheel built from source (1980-01-01, zip's first day).
SOURCE_DATE_EPOCH = "315532800"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


_sha256 = sha256


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


def _pip(argv: list[str], what: str) -> None:
    done = run_mod.capture(argv, what=what)
    if done.returncode:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()
                 and not ln.startswith("WARNING: Location")]
        raise OpsError(f"{what} failed: {lines[-1] if lines else done.returncode}",
                       hint="is PyPI reachable? or put the wheels into the wheelhouse yourself")


def fill(directory: Path, lock: Lock, log: Log, *, python: str, platform: str,
         sources: SourceBuilds | None = None, only: Collection[str] | None = None,
         index_url: str | None = None) -> None:
    """Download the lock's missing wheels into ``directory``, for the image's Python and
    platform, not this machine's (pip checks the hashes); build those of projects that
    ``sources`` says come from source, and keep each only if the lock has its hash.
    ``only``: just these projects."""
    directory.mkdir(parents=True, exist_ok=True)
    todo = [p for p in missing(directory, lock, python, platform)
            if only is None or p.name in only]
    if not todo:
        return
    built = [p for p in todo if sources is not None and p.name in sources.projects]
    download = [p for p in todo if p not in built]
    if download:
        log(f"fetching {len(download)} wheel(s) into {directory}")
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
            req.write("".join(p.requirement() for p in download))
            req.flush()
            argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--require-hashes", "--only-binary=:all:", "--implementation", "cp",
                    "--python-version", python, "--dest", str(directory), "-r", req.name,
                    *(["--index-url", index_url] if index_url else [])]
            for tag in platforms(platform):
                argv += ["--platform", tag]
            _pip(argv, "pip download")
    for package in built:
        assert sources is not None
        with tempfile.TemporaryDirectory(prefix="course-ops-wheel-") as tmp:
            wheel = build_from_source(package.name, package.version, sources, Path(tmp), log,
                                      index_url=index_url)
            digest = sha256(wheel)
            if digest not in package.hashes:
                raise OpsError(
                    f"{package.name}=={package.version}: the wheel built here from its sdist "
                    f"is {digest}, {lock.path} records {', '.join(package.hashes)}",
                    hint="the build is not reproducible on this machine, or the lock is "
                         "stale: re-lock with `ops images lock` and commit both lock files")
            shutil.copyfile(wheel, directory / wheel.name)
        log(f"{package.name}=={package.version}: built {wheel.name} from source, "
            "its hash is the locked one")
    left = missing(directory, lock, python, platform)
    if only is not None:
        left = [p for p in left if p.name in only]
    if left:
        names = ", ".join(f"{p.name}=={p.version}" for p in left[:5])
        raise OpsError(f"{directory}: still no wheel with a locked hash for {names}",
                       hint="re-lock with `ops images lock`, or add the wheels")


# --------------------------------------------------------------------------- from source

#: Runs in the unpacked sdist with only the build tools on sys.path (``python -S``): the
#: project's PEP 517 backend (setuptools' legacy one for a bare setup.py) builds the wheel.
_BUILD = """
import os, sys, tomllib
sys.path.insert(0, os.getcwd())
spec = "setuptools.build_meta:__legacy__"
if os.path.exists("pyproject.toml"):
    with open("pyproject.toml", "rb") as f:
        system = tomllib.load(f).get("build-system", {})
    spec = system.get("build-backend", spec)
    sys.path[:0] = [os.path.join(os.getcwd(), p) for p in system.get("backend-path", [])]
module, _, attr = spec.partition(":")
backend = __import__(module, fromlist=["_"])
for part in filter(None, attr.split(".")):
    backend = getattr(backend, part)
print(backend.build_wheel(sys.argv[1]))
"""


def _unpack(sdist: Path, into: Path) -> Path:
    """The sdist's single top directory, unpacked (tar's ``data`` filter: no links out,
    no odd modes)."""
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as z:
            z.extractall(into)
    else:
        with tarfile.open(sdist) as t:
            t.extractall(into, filter="data")
    tops = [p for p in into.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise OpsError(f"{sdist.name}: expected one top directory, found {len(tops)}")
    return tops[0]


def build_wheel(sdist: Path, tools: Path, out: Path) -> Path:
    """Build ``sdist`` into a wheel in ``out`` with only ``tools`` (a directory of
    installed build tools) importable; the same inputs give the same bytes (fixed
    SOURCE_DATE_EPOCH, umask 022, an environment of our own, a fresh directory)."""
    with tempfile.TemporaryDirectory(prefix="course-ops-sdist-") as tmp:
        tree = _unpack(sdist, Path(tmp))
        dist = Path(tmp) / "dist"
        dist.mkdir()
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PYTHONPATH": str(tools),
               "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
               "PYTHONDONTWRITEBYTECODE": "1", "HOME": tmp, "TMPDIR": tmp}
        argv = [sys.executable, "-S", "-c", _BUILD, str(dist)]
        done = run_mod.capture(argv, what=f"building a wheel from {sdist.name}", cwd=tree,
                               env=env, umask=0o022, timeout=600,
                               shown=["python", "-S", "-c", "<build_wheel>", str(dist)])
        if done.returncode:
            lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
            raise OpsError(f"building a wheel from {sdist.name} failed: "
                           f"{lines[-1] if lines else done.returncode}",
                           hint="run with -v to see the build's output")
        for line in done.stdout.splitlines():
            _LOG.info("  %s", line)
        wheels = sorted(dist.glob("*.whl"))
        if len(wheels) != 1:
            raise OpsError(f"building {sdist.name} made {len(wheels)} wheels, expected one")
        _, _, _, tags = parse_wheel_filename(wheels[0].name)
        if any(t.abi != "none" or t.platform != "any" for t in tags):
            raise OpsError(f"{sdist.name} builds {wheels[0].name}, a platform wheel",
                           hint="from_source (image.yml) is for pure-Python projects only")
        out.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copyfile(wheels[0], out / wheels[0].name))


def build_from_source(name: str, version: str, sources: SourceBuilds, out: Path,
                      log: Log, *, index_url: str | None = None) -> Path:
    """Download ``name``'s sdist and the build tools, both hash-checked against
    lock/sources.txt, and build the wheel into ``out``."""
    sdist = sources.sdist(name)
    if sdist is None or sdist.version != version:
        raise OpsError(f"{sources.lock.path} has no sdist of {name}=={version}",
                       hint="re-lock with `ops images lock`")
    log(f"building {name}=={version} from its sdist")
    with tempfile.TemporaryDirectory(prefix="course-ops-source-") as tmp:
        req, tools, got = Path(tmp) / "req.txt", Path(tmp) / "tools", Path(tmp) / "sdist"
        req.write_text(sdist.requirement())
        index = ["--index-url", index_url] if index_url else []
        _pip([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
              "--require-hashes", "--no-binary=:all:", "--dest", str(got), "-r", str(req),
              *index], f"downloading the sdist of {name}=={version}")
        req.write_text("".join(p.requirement() for p in sources.tools()))
        _pip([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
              "--require-hashes", "--only-binary=:all:", "--no-compile", "--target",
              str(tools), "-r", str(req), *index], "installing the build tools")
        found = sorted(got.iterdir())
        if len(found) != 1:
            raise OpsError(f"pip downloaded {len(found)} files for the sdist of {name}")
        return build_wheel(found[0], tools, out)


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
