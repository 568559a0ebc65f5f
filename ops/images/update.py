"""`ops images update`: re-lock what is outdated, rebuild, test, push, and say what moved.

Read once, plan in Python, apply: :func:`plan` turns an outdated report (and, with
``--security-only``, pip-audit's answer) into the moves to make, each with its reason; the
apply re-locks (uv for the variants' locks, apt's resolution for base/packages.lock),
builds (Docker's cache keeps every layer before the first changed slice), runs the image's
tests and, when asked, pushes. If a build or a test fails, the lock files are put back as
they were. :func:`summary` is the Markdown a bot pastes into a merge request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops import Log
from ops.errors import OpsError
from ops.images import debian
from ops.images import outdated as od
from ops.images import spec as spec_mod
from ops.images.spec import ImageSpec, Variant

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Move:
    """One package moved: ``where`` is a variant's name, or ``debian``."""

    where: str
    name: str
    old: str | None
    new: str | None
    reason: str = ""


@dataclass
class Plan:
    python: dict[str, list[str]] = field(default_factory=dict)  # variant -> names to move
    debian: bool = False  # re-lock base/packages.lock
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)  # (where, name) -> why
    notes: list[str] = field(default_factory=list)  # what is not moved, and why

    @property
    def empty(self) -> bool:
        return not any(self.python.values()) and not self.debian


def plan(report: od.Report, *, security_only: bool = False,
         audits: dict[str, od.Audit] | None = None,
         packages: Sequence[str] = ()) -> Plan:
    """What to re-lock. All: every outdated package of each variant, and the Debian lock
    when anything in it is pending. ``security_only``: the Debian security updates, and the
    Python packages pip-audit knows a vulnerability of that a re-lock fixes. ``packages``:
    only these Python packages (no Debian)."""
    out = Plan()
    only = {spec_mod.normalize(p) for p in packages}
    for v in report.variants:
        if v.error:
            raise OpsError(f"cannot plan the {v.variant} variant: {v.error}")
        names: list[str] = []
        if security_only:
            a = (audits or {}).get(v.variant)
            if a is None or a.unavailable:
                out.notes.append(f"{v.variant}: Python security fixes not checked: "
                                 f"{a.unavailable if a else 'no audit'}")
            else:
                fixes, notes = od.security_fixes(a.vulnerabilities, v.packages)
                out.notes += [f"{v.variant}: {n}" for n in notes]
                for f in fixes:
                    names.append(f.name)
                    out.reasons[(v.variant, f.name)] = f"security: {', '.join(f.ids)}"
        else:
            for p in v.outdated:
                names.append(p.name)
                out.reasons[(v.variant, p.name)] = "update"
        if only:
            out.notes += [f"{v.variant}: {n} left (not named by --package)"
                          for n in names if n not in only]
            names = [n for n in names if n in only]
        if names:
            out.python[v.variant] = sorted(names)
    d = report.debian
    if only:
        return out
    if d.status == "error":
        out.notes.append(f"debian: not checked: {d.error}")
    elif d.status == "unmanaged":
        if d.packages:
            out.notes.append(f"debian: {d.base} is given by name: its {len(d.packages)} "
                             "pending update(s) are for whoever makes it")
    elif d.status in ("unlocked", "stale"):
        out.debian = True
    else:
        chosen = [p for p in d.packages if p.security or not security_only]
        out.debian = bool(chosen)
        for pending in chosen:
            out.reasons[("debian", pending.name)] = "security" if pending.security else "update"
        if security_only and len(chosen) < len(d.packages):
            out.notes.append(f"debian: {len(d.packages) - len(chosen)} regular update(s) "
                             "left (--security-only)")
    return out


def moves(where: str, old: dict[str, str], new: dict[str, str],
          reasons: dict[tuple[str, str], str]) -> list[Move]:
    """Every package whose version differs between two locks (what came along too)."""
    out = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            reason = reasons.get((where, name)) or (
                "new" if name not in old else "removed" if name not in new else "with the others")
            out.append(Move(where, name, old.get(name), new.get(name), reason))
    return out


# --------------------------------------------------------------------------- the result


@dataclass
class Built:
    variant: str
    old_tag: str | None
    tag: str
    old_size: int | None
    size: int | None
    rebuilt_from: str | None  # the first step not from Docker's cache (None: all cached)
    cached: int = 0
    steps: int = 0
    tests: str = ""
    passed: bool = True
    pushed: str | None = None
    skipped: str | None = None  # why nothing was built (the tag exists already)


@dataclass
class Result:
    image: Path
    moves: list[Move] = field(default_factory=list)
    built: list[Built] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nothing: bool = False
    restored: bool = False
    security_only: bool = False

    @property
    def passed(self) -> bool:
        return all(b.passed for b in self.built)


def _size(n: int | None) -> str:
    return f"{n / 1e6:,.0f} MB" if n is not None else "?"


def _delta(old: int | None, new: int | None) -> str:
    if old is None or new is None:
        return f"{_size(new)} (no earlier image here to compare)"
    d = new - old
    return f"{_size(old)} -> {_size(new)} ({'+' if d >= 0 else '-'}{abs(d) / 1e6:,.1f} MB)"


def summary(result: Result) -> str:
    """Markdown for a merge request: what moved, the new tags, sizes, tests."""
    lines = [f"### Course image update ({result.image.name})", ""]
    if result.nothing:
        lines.append("No security fix is pending: no lock changed, nothing was built."
                     if result.security_only else
                     "Nothing is outdated: no lock changed, nothing was built.")
        lines += [f"- {n}" for n in result.notes]
        return "\n".join(lines) + "\n"
    lines += ["| where | package | from | to | why |", "|---|---|---|---|---|"]
    for m in result.moves:
        lines.append(f"| {m.where} | {m.name} | {m.old or '-'} | {m.new or '-'} | {m.reason} |")
    lines.append("")
    for b in result.built:
        lines.append(f"**{b.variant}**: `{b.old_tag or '(none built here)'}` -> `{b.tag}`")
        lines.append(f"- size: {_delta(b.old_size, b.size)}")
        if b.skipped:
            lines.append(f"- layers: nothing built ({b.skipped})")
        else:
            lines.append(f"- layers: {b.cached} of {b.steps} steps from cache"
                         + (f", rebuilt from `{b.rebuilt_from}`" if b.rebuilt_from else ""))
        lines.append(f"- tests: {'passed' if b.passed else 'FAILED'} ({b.tests})")
        if b.pushed:
            lines.append(f"- pushed: `{b.pushed}` (recorded in state/images.json)")
    if result.notes:
        lines += ["", "Not moved:"] + [f"- {n}" for n in result.notes]
    if result.restored:
        lines += ["", "The lock files were put back as they were."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- apply


@dataclass
class _Saved:
    files: dict[Path, str | None]

    @classmethod
    def of(cls, paths: Sequence[Path]) -> _Saved:
        return cls({p: p.read_text() if p.exists() else None for p in paths})

    def restore(self) -> None:
        for path, text in self.files.items():
            if text is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(text)


def _first_rebuilt(step_log: list[tuple[int, str, bool]]) -> str | None:
    for _, text, cached in step_log:
        if not cached and not text.startswith("FROM"):
            return text[:80]
    return None


def _tests_line(checks: Sequence[Any]) -> str:
    """``6 of 6 checks; pytest in the image: 8 passed in 0.12s`` (or the first failure)."""
    failed = [c for c in checks if not c.ok]
    pytest_line = next((c.detail for c in checks if c.name.startswith("image tests")), "")
    head = f"{len(checks) - len(failed)} of {len(checks)} checks"
    if failed:
        return f"{head}; failed: {failed[0].name}: {failed[0].detail[:120]}"
    return f"{head}; pytest in the image: {pytest_line}" if pytest_line else head


def apply(client: Any, spec: ImageSpec, variants: Sequence[Variant], report: od.Report,
          the_plan: Plan, *, cuda: str | None, find_links: Sequence[Path] = (),
          index_url: str | None = None, wheelhouse: Path | None = None,
          security_only: bool = False, uid: int | None = None, ca_bundle: Path | None = None,
          push: Callable[[Any], str] | None = None, log: Log = _LOG.info) -> Result:
    """Re-lock, build, test and (``push``: a function of the prepared build that pushes it
    and returns its reference) push. Locks are put back if a build or a test fails."""
    from ops.images import build as build_mod
    from ops.images import lock as lock_mod
    from ops.images import smoke

    result = Result(spec.dir, notes=list(the_plan.notes), security_only=security_only)
    if the_plan.empty:
        result.nothing = True
        return result
    paths = [spec.lock_path(v.name) for v in variants] + [spec.sources_path]
    if spec.debian_lock_path is not None:
        paths.append(spec.debian_lock_path)
    saved = _Saved.of(paths)
    before: dict[str, tuple[str | None, int | None]] = {}
    for v in variants:
        try:
            p = build_mod.prepare(client, spec, v, cuda=cuda, uid=uid, ca_bundle=ca_bundle,
                                  log=lambda _: None, make_base=False)
            image = client.images.get(p.ref) if build_mod.exists_locally(client, p.ref) else None
            before[v.name] = (p.tag, image.attrs.get("Size") if image else None)
        except OpsError:
            before[v.name] = (None, None)
    try:
        d = report.debian
        if the_plan.debian:
            assert d.resolution is not None and d.base is not None and d.lock is not None
            new = debian.relocked(d.current if d.status == "checked" else None, d.resolution,
                                  security_only=security_only)
            d.lock.write_text(debian.format_lock(d.base, new))
            result.moves += moves("debian", d.current.packages if d.current else {}, new,
                                  the_plan.reasons)
            log(f"{d.lock}: re-locked ({len(new)} packages)")
        for v in variants:
            names = the_plan.python.get(v.name, [])
            if not names:
                continue
            old = spec_mod.parse_lock(spec.lock_path(v.name))
            lock_mod.lock(spec, v, cuda=cuda, find_links=find_links, upgrade=names,
                          wheelhouse=wheelhouse, log=log, index_url=index_url)
            new_lock = spec_mod.parse_lock(spec.lock_path(v.name))
            result.moves += moves(v.name, {n: p.version for n, p in old.packages.items()},
                                  {n: p.version for n, p in new_lock.packages.items()},
                                  the_plan.reasons)
        for v in variants:
            p = build_mod.prepare(client, spec, v, cuda=cuda, uid=uid, ca_bundle=ca_bundle,
                                  log=log)
            old_tag, old_size = before[v.name]
            if p.tag == old_tag:
                continue
            made = build_mod.build(client, p, wheelhouse=wheelhouse, log=log,
                                   index_url=index_url)
            image = client.images.get(p.ref)
            checks = smoke.run(client, p.ref, port=spec.port, log=log, jupyter=spec.jupyter,
                               gpu=v.cuda and smoke.host_has_gpu(client))
            failed = [c for c in checks if not c.ok]
            b = Built(v.name, old_tag, p.tag, old_size, image.attrs.get("Size"),
                      _first_rebuilt(made.step_log), made.cached_steps, made.steps,
                      _tests_line(checks), not failed, skipped=made.skipped)
            if not made.skipped:
                manifests = spec.dir / "build" / v.name
                build_mod.write_manifest(client, p, made, manifests)
            result.built.append(b)
            if failed:
                break
            if push is not None:
                b.pushed = push(p)
    except BaseException:
        saved.restore()
        raise
    if not result.passed:
        saved.restore()
        result.restored = True
    return result
