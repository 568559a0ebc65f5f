"""The lab's base image, made without a registry: debootstrap a Debian root file system,
configure it from the files under ``images/lab-base/`` (package list, masked units, an
overlay of files), ``docker import`` it, and tag it by the hash of those files and of this
recipe, so it is built once and reused until they change.

It owns making that image and nothing else: the lab's containers are ops/lab.py's; the
site builder and the image tooling build on the image it returns.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ops import REPO_ROOT, Log, engine
from ops.errors import EngineError, OpsError
from ops.run import capture, last_line, start, tool

_LOG = logging.getLogger(__name__)

#: Where the base image's package list, masked units and rootfs overlay live.
IMAGE_DIR = REPO_ROOT / "images" / "lab-base"
IMAGE_REPOSITORY = "course-ops/lab-base"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
_DEBOOTSTRAP_TIMEOUT = 1800

#: Dockerfile instructions applied on import; part of the image tag's hash.
_IMPORT_CHANGES = (
    'CMD ["/lib/systemd/systemd"]',
    "ENV container=docker",
    "ENV LANG=C.UTF-8",
    f"LABEL {engine.IMAGE_LABEL}=lab-base",
)
#: Bump when the build recipe in this module changes in a way the files do not show.
_RECIPE_VERSION = "1"

def _read_list(path: Path) -> list[str]:
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        item = line.split("#", 1)[0].strip()
        if item:
            items.append(item)
    return items


def _image_files(image_dir: Path) -> list[Path]:
    """The files whose content makes the image: lists and the rootfs overlay."""
    files = [p for p in (image_dir / "packages.txt", image_dir / "masked-units.txt") if p.exists()]
    overlay = image_dir / "rootfs"
    if overlay.is_dir():
        files += sorted(p for p in overlay.rglob("*") if p.is_file() or p.is_symlink())
    return files


def base_image_tag(
    image_dir: Path = IMAGE_DIR,
    repository: str = IMAGE_REPOSITORY,
    changes: Sequence[str] | None = None,
) -> str:
    """``course-ops/lab-base:bookworm-<12 hex>``, hashed from what goes into the image.

    Other debootstrap-made images (the course image's base) pass their own directory,
    repository and ``docker import`` changes.
    """
    digest = hashlib.sha256()
    for part in (SUITE, _RECIPE_VERSION, *(_IMPORT_CHANGES if changes is None else changes)):
        digest.update(part.encode() + b"\0")
    for path in _image_files(image_dir):
        rel = path.relative_to(image_dir).as_posix()
        if path.is_symlink():
            body = b"->" + os.readlink(path).encode()
        else:
            executable = b"x" if os.access(path, os.X_OK) else b"-"
            body = executable + path.read_bytes()
        digest.update(rel.encode() + b"\0" + body + b"\0")
    return f"{repository}:{SUITE}-{digest.hexdigest()[:12]}"


def debian_mirror(
    environ: Mapping[str, str] | None = None,
    sources: Sequence[Path] = (
        Path("/etc/apt/sources.list.d/debian.sources"),
        Path("/etc/apt/sources.list"),
    ),
) -> str:
    """``OPS_LAB_MIRROR``, else the host's first Debian mirror, else deb.debian.org."""
    env = os.environ if environ is None else environ
    if env.get("OPS_LAB_MIRROR"):
        return env["OPS_LAB_MIRROR"]
    for path in sources:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        for uri in _source_uris(text):
            if uri.startswith(("http://", "https://")) and "security" not in uri:
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _source_uris(text: str) -> Iterator[str]:
    """URIs of deb822 ``URIs:`` fields and one-line ``deb`` entries, in file order."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.lower().startswith("uris:"):
            yield from line.split(":", 1)[1].split()
        elif line.startswith("deb "):
            words = re.sub(r"\[[^\]]*\]", " ", line[4:]).split()
            if words:
                yield words[0]


def ensure_base_image(
    client: Any,
    *,
    log: Log = _LOG.info,
    image_dir: Path = IMAGE_DIR,
    repository: str = IMAGE_REPOSITORY,
    changes: Sequence[str] | None = None,
) -> str:
    """The base image's tag, building it first unless that tag exists already."""
    changes = list(_IMPORT_CHANGES if changes is None else changes)
    tag = base_image_tag(image_dir, repository, changes)
    with engine.errors(f"looking for image {tag}"):
        if engine.get(client.images, tag) is not None:
            _LOG.debug("base image %s exists", tag)
            return tag
    if os.geteuid() != 0:
        raise EngineError(
            f"building the lab base image {tag} needs root",
            hint="run `sudo ops lab up` once; later runs reuse the image",
        )
    debootstrap = tool("debootstrap", "debootstrap")
    mirror = debian_mirror()
    log(f"building the base image {tag} (debootstrap from {mirror}, about a minute)")
    started = time.monotonic()
    scratch = os.environ.get("TMPDIR") or "/var/tmp"
    with tempfile.TemporaryDirectory(prefix="course-ops-lab-base-", dir=scratch) as tmp:
        rootfs = Path(tmp) / "rootfs"
        try:
            _debootstrap(debootstrap, rootfs, _read_list(image_dir / "packages.txt"), mirror)
            _configure_rootfs(rootfs, image_dir)
            log("importing the root file system into Docker")
            _import_rootfs(client, rootfs, tag, changes)
        finally:
            _unmount_below(rootfs)
    log(f"built {tag} in {time.monotonic() - started:.0f} s")
    return tag


def _debootstrap(debootstrap: str, rootfs: Path, packages: list[str], mirror: str) -> None:
    argv = [
        debootstrap,
        "--variant=minbase",
        f"--include={','.join(packages)}",
        SUITE,
        str(rootfs),
        mirror,
    ]
    env = {
        **os.environ,
        "LC_ALL": "C",
        "DEBIAN_FRONTEND": "noninteractive",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    done = capture(argv, what="debootstrap", env=env, timeout=_DEBOOTSTRAP_TIMEOUT, merge=True,
                   hint=f"is {mirror} reachable? set OPS_LAB_MIRROR to a closer Debian mirror",
                   level=logging.DEBUG)
    for line in done.stdout.splitlines():
        _LOG.debug("debootstrap: %s", line)
    if done.returncode:
        raise OpsError(
            f"debootstrap failed (exit {done.returncode}): {last_line(done.stdout)}",
            hint=f"is {mirror} reachable? set OPS_LAB_MIRROR to another Debian mirror",
        )


def _configure_rootfs(rootfs: Path, image_dir: Path) -> None:
    """Apply images/lab-base/ to a fresh debootstrap tree."""
    overlay = image_dir / "rootfs"
    for source in sorted(overlay.rglob("*")) if overlay.is_dir() else []:
        target = rootfs / source.relative_to(overlay)
        if source.is_dir() and not source.is_symlink():
            if not target.exists():
                target.mkdir(mode=0o755)
                _chown_root(target)
            continue
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copyfile(source, target)
            target.chmod(0o755 if os.access(source, os.X_OK) else 0o644)
        _chown_root(target)
    units = rootfs / "etc" / "systemd" / "system"
    masked = image_dir / "masked-units.txt"
    for unit in _read_list(masked) if masked.exists() else []:
        link = units / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # Every container makes its own host keys and machine id on first boot.
    for host_key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        host_key.unlink()
    (rootfs / "etc" / "machine-id").write_text("", encoding="utf-8")
    (rootfs / "var" / "lib" / "dbus" / "machine-id").unlink(missing_ok=True)
    (rootfs / "etc" / "hostname").unlink(missing_ok=True)
    for deb in (rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()


def _chown_root(path: Path) -> None:
    if os.geteuid() == 0:  # the build runs as root; unit tests need not
        os.lchown(path, 0, 0)


def _import_rootfs(client: Any, rootfs: Path, tag: str, changes: Sequence[str]) -> None:
    repository, _, version = tag.rpartition(":")
    argv = [tool("tar", "tar"), "--numeric-owner", "--xattrs", "-C", str(rootfs), "-c", "."]
    with (
        tempfile.TemporaryFile() as errors,
        start(argv, stderr=errors, level=logging.DEBUG) as tar,
    ):
        stream = tar.stdout
        assert stream is not None

        def chunks() -> Iterator[bytes]:
            while data := stream.read(1 << 20):
                yield data

        with engine.errors(f"importing {tag}"):
            response = client.api.import_image_from_stream(
                chunks(), repository=repository, tag=version, changes=list(changes)
            )
        _LOG.debug("docker import: %s", response)
        returncode = tar.wait(timeout=60)
        errors.seek(0)
        message = errors.read().decode("utf-8", "replace")
    if returncode:
        raise OpsError(f"tar of the lab rootfs failed: {last_line(message)}")
    with engine.errors(f"importing {tag}"):
        if engine.get(client.images, tag) is None:
            raise OpsError(f"docker import did not create {tag}: {last_line(str(response))}")


def _unmount_below(path: Path) -> None:
    """Unmount anything a failed debootstrap left mounted inside ``path``."""
    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    prefix = str(path) + "/"
    points = [m.split()[1] for m in mounts if len(m.split()) > 1]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        _LOG.debug("unmounting %s", point)
        capture(["umount", "-l", point], what=f"umount {point}", timeout=30,
                level=logging.DEBUG)
