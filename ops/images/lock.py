"""`ops images lock`: re-resolve requirements.in into one lock file per variant, with uv.

uv resolves for the image's Python and platform (not this machine's), writes exact
versions and every file's hash, and finds the CPU build of torch in the wheelhouse
(``--find-links``). A resolution that breaks a rule of the variant (a pin, an omission,
the inventory's CUDA version) is refused and the old lock file is left as it was.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ops.errors import OpsError
from ops.images import spec as spec_mod
from ops.images.spec import ImageSpec, Variant

_LOG = logging.getLogger(__name__)
Log = Callable[[str], None]


def _uv() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if not found:
        raise OpsError("uv is not installed", hint="pip install -e . installs it with course-ops")
    return found


def argv(spec: ImageSpec, variant: Variant, src: Path, out: Path,
         find_links: Sequence[Path], upgrade: Sequence[str]) -> list[str]:
    cmd = [
        _uv(), "pip", "compile", str(src), "--output-file", str(out), "--generate-hashes",
        "--python-version", spec.python, "--python-platform", spec.platform,
        "--no-header", "--quiet",
    ]
    for d in find_links:
        cmd += ["--find-links", str(d)]
    if out.exists():
        cmd += [f"--upgrade-package={name}" for name in upgrade]
    else:
        cmd.append("--upgrade")
    return cmd


def lock(spec: ImageSpec, variant: Variant, *, cuda: str | None,
         find_links: Sequence[Path] = (), upgrade: Sequence[str] = (),
         log: Log = _LOG.info) -> tuple[Path, bool]:
    """Write ``lock/<variant>.txt``; return its path and whether it changed."""
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
            out.write_text(target.read_text())
        cmd = argv(spec, variant, src, out, find_links, upgrade)
        log(f"resolving the {variant.name} variant with uv")
        _LOG.info("$ %s", " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env=_env())
        if done.returncode:
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            raise OpsError(f"uv could not resolve the {variant.name} variant: "
                           f"{' '.join(lines[-3:]) if lines else done.returncode}",
                           hint="relax requirements.in or the pins in image.yml")
        text = header + out.read_text().replace(str(src), "requirements.in")
    new = spec_mod.parse_lock(target, text)
    spec_mod.check_lock(spec, variant, new, cuda)
    changed = not target.exists() or target.read_text() != text
    if changed:
        target.write_text(text)
    return target, changed


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.setdefault("UV_NO_PROGRESS", "1")
    return env
