"""`ops images lock`: re-resolve requirements.in into one lock file per variant, with uv.

uv resolves for the image's Python and platform (not this machine's), writes exact
versions and every file's hash, and finds the CPU build of torch in the wheelhouse
(``--find-links``). A resolution that breaks a rule of the variant (a pin, an omission,
the inventory's CUDA version) is refused and the old lock file is left as it was.

A project PyPI publishes only as source (image.yml's ``from_source``, nbmerge) is built
into a wheel here, once per lock, from its sdist (checked against the hash uv resolved)
with build tools pinned by hash: lock/sources.txt records the sdist and the tools, and
the variant's lock records the *wheel's* sha256, so the image installs it binary-only and
hash-checked like every other package. ``ops images fetch`` on a fresh machine builds it
again from the same sdist and tools and refuses a wheel whose hash differs.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ops import Log
from ops import run as run_mod
from ops.errors import OpsError
from ops.images import spec as spec_mod
from ops.images import wheelhouse as wh
from ops.images.spec import ImageSpec, Locked, Variant

_LOG = logging.getLogger(__name__)

SOURCES_HEADER = (
    "# The sdists of image.yml's from_source projects and the build tools that turn them\n"
    "# into wheels (`ops images lock` and `ops images fetch` build with exactly these);\n"
    "# lock/<variant>.txt pins each built wheel by its own sha256. Made by `ops images lock`;\n"
    "# do not edit.\n"
)


def uv_binary() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if not found:
        raise OpsError("uv is not installed", hint="pip install -e . installs it with course-ops")
    return found


def argv(spec: ImageSpec, variant: Variant, src: Path, out: Path,
         find_links: Sequence[Path], upgrade: Sequence[str],
         index_url: str | None = None) -> list[str]:
    cmd = [
        uv_binary(), "pip", "compile", str(src), "--output-file", str(out), "--generate-hashes",
        "--python-version", spec.python, "--python-platform", spec.platform,
        "--no-header", "--quiet",
    ]
    for d in find_links:
        cmd += ["--find-links", str(d)]
    cmd += index_args(index_url)
    if out.exists():
        cmd += [f"--upgrade-package={name}" for name in upgrade]
    else:
        cmd.append("--upgrade")
    return cmd


def index_args(index_url: str | None) -> list[str]:
    """uv's arguments for another package index than PyPI (a course's mirror, a test's)."""
    return ["--default-index", index_url] if index_url else []


def _compile(cmd: list[str], what: str) -> None:
    done = run_mod.capture(cmd, what=f"uv resolving {what}", env=_env())
    if done.returncode:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        raise OpsError(f"uv could not resolve {what}: "
                       f"{' '.join(lines[-3:]) if lines else done.returncode}",
                       hint="relax requirements.in or the pins in image.yml")


def lock(spec: ImageSpec, variant: Variant, *, cuda: str | None,
         find_links: Sequence[Path] = (), upgrade: Sequence[str] = (),
         wheelhouse: Path | None = None, log: Log = _LOG.info,
         index_url: str | None = None) -> tuple[Path, bool]:
    """Write ``lock/<variant>.txt`` (and lock/sources.txt when the variant has projects
    built from source); return its path and whether it changed. The wheels built from
    source are left in ``wheelhouse`` when one is given."""
    target = spec.lock_path(variant.name)
    target.parent.mkdir(exist_ok=True)
    header = (
        f"# The {variant.name} variant's lock: exact versions and hashes.\n"
        f"# Made by `ops images lock --variant {variant.name}` from requirements.in and "
        "image.yml; do not edit.\n"
    )
    with tempfile.TemporaryDirectory(prefix="ops-lock-") as tmp:
        src = Path(tmp) / f"{variant.name}.in"
        src.write_text(spec_mod.resolver_input(spec, variant))
        out = Path(tmp) / f"{variant.name}.txt"
        if target.exists():  # keep the other pins where they are (uv's --upgrade-package)
            out.write_text(preferences(spec, target, target.read_text()))
        cmd = argv(spec, variant, src, out, find_links, upgrade, index_url)
        log(f"resolving the {variant.name} variant with uv")
        _compile(cmd, f"the {variant.name} variant")
        text = header + out.read_text().replace(str(src), "requirements.in")
    resolved = spec_mod.parse_lock(target, text)
    sources, sources_text = None, None
    built = sorted(set(spec.from_source) & set(resolved.packages))
    if built:
        sources_text = lock_sources(spec, [resolved.packages[n] for n in built],
                                    upgrade=upgrade, log=log, index_url=index_url)
        sources = spec_mod.SourceBuilds(spec_mod.parse_lock(spec.sources_path, sources_text),
                                        frozenset(spec.from_source))
        for name in built:
            wheel_hash = build_locked(spec, sources, resolved.packages[name], wheelhouse, log,
                                      index_url)
            text = with_wheel_hash(text, resolved.packages[name], wheel_hash)
    new = spec_mod.parse_lock(target, text)
    spec_mod.check_lock(spec, variant, new, cuda, sources)
    # written only now: a failed resolution or build leaves both files as they were
    if sources_text is not None and (not spec.sources_path.exists()
                                     or spec.sources_path.read_text() != sources_text):
        spec.sources_path.write_text(sources_text)
    changed = not target.exists() or target.read_text() != text
    if changed:
        target.write_text(text)
    return target, changed


def _entry(package: Locked) -> re.Pattern[str]:
    """``package``'s lines in a lock: its name==version and its hashes."""
    return re.compile(
        rf"^{re.escape(package.name)}=={re.escape(package.version)}[ \t]*\\\n"
        r"(?:[ \t]*--hash=sha256:[0-9a-f]{64}[ \t]*\\?\n)+", re.M)


def with_wheel_hash(text: str, package: Locked, wheel_hash: str) -> str:
    """The lock text with ``package``'s hashes (its sdist's, as uv wrote them) replaced by
    the one of the wheel built from it, and a comment saying so."""
    new = (f"{package.name}=={package.version} \\\n    --hash={wheel_hash}\n"
           "    # the wheel built from the sdist in lock/sources.txt (image.yml: from_source)\n")
    text, n = _entry(package).subn(lambda _: new, text)
    if n != 1:
        raise OpsError(f"cannot find {package.name}=={package.version} in uv's output",
                       hint="run `ops -vv images lock` and report it")
    return text


def preferences(spec: ImageSpec, path: Path, text: str) -> str:
    """An old lock as uv's preferences: uv keeps the hashes it finds there, so a project
    built from source gets its sdist's hashes back (lock/sources.txt), or, without them,
    is left out (uv then resolves it afresh)."""
    old = spec_mod.parse_lock(path, text)
    sdists = (spec_mod.parse_lock(spec.sources_path).packages
              if spec.sources_path.exists() else {})
    for name in sorted(set(spec.from_source) & set(old.packages)):
        package, sdist = old.packages[name], sdists.get(name)
        keep = sdist.requirement() if sdist and sdist.version == package.version else ""
        text = _entry(package).sub(keep.replace("\\", "\\\\"), text)
    return text


def lock_sources(spec: ImageSpec, projects: Sequence[Locked], *, upgrade: Sequence[str] = (),
                 log: Log = _LOG.info, index_url: str | None = None) -> str:
    """lock/sources.txt's text: each project's sdist (uv's hashes) and the build tools
    that image.yml names for them (resolved by uv, wheels only, kept at their pins)."""
    target = spec.sources_path
    old = spec_mod.parse_lock(target) if target.exists() else None
    keep = {n: p for n, p in (old.packages.items() if old else ())
            if n in spec.from_source and n not in {p.name for p in projects}}
    tools = sorted({t for p in projects for t in spec.from_source[p.name]}
                   | {t for n in keep for t in spec.from_source[n]})
    with tempfile.TemporaryDirectory(prefix="ops-lock-sources-") as tmp:
        src = Path(tmp) / "tools.in"
        src.write_text("\n".join(tools) + "\n")
        out = Path(tmp) / "tools.txt"
        if old:
            out.write_text("".join(p.requirement() for n, p in sorted(old.packages.items())
                                   if n not in spec.from_source))
        cmd = [uv_binary(), "pip", "compile", str(src), "--output-file", str(out),
               "--generate-hashes", "--only-binary", ":all:", "--python-version", spec.python,
               "--no-header", "--quiet", "--no-annotate", *index_args(index_url)]
        cmd += [f"--upgrade-package={name}" for name in upgrade] if old else ["--upgrade"]
        log(f"resolving the build tools of {', '.join(p.name for p in projects)} with uv")
        _compile(cmd, "the build tools of image.yml's from_source")
        tool_lock = spec_mod.parse_lock(target, out.read_text())
    entries = {**keep, **{p.name: p for p in projects}, **tool_lock.packages}
    return SOURCES_HEADER + "".join(entries[n].requirement() for n in sorted(entries))


def build_locked(spec: ImageSpec, sources: spec_mod.SourceBuilds, package: Locked,
                 wheelhouse: Path | None, log: Log, index_url: str | None = None) -> str:
    """Build ``package``'s wheel from its locked sdist; its sha256 (and the wheel, left in
    ``wheelhouse`` if one is given)."""
    with tempfile.TemporaryDirectory(prefix="ops-lock-wheel-") as tmp:
        wheel = wh.build_from_source(package.name, package.version, sources, Path(tmp), log,
                                     index_url=index_url)
        digest = wh.sha256(wheel)
        if wheelhouse is not None:
            wheelhouse.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(wheel, wheelhouse / wheel.name)
    log(f"{package.name}=={package.version}: built {wheel.name}, {digest}")
    return digest


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("UV_NO_PROGRESS", "1")
    return env
