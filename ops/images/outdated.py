"""`ops images outdated`: what has a newer version, for each variant's lock and the base.

Python: for each locked package, ``wanted`` is the version a re-lock picks (uv resolves
requirements.in and image.yml's pins afresh, every package free to move, for the image's
Python and platform) and ``latest`` the newest release that Python and platform install at
all. A package is *outdated* when ``wanted`` differs from the lock: `ops images update`
moves it. One whose ``latest`` alone is newer is *held back* (a pin in image.yml, or a
requirement of another package): reported, not outdated, since no re-lock moves it.

Debian: base/packages.lock against what the suite's archives would install now, from the
image's own apt in a throwaway container (see ops.images.debian); security updates are
marked. The document ``--format json`` prints is described by outdated.schema.json beside
this file (``SCHEMA``), which a unit test pins.

The Python checks and the Debian check run at once (threads): each is mostly waiting on
the network, or on uv's and apt's caches when they are warm.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from ops import REPO_ROOT, Log
from ops import run as run_mod
from ops.errors import OpsError
from ops.images import debian
from ops.images import lock as lock_mod
from ops.images import spec as spec_mod
from ops.images.spec import ImageSpec, Variant

_LOG = logging.getLogger(__name__)

SCHEMA = Path(__file__).with_name("outdated.schema.json")
SCHEMA_VERSION = 1
_REQ_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)")


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class PyPackage:
    name: str
    layer: str
    locked: str
    wanted: str | None  # what a re-lock picks now (None: a re-lock drops the package)
    latest: str | None  # the newest release the image's Python and platform install
    pinned: str | None = None  # image.yml's pin

    @property
    def outdated(self) -> bool:
        return self.wanted != self.locked

    @property
    def held(self) -> bool:
        """Only ``latest`` is newer: a pin or another package's requirement holds it."""
        return not self.outdated and newer(self.latest, self.locked)


@dataclass
class VariantReport:
    variant: str
    lock: Path
    packages: list[PyPackage] = field(default_factory=list)
    error: str | None = None

    @property
    def outdated(self) -> list[PyPackage]:
        return [p for p in self.packages if p.outdated]


@dataclass
class DebianReport:
    """``status``: checked (``packages`` are the pending updates), unlocked (no
    packages.lock yet), stale (the lock is for another package list), unmanaged (a base
    given by name: reported, never re-locked here), error (apt could not say)."""

    base: str | None
    lock: Path | None
    status: str
    packages: list[debian.Pending] = field(default_factory=list)
    error: str | None = None
    resolution: debian.Resolution | None = field(default=None, repr=False)
    current: debian.DebianLock | None = field(default=None, repr=False)

    @property
    def outdated(self) -> bool:
        return self.status in ("unlocked", "stale") or (
            self.status == "checked" and bool(self.packages))


@dataclass
class Report:
    image: Path
    variants: list[VariantReport]
    debian: DebianReport

    @property
    def outdated(self) -> bool:
        return any(v.outdated for v in self.variants) or self.debian.outdated

    @property
    def errors(self) -> list[str]:
        out = [f"{v.variant}: {v.error}" for v in self.variants if v.error]
        return out + ([f"debian: {self.debian.error}"] if self.debian.error else [])


def newer(candidate: str | None, than: str) -> bool:
    if candidate is None:
        return False
    try:
        return Version(candidate) > Version(than)
    except InvalidVersion:
        return candidate != than


def _shown(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def to_json(report: Report) -> dict[str, Any]:
    """The ``--format json`` document (outdated.schema.json)."""
    d = report.debian
    return {
        "schema": SCHEMA_VERSION,
        "image": _shown(report.image),
        "outdated": report.outdated,
        "python": [{
            "variant": v.variant,
            "lock": _shown(v.lock),
            "error": v.error,
            "packages": [{
                "name": p.name, "layer": p.layer, "locked": p.locked, "wanted": p.wanted,
                "latest": p.latest, "pinned": p.pinned, "outdated": p.outdated,
            } for p in v.packages],
        } for v in report.variants],
        "debian": {
            "base": d.base,
            "lock": _shown(d.lock),
            "status": d.status,
            "error": d.error,
            "packages": [{
                "name": p.name, "locked": p.locked, "candidate": p.candidate,
                "origin": p.origin, "security": p.security,
            } for p in d.packages],
        },
        "errors": report.errors,
    }


def dumps(report: Report) -> str:
    return json.dumps(to_json(report), indent=2, sort_keys=False) + "\n"


# --------------------------------------------------------------------------- Python


def parse_requirements_out(text: str) -> dict[str, str]:
    """``name==version`` of uv's output (no hashes needed here)."""
    out = {}
    for line in text.splitlines():
        m = _REQ_RE.match(line.strip())
        if m:
            out[spec_mod.normalize(m.group(1))] = m.group(2)
    return out


def _uv_versions(spec: ImageSpec, requirements: str, *, no_deps: bool,
                 find_links: Sequence[Path], index_url: str | None, what: str) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="ops-outdated-") as tmp:
        src, out = Path(tmp) / "in.txt", Path(tmp) / "out.txt"
        src.write_text(requirements)
        cmd = [lock_mod.uv_binary(), "pip", "compile", str(src), "--output-file", str(out),
               "--python-version", spec.python, "--python-platform", spec.platform,
               "--no-header", "--quiet", "--no-annotate", "--upgrade",
               *(["--no-deps"] if no_deps else [])]
        for d in find_links:
            cmd += ["--find-links", str(d)]
        cmd += lock_mod.index_args(index_url)
        done = run_mod.capture(cmd, what=f"uv resolving {what}",
                               env={**os.environ, "UV_NO_PROGRESS": "1"})
        if done.returncode:
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            raise OpsError(f"uv could not resolve {what}: "
                           f"{' '.join(lines[-3:]) if lines else done.returncode}",
                           hint="torch's CPU build needs --find-links DIR ($OPS_FIND_LINKS); "
                                "is the package index reachable?")
        return parse_requirements_out(out.read_text())


def layer_of(spec: ImageSpec, lock: spec_mod.Lock) -> dict[str, str]:
    return {p.name: layer.name for layer, members in spec_mod.split_layers(spec, lock)
            for p in members}


def check_python(spec: ImageSpec, variant: Variant, *, find_links: Sequence[Path] = (),
                 index_url: str | None = None) -> VariantReport:
    path = spec.lock_path(variant.name)
    report = VariantReport(variant.name, path)
    lock = spec_mod.parse_lock(path)
    try:
        wanted = _uv_versions(spec, spec_mod.resolver_input(spec, variant), no_deps=False,
                              find_links=find_links, index_url=index_url,
                              what=f"the {variant.name} variant afresh")
        latest = _uv_versions(spec, "".join(f"{n}\n" for n in sorted(lock.packages)),
                              no_deps=True, find_links=find_links, index_url=index_url,
                              what=f"the newest releases of the {variant.name} lock's packages")
    except OpsError as exc:
        report.error = str(exc)
        return report
    layers = layer_of(spec, lock)
    report.packages = [
        PyPackage(name, layers.get(name, "?"), p.version, wanted.get(name), latest.get(name),
                  variant.pins.get(name))
        for name, p in sorted(lock.packages.items())
    ]
    return report


# --------------------------------------------------------------------------- Debian


def check_debian(client: Any, spec: ImageSpec, log: Log) -> DebianReport:
    """The base's pending Debian updates: packages.lock against what apt would install now
    on the bootstrap (made when missing), or, for a base given by name, on that image."""
    from ops.images import build as build_mod

    if spec.base_debootstrap is None:
        name = str(spec.base_image)
        report = DebianReport(name, None, "unmanaged")
        try:
            resolution = debian.resolve(client, name, log=log)
        except OpsError as exc:
            report.status, report.error = "error", str(exc)
            return report
        report.packages = debian.pending(debian.DebianLock(Path(name), name,
                                                           resolution.installed), resolution)
        return report
    lock_path = spec.debian_lock_path
    report = DebianReport(None, lock_path, "checked")
    try:
        report.base = build_mod.bootstrap_tag(client, spec, log)
        assert lock_path is not None
        current = debian.parse_lock(lock_path) if lock_path.exists() else None
        report.current = current
        report.resolution = debian.resolve(client, report.base, log=log)
    except OpsError as exc:
        report.status, report.error = "error", str(exc)
        return report
    if current is None:
        report.status = "unlocked"
    elif current.bootstrap != report.base:
        report.status = "stale"
    report.packages = debian.pending(current, report.resolution)
    return report


# --------------------------------------------------------------------------- both


def check(client: Any, spec: ImageSpec, variants: Sequence[Variant], *,
          find_links: Sequence[Path] = (), index_url: str | None = None,
          log: Log = _LOG.info) -> Report:
    """Every variant's Python check and the Debian check, at once."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(variants) + 1) as pool:
        deb = pool.submit(check_debian, client, spec, log)
        py = [pool.submit(check_python, spec, v, find_links=find_links, index_url=index_url)
              for v in variants]
        return Report(spec.dir, [f.result() for f in py], deb.result())


# --------------------------------------------------------------------------- pip-audit


@dataclass(frozen=True)
class Vulnerability:
    package: str
    version: str
    id: str
    fix_versions: tuple[str, ...]
    aliases: tuple[str, ...] = ()


@dataclass
class Audit:
    """pip-audit's answer for one lock: the vulnerabilities, and how much it could see."""

    vulnerabilities: list[Vulnerability] = field(default_factory=list)
    audited: int = 0
    skipped: int = 0
    unavailable: str | None = None  # why the advisory data could not be read (None: it was)


def parse_audit(data: dict[str, Any]) -> Audit:
    """pip-audit's ``--format json``: ``{"dependencies": [{name, version, vulns: [{id,
    fix_versions, aliases}]} | {name, skip_reason}], "fixes": [...]}``."""
    audit = Audit()
    deps = data.get("dependencies") or []
    for dep in deps:
        if dep.get("skip_reason"):
            audit.skipped += 1
            continue
        audit.audited += 1
        for vuln in dep.get("vulns") or []:
            audit.vulnerabilities.append(Vulnerability(
                spec_mod.normalize(str(dep["name"])), str(dep.get("version", "")),
                str(vuln.get("id", "?")), tuple(str(v) for v in vuln.get("fix_versions") or ()),
                tuple(str(a) for a in vuln.get("aliases") or ())))
    if deps and audit.audited == 0:
        audit.unavailable = (f"PyPI's advisory data answered for none of the {len(deps)} "
                             "packages (pip-audit: not found on PyPI)")
    return audit


def _pip_audit() -> str | None:
    return shutil.which("pip-audit") or shutil.which("pip-audit",
                                                     path=str(Path(sys.executable).parent))


def audit(lock_path: Path, *, timeout: int = 600,
          env: dict[str, str] | None = None) -> Audit:
    """pip-audit on a lock file, against PyPI's advisory data; never raises for an advisory
    source that cannot be read: ``unavailable`` says why."""
    tool = _pip_audit()
    if tool is None:
        return Audit(unavailable="pip-audit is not installed (pip install pip-audit)")
    with tempfile.TemporaryDirectory(prefix="ops-audit-") as tmp:
        out = Path(tmp) / "audit.json"
        argv = [tool, "--requirement", str(lock_path), "--no-deps", "--disable-pip",
                "--format", "json", "--vulnerability-service", "pypi",
                "--progress-spinner", "off", "--output", str(out)]
        try:
            done = run_mod.capture(argv, what="pip-audit", timeout=timeout, env=env)
        except OpsError as exc:  # no answer in time: the rest goes on without it
            return Audit(unavailable=exc.message)
        try:
            data = json.loads(out.read_text())
        except (OSError, ValueError):
            return Audit(unavailable=_audit_failure(done.returncode, done.stderr))
    return parse_audit(data)


def _audit_failure(code: int, stderr: str) -> str:
    """pip-audit's failure in one line: an unreachable advisory source said as such."""
    network = re.search(r"(ProxyError|ConnectionError|ConnectTimeout|ReadTimeout|"
                        r"NameResolutionError|SSLError)", stderr)
    if network:
        return f"PyPI's advisory data is unreachable ({network.group(1)})"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return f"pip-audit failed (exit {code}): {lines[-1][:160] if lines else 'no output'}"


@dataclass(frozen=True)
class Fix:
    name: str
    locked: str
    to: str  # what a re-lock picks now
    ids: tuple[str, ...]


def security_fixes(vulns: Sequence[Vulnerability], packages: Sequence[PyPackage]
                   ) -> tuple[list[Fix], list[str]]:
    """The vulnerable packages a re-lock fixes (its ``wanted`` reaches a fixed version),
    and a line for each one it cannot fix (no fix released, or held below it)."""
    by_name = {p.name: p for p in packages}
    fixes: dict[str, Fix] = {}
    notes = []
    for v in vulns:
        row = by_name.get(v.package)
        fixed = [f for f in v.fix_versions if newer(f, v.version)]
        if row is None:
            continue
        if not fixed:
            notes.append(f"{v.package} {v.version}: {v.id} has no fixed release yet")
            continue
        first = min(fixed, key=Version)
        if row.wanted is None or not (row.wanted == first or newer(row.wanted, first)):
            why = f"image.yml pins {row.pinned}" if row.pinned else \
                f"the requirements allow at most {row.wanted}"
            notes.append(f"{v.package} {v.version}: {v.id} is fixed in {first}, but {why}")
            continue
        old = fixes.get(v.package)
        fixes[v.package] = Fix(v.package, row.locked, row.wanted,
                               (*(old.ids if old else ()), v.id))
    return sorted(fixes.values(), key=lambda f: f.name), notes
