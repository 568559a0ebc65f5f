"""Build the course image with the Docker SDK, tagged by content, skipped when up to date."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import requests.exceptions

from ops import REPO_ROOT, Log, __version__, rootfs
from ops import run as run_mod
from ops.errors import OpsError
from ops.images import debian
from ops.images import spec as spec_mod
from ops.images import wheelhouse as wh
from ops.images.spec import ImageSpec, Lock, Variant

_LOG = logging.getLogger(__name__)

BASE_REPOSITORY = "course-ops/course-base"
#: Where a build without a wheelhouse keeps the wheels it builds from source (PyPI has none).
SOURCE_WHEELS = Path.home() / ".cache" / "course-ops" / "source-wheels"
BASE_CHANGES = ('CMD ["/bin/bash"]', "ENV LANG=C.UTF-8", "LABEL course-ops.image=course-base")
_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_BUILD_TIMEOUT = 3600


@dataclass
class Prepared:
    """Everything known before building: the files, the tag, the labels."""

    spec: ImageSpec
    variant: Variant
    lock: Lock
    base: str
    base_id: str
    files: dict[str, bytes]  # image.json records the tag
    digest: str
    tag: str
    sources: spec_mod.SourceBuilds | None = None

    @property
    def ref(self) -> str:
        return f"{self.spec.repository}:{self.tag}"


@dataclass
class Built:
    prepared: Prepared
    skipped: str | None = None  # why nothing was built ("up to date: ...")
    seconds: float = 0.0
    steps: int = 0
    cached_steps: int = 0
    #: each step: its number, its instruction, and whether it came from Docker's cache
    step_log: list[tuple[int, str, bool]] = field(default_factory=list)
    image_id: str = ""
    log: list[str] = field(default_factory=list)


def bootstrap_tag(client: Any, spec: ImageSpec, log: Log, *, make: bool = True) -> str:
    """The debootstrap image of base/packages.txt (made when ``make`` and missing)."""
    assert spec.base_debootstrap is not None
    if make:
        return rootfs.ensure_base_image(client, log=log, image_dir=spec.base_debootstrap,
                                     repository=BASE_REPOSITORY, changes=BASE_CHANGES)
    return rootfs.base_image_tag(spec.base_debootstrap, BASE_REPOSITORY, BASE_CHANGES)


def ensure_base(client: Any, spec: ImageSpec, log: Log, *, make: bool = True) -> tuple[str, str]:
    """The base image (made with debootstrap, at the versions base/packages.lock records,
    when the spec says so): its name and id.

    ``make=False`` only looks: a missing base is an error, never minutes of debootstrap.
    """
    if spec.base_debootstrap is not None:
        assert spec.debian_lock_path is not None
        lock = debian.parse_lock(spec.debian_lock_path)
        bootstrap = bootstrap_tag(client, spec, log, make=make)
        if make:
            name = debian.ensure_locked_base(client, bootstrap, lock,
                                             changes=list(BASE_CHANGES), log=log)
        else:
            debian.check_bootstrap(lock, bootstrap)
            name = debian.locked_tag(bootstrap, lock)
    else:
        name = str(spec.base_image)
    try:
        return name, client.images.get(name).id
    except docker.errors.ImageNotFound:
        hint = ("`ops images build` makes it" if spec.base_debootstrap is not None
                else f"`docker pull {name}` (or load it), then build again")
        raise OpsError(f"base image {name} is not on this machine", hint=hint) from None


def prepare(client: Any, spec: ImageSpec, variant: Variant, *, cuda: str | None,
            uid: int | None = None, ca_bundle: Path | None = None,
            log: Log = _LOG.info, make_base: bool = True) -> Prepared:
    lock = spec_mod.parse_lock(spec.lock_path(variant.name))
    sources = spec.source_builds()
    spec_mod.check_lock(spec, variant, lock, cuda, sources)
    base, base_id = ensure_base(client, spec, log, make=make_base)
    bundle = ca_bundle.read_bytes() if ca_bundle else None
    ctx = spec_mod.context(spec, variant, lock, base=base, base_id=base_id, uid=uid,
                           ca_bundle=bundle)
    return Prepared(spec, variant, lock, base, base_id, ctx.files, ctx.content_hash, ctx.tag,
                    sources)


def exists_locally(client: Any, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def _context_tar(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(files[name]))
    buf.seek(0)
    return buf


def _git(*args: str) -> str:
    try:
        done = run_mod.capture(["git", *args], what="git", cwd=REPO_ROOT, timeout=10,
                               level=logging.DEBUG)
    except OpsError:  # no git here, or it hangs: the labels say so by being empty
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def labels(p: Prepared) -> dict[str, str]:
    """OCI labels and ours. They are not in the Dockerfile, so they do not change the tag."""
    revision = _git("rev-parse", "HEAD")
    if revision and _git("status", "--porcelain", "--", "images", "ops"):
        revision += "-dirty"
    source = _git("config", "--get", "remote.origin.url") or "course-ops"
    torch = p.lock.version("torch") or ""
    return {
        "org.opencontainers.image.title": f"course image ({p.variant.name})",
        "org.opencontainers.image.description": "PyTorch + Jupyter for the course's homework",
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "org.opencontainers.image.version": p.tag,
        "org.opencontainers.image.base.name": p.base,
        "course-ops.variant": p.variant.name,
        "course-ops.content-hash": p.digest,
        "course-ops.python": p.spec.python,
        "course-ops.torch": torch,
        "course-ops.cuda": spec_mod.lock_cuda(p.lock) or "none",
        "course-ops.built-by": f"course-ops {__version__}",
    }


def build(client: Any, p: Prepared, *, wheelhouse: Path | None, offline: bool = False,
          exists_elsewhere: Callable[[str], str | None] | None = None,
          force: bool = False, nocache: bool = False, log: Log = _LOG.info,
          progress: Callable[[int, int, str], None] | None = None,
          index_url: str | None = None) -> Built:
    """Build ``p`` unless its tag exists here (or where ``exists_elsewhere`` says)."""
    if not force:
        if exists_locally(client, p.ref):
            client.images.get(p.ref).tag(p.spec.repository, p.variant.name)
            return Built(p, skipped=f"{p.ref} exists on this machine")
        where = exists_elsewhere(p.tag) if exists_elsewhere else None
        if where:
            return Built(p, skipped=f"{p.tag} is in {where}")
    buildargs: dict[str, str] = {}
    started = time.monotonic()
    from_source = sorted(set(p.sources.projects) & set(p.lock.packages)) if p.sources else []
    index = "1"  # PIP_NO_INDEX: only the wheelhouse
    if wheelhouse is None and from_source:
        # PyPI has no wheel of these: build them (once, hash-checked) and serve them beside it
        wheelhouse, index = SOURCE_WHEELS, ""
        wh.fill(wheelhouse, p.lock, log, python=p.spec.python, platform=p.spec.platform,
                sources=p.sources, only=from_source, index_url=index_url)
    elif wheelhouse is not None:
        wheelhouse = wheelhouse.resolve()
        if offline:
            left = wh.missing(wheelhouse, p.lock, p.spec.python, p.spec.platform)
            if left:
                raise OpsError(
                    f"{wheelhouse} has no wheel for {left[0].name}=={left[0].version} "
                    f"(and {len(left) - 1} more)" if len(left) > 1 else
                    f"{wheelhouse} has no wheel for {left[0].name}=={left[0].version}",
                    hint="drop --offline to fetch them, or add them to the wheelhouse")
        else:
            wh.fill(wheelhouse, p.lock, log, python=p.spec.python, platform=p.spec.platform,
                    sources=p.sources, index_url=index_url)
    built = Built(p)
    with (wh.serve(wheelhouse) if wheelhouse else _no_server()) as url:
        if url:
            buildargs = {"PIP_FIND_LINKS": url, **({"PIP_NO_INDEX": index} if index else {})}
        log(f"building {p.ref}" + (f" offline from {wheelhouse}" if wheelhouse and index
                                   else f" from PyPI and {wheelhouse}" if wheelhouse else ""))
        stream = client.api.build(
            fileobj=_context_tar(p.files), custom_context=True, tag=p.ref, rm=True,
            forcerm=True, pull=False, nocache=nocache, network_mode="host", buildargs=buildargs,
            labels=labels(p), decode=True, timeout=_BUILD_TIMEOUT,
        )
        try:
            _follow(stream, built, log, progress)
        except requests.exceptions.RequestException as exc:
            raise OpsError(f"the Docker engine stopped answering during the build: "
                           f"{type(exc).__name__}", hint="see the engine's log") from None
    try:
        image = client.images.get(p.ref)
    except docker.errors.ImageNotFound:
        raise OpsError(f"the build ended without making {p.ref}",
                       hint="run again with -v to see every build line") from None
    built.image_id = image.id
    image.tag(p.spec.repository, p.variant.name)  # a moving convenience tag, never pushed
    built.seconds = time.monotonic() - started
    return built


class _no_server:
    def __enter__(self) -> str:
        return ""

    def __exit__(self, *exc: object) -> None:
        return None


def _follow(stream: Iterable[dict[str, Any]], built: Built, log: Log,
            progress: Callable[[int, int, str], None] | None) -> None:
    """Docker's build stream -> progress and a log; errors -> one-line OpsError."""
    last_step = ""
    for chunk in stream:
        if "error" in chunk:
            tail = "\n".join(built.log[-15:])
            _LOG.error("last build output:\n%s", tail)
            lines = str(chunk["error"]).strip().splitlines() or ["(no message)"]
            raise OpsError(f"build failed at {last_step or 'the start'}: {lines[-1]}",
                           hint="see the lines above (-v shows every line)")
        text = str(chunk.get("stream", "")).rstrip()
        if not text:
            continue
        for line in text.splitlines():
            built.log.append(line)
            m = _STEP_RE.match(line)
            if m:
                built.steps = int(m.group(2))
                built.step_log.append((int(m.group(1)), m.group(3), False))
                last_step = f"step {m.group(1)}/{m.group(2)} ({m.group(3)[:60]})"
                if progress:
                    progress(int(m.group(1)), int(m.group(2)), m.group(3))
                else:
                    log(f"step {m.group(1)}/{m.group(2)}: {m.group(3)[:90]}")
            elif "Using cache" in line:
                built.cached_steps += 1
                if built.step_log:
                    number, text, _ = built.step_log[-1]
                    built.step_log[-1] = (number, text, True)
            else:
                _LOG.info("  %s", line)


def write_manifest(client: Any, p: Prepared, built: Built, out_dir: Path) -> Path:
    """pip freeze, the Debian packages and the labels, beside the build, as JSON."""
    script = ("python -m pip freeze --all; echo '--- apt'; "
              "dpkg-query -W -f '${Package}=${Version}\\n'")
    raw = client.containers.run(p.ref, ["/bin/sh", "-c", script], remove=True,
                                entrypoint=[], stdout=True, stderr=False)
    text = raw.decode()
    pip_part, _, apt_part = text.partition("--- apt\n")
    image = client.images.get(p.ref)
    manifest = {
        "image": p.ref,
        "tag": p.tag,
        "variant": p.variant.name,
        "id": image.id,
        "size": image.attrs.get("Size"),
        "labels": image.labels,
        "pip": sorted(ln for ln in pip_part.splitlines() if ln.strip()),
        "apt": sorted(ln for ln in apt_part.splitlines() if ln.strip()),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{p.tag}.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    (out_dir / "latest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def layer_sizes(client: Any, ref: str) -> list[tuple[int, str]]:
    """(bytes, instruction) for each layer that adds bytes, largest first."""
    rows = []
    for entry in client.api.history(ref):
        size = int(entry.get("Size") or 0)
        if size:
            created_by = str(entry.get("CreatedBy", "")).replace("/bin/sh -c #(nop) ", "")
            slice_file = re.search(r"-r /opt/course-ops/(requirements/\S+)", created_by)
            if slice_file:
                what = f"pip install of {slice_file.group(1)}"
            elif not created_by:
                what = "the base image"
            else:
                what = re.sub(r"^\|\d+ (?:\S+=\S* )*/bin/sh -c ", "RUN ", created_by)
            rows.append((size, what[:100]))
    return sorted(rows, reverse=True)
