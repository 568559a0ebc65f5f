"""`ops images ...`: lock, build, test, push, pull, prune, status, outdated, update
(registered by ops.cli)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ops.console import Opts, Table, common, confirmed, err, out, pass_opts, styled
from ops.errors import OpsError, UsageError
from ops.images import spec as spec_mod

if TYPE_CHECKING:
    from ops.inventory import Inventory


@click.group()
def images() -> None:
    """The course image: lock, build, test, push, pull, prune, status, outdated, update."""


index_option = click.option(
    "--index-url", default=lambda: os.environ.get("OPS_INDEX_URL") or None, metavar="URL",
    help="The Python package index (default: $OPS_INDEX_URL, else PyPI).")


def _find_links(given: tuple[Path, ...]) -> list[Path]:
    return list(given) or [Path(p) for p in os.environ.get("OPS_FIND_LINKS", "").split(":")
                           if p]


variant_option = click.option(
    "--variant", "variants", multiple=True,
    help="Only this variant (repeatable). Default: every variant in image.yml.",
)


image_option = click.option(
    "--image", "image_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None, help="The image's directory (image.yml, locks). Default: images/course.")


def _spec_and_variants(variants: tuple[str, ...], image_dir: Path | None = None
                       ) -> tuple[spec_mod.ImageSpec, list[Any]]:
    spec = spec_mod.load(image_dir) if image_dir else spec_mod.load()
    chosen = [spec.variant(v) for v in variants] if variants else list(spec.variants.values())
    return spec, chosen


def _cuda(opts: Opts) -> str | None:
    from ops import inventory as inv_mod

    value = inv_mod.load_vars_only(opts.inventory).get("course_image_cuda")
    return str(value) if value is not None else None


def _client() -> Any:
    from ops import engine

    return engine.client()


@contextmanager
def _progress(opts: Opts, what: str) -> Iterator[Any]:
    if opts.quiet or opts.verbose or not err.is_terminal:
        yield None
        return
    with Progress(TextColumn("[cyan]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task(what, total=None)

        def update(step: int, total: int, text: str) -> None:
            bar.update(task, completed=step, total=total,
                       description=f"{what}: {text[:50]}")

        yield update


def identity_options(f: Any) -> Any:
    """What changes an image's tag besides the files: the same on build, test and push."""
    f = click.option("--uid", type=click.IntRange(1, 65533),
                     help="UID of the image's default user (match a host account).")(f)
    return click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True,
                                                       path_type=Path),
                        help="A CA certificate the image must trust (an intercepting "
                             "proxy).")(f)


@images.command("lock")
@variant_option
@click.option("--upgrade", "upgrade", multiple=True, metavar="PACKAGE",
              help="Let this package move to its newest allowed version (repeatable); "
                   "the others keep their pins.")
@click.option("--find-links", "find_links", multiple=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Also look for wheels here (torch's CPU build). "
                   "Default: $OPS_FIND_LINKS, colon-separated.")
@click.option("--wheelhouse", type=click.Path(file_okay=False, path_type=Path),
              default=lambda: os.environ.get("OPS_WHEELHOUSE") or None,
              help="Leave the wheels built from source (image.yml's from_source) here "
                   "(default: $OPS_WHEELHOUSE; without one, `ops images fetch` builds them).")
@index_option
@click.option("--debian", is_flag=True,
              help="Lock the base's Debian packages instead (base/packages.lock): what "
                   "debootstrap and the suite's archives, security included, install now.")
@image_option
@common
@pass_opts
def lock_cmd(opts: Opts, variants: tuple[str, ...], upgrade: tuple[str, ...],
             find_links: tuple[Path, ...], wheelhouse: Path | None, index_url: str | None,
             debian: bool, image_dir: Path | None) -> None:
    """Re-resolve requirements.in into lock/<variant>.txt (uv, with hashes)."""
    from ops.images import lock as lock_mod

    spec, chosen = _spec_and_variants(variants, image_dir)
    if debian:
        _lock_debian(opts, spec)
        return
    links = _find_links(find_links)
    for variant in chosen:
        path, changed = lock_mod.lock(spec, variant, cuda=_cuda(opts), find_links=links,
                                      upgrade=upgrade, wheelhouse=wheelhouse, log=opts.say,
                                      index_url=index_url)
        lock = spec_mod.parse_lock(path)
        out.print(f"{path}: {len(lock.packages)} packages, torch {lock.version('torch')}"
                  f" ({'changed' if changed else 'unchanged'})")


def _lock_debian(opts: Opts, spec: spec_mod.ImageSpec) -> None:
    from ops.images import build as build_mod
    from ops.images import debian

    if spec.debian_lock_path is None:
        raise UsageError(f"{spec.file}: the base is an image given by name, not made here",
                         hint="its packages are locked where it is made")
    client = _client()
    bootstrap = build_mod.bootstrap_tag(client, spec, opts.say)
    resolution = debian.resolve(client, bootstrap, log=opts.say)
    path = spec.debian_lock_path
    text = debian.format_lock(bootstrap, resolution.resolved)
    changed = not path.exists() or path.read_text() != text
    if changed:
        path.write_text(text)
    out.print(f"{path}: {len(resolution.resolved)} Debian packages "
              f"({'changed' if changed else 'unchanged'})")


def _wheelhouse_option(required: bool) -> Any:
    return click.option(
        "--wheelhouse", type=click.Path(file_okay=False, path_type=Path), required=required,
        default=lambda: os.environ.get("OPS_WHEELHOUSE") or None,
        help="A directory of wheels (default: $OPS_WHEELHOUSE)." + (
            "" if required else " The build installs from it only, after fetching what it "
            "lacks unless --offline; without one, from PyPI."))


@images.command("fetch")
@variant_option
@_wheelhouse_option(required=True)
@common
@pass_opts
def fetch_cmd(opts: Opts, variants: tuple[str, ...], wheelhouse: Path) -> None:
    """Download every wheel the lock pins into the wheelhouse (for offline builds); build
    those of projects published only as source, and check their hashes."""
    from ops.images import wheelhouse as wh

    spec, chosen = _spec_and_variants(variants)
    sources = spec.source_builds()
    for variant in chosen:
        lock = spec_mod.parse_lock(spec.lock_path(variant.name))
        wh.fill(wheelhouse, lock, opts.say, python=spec.python, platform=spec.platform,
                sources=sources)
        out.print(f"{variant.name}: {wheelhouse} holds all {len(lock.packages)} pinned wheels")


@images.command("build")
@variant_option
@click.option("--if-changed", is_flag=True,
              help="Skip a variant whose tag is already here or in the course registry.")
@click.option("--force", is_flag=True, help="Build even when the tag exists.")
@_wheelhouse_option(required=False)
@click.option("--offline", is_flag=True, help="Never download: the wheelhouse must have all.")
@identity_options
@index_option
@image_option
@common
@pass_opts
def build_cmd(opts: Opts, variants: tuple[str, ...], if_changed: bool, force: bool,
              wheelhouse: Path | None, offline: bool, ca_bundle: Path | None,
              uid: int | None, index_url: str | None, image_dir: Path | None) -> None:
    """Render image.yml + Dockerfile.j2 and build, tagged by content; skip if up to date."""
    from ops.images import build as build_mod

    if offline and wheelhouse is None:
        raise UsageError("--offline needs --wheelhouse DIR")
    if force and if_changed:
        raise UsageError("--force and --if-changed contradict each other")
    spec, chosen = _spec_and_variants(variants, image_dir)
    client = _client()
    registry = _registry_or_none(opts, spec) if if_changed else None
    rows: list[tuple[str, str, str, str]] = []
    for variant in chosen:
        p = build_mod.prepare(client, spec, variant, cuda=_cuda(opts), uid=uid,
                              ca_bundle=ca_bundle, log=opts.say)

        def elsewhere(tag: str) -> str | None:
            if registry is not None and registry.has(tag):
                return f"the registry {registry.push_address}"
            return None

        with _progress(opts, f"building {variant.name}") as progress:
            built = build_mod.build(client, p, wheelhouse=wheelhouse, offline=offline,
                                    exists_elsewhere=elsewhere, force=force, log=opts.say,
                                    progress=progress, index_url=index_url)
        if built.skipped:
            opts.say(f"{variant.name}: up to date ({built.skipped})")
            rows.append((variant.name, p.ref, "up to date", "-"))
            manifests = spec.dir / "build" / variant.name
            if build_mod.exists_locally(client, p.ref) and \
                    not (manifests / f"{p.tag}.json").exists():
                opts.say(f"{variant.name}: wrote the missing manifest "
                         f"{build_mod.write_manifest(client, p, built, manifests)}")
            continue
        manifest = build_mod.write_manifest(client, p, built,
                                            spec.dir / "build" / variant.name)
        opts.say(f"{variant.name}: built {p.ref} in {built.seconds:.0f} s "
                 f"({built.cached_steps} of {built.steps} steps from cache); "
                 f"manifest {manifest}")
        rows.append((variant.name, p.ref, "built", f"{built.seconds:.0f} s"))
    t = Table("variant", "image", "result", "time")
    for row in rows:
        t.add_row(*row)
    out.print(t)


def _registry_or_none(opts: Opts, spec: spec_mod.ImageSpec) -> Any:
    from ops.images import registry as reg

    try:
        return reg.from_inventory(opts.inv, spec.repository)
    except OpsError as exc:
        opts.say(f"not asking a registry: {exc}")
        return None


def _prepared(opts: Opts, variant: Any, spec: spec_mod.ImageSpec, client: Any,
              uid: int | None, ca_bundle: Path | None, *, local: bool = True) -> Any:
    """The variant's tag as `build` computes it, without building anything (the base
    image included); ``local``: the image must be on this machine."""
    from ops.images import build as build_mod

    p = build_mod.prepare(client, spec, variant, cuda=_cuda(opts), uid=uid,
                          ca_bundle=ca_bundle, log=opts.say, make_base=False)
    if local and not build_mod.exists_locally(client, p.ref):
        raise OpsError(f"{p.ref} is not built on this machine",
                       hint=f"`ops images build --variant {variant.name}` first")
    return p


@images.command("test")
@variant_option
@click.option("--gpu/--no-gpu", default=None,
              help="Give a CUDA variant's container the GPUs (default: when the engine has "
                   "the NVIDIA runtime). CPU variants never get them.")
@identity_options
@common
@pass_opts
def test_cmd(opts: Opts, variants: tuple[str, ...], gpu: bool | None, uid: int | None,
             ca_bundle: Path | None) -> None:
    """Smoke-test the built image: imports, torch, CUDA, pip check, user, Jupyter."""
    from ops.images import smoke

    spec, chosen = _spec_and_variants(variants)
    client = _client()
    failed = 0
    for variant in chosen:
        p = _prepared(opts, variant, spec, client, uid, ca_bundle)
        with_gpu = variant.cuda and (smoke.host_has_gpu(client) if gpu is None else gpu)
        checks = smoke.run(client, p.ref, port=spec.port, gpu=with_gpu, log=opts.say,
                           jupyter=spec.jupyter)
        t = Table("check", "result", "detail", title=p.ref)
        for c in checks:
            t.add_row(c.name, styled("ok", "green") if c.ok else styled("FAILED", "red"), c.detail)
            failed += not c.ok
        out.print(t)
    if failed:
        raise OpsError(f"{failed} image check(s) failed", hint="see the table above (-v: all "
                       "output)")


@images.command("push")
@variant_option
@identity_options
@common
@pass_opts
def push_cmd(opts: Opts, variants: tuple[str, ...], uid: int | None,
             ca_bundle: Path | None) -> None:
    """Push the built image to the course registry; the GPU servers then pull it."""
    from ops.images import registry as reg

    spec, chosen = _spec_and_variants(variants)
    client = _client()
    registry = reg.from_inventory(opts.inv, spec.repository)
    registry.require_auth()
    for variant in chosen:
        p = _prepared(opts, variant, spec, client, uid, ca_bundle, local=False)
        digest = registry.digest(p.tag)
        if digest:
            opts.say(f"{variant.name}: {registry.server_ref(p.tag)} is already in the registry")
        else:
            _prepared(opts, variant, spec, client, uid, ca_bundle)  # must be built here
            digest = reg.push(client, registry, p.ref, p.tag, opts.say)
        if not digest:
            raise OpsError(f"the registry gave no digest for {p.tag}", hint="push again")
        _record_push(opts, registry, variant.name, p.tag, digest)
        out.print(f"{variant.name}: {registry.server_ref(p.tag)}")


def _record_push(opts: Opts, registry: Any, variant: str, tag: str, digest: str) -> None:
    """The variant's pushed tag in state/images.json, and the push in its history (what
    `ops images prune` keeps)."""
    import datetime

    from ops.images import registry as reg

    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    state = reg.load_state(opts.inventory)
    state[variant] = {"tag": tag, "digest": digest, "ref": registry.server_ref(tag),
                      "pushed_at": now}
    reg.save_state(opts.inventory, state,
                   reg.record_push(reg.load_history(opts.inventory), variant, tag, digest, now))


@images.command("pull")
@common
@pass_opts
def pull_cmd(opts: Opts) -> None:
    """Make every GPU server pull the pushed tags (playbooks/images.yml)."""
    from ops import machines

    argv = machines.playbook_argv(opts.inv, "images.yml", verbosity=opts.verbose,
                                  extra=image_extra_vars(opts.inv))
    code, _ = machines.run_playbook(argv, quiet=opts.quiet)
    if code:
        raise OpsError(f"pulling the course image failed (ansible-playbook exited {code})",
                       hint="see Ansible's output above")


def image_extra_vars(inv: Inventory) -> tuple[str, ...]:
    """``-e`` for the playbooks, as JSON, from state/images.json: the tags pushed last
    (``course_image_tags``: the GPU servers' Docker), every tag pushed and not pruned
    (``student_containers_images``: the students' shared store) and the default tag jobs
    run (``student_containers_default``)."""
    import json

    from ops.images import registry as reg

    state = reg.load_state(inv.dir)
    tags = [{"variant": v, "tag": s["tag"], "digest": s["digest"]}
            for v, s in sorted(state.items()) if s.get("digest")]
    kept, default = reg.store_images(inv)
    return ("-e", json.dumps({"course_image_tags": tags, "student_containers_images": kept,
                              "student_containers_default": default}))


@images.command("prune")
@click.option("--keep", type=click.IntRange(1, 100), default=2, show_default=True,
              help="Tags kept per variant (the newest pushed), besides those jobs use.")
@common
@pass_opts
def prune_cmd(opts: Opts, keep: int) -> None:
    """Remove old course image tags from the GPU servers (never one a job uses)."""
    from ops.images import prune as prune_mod
    from ops.images import registry as reg

    spec = spec_mod.load()
    registry = reg.from_inventory(opts.inv, spec.repository)
    ref = f"{registry.address}/{spec.repository}"
    state = reg.load_state(opts.inventory)
    held, in_use = prune_mod.observe(opts.inv, ref)
    plan = prune_mod.plan(reg.load_history(opts.inventory),
                          {v: s["tag"] for v, s in state.items()}, in_use, held, keep)
    t = Table("host", "where", "tag", "action", title=f"prune {ref}")
    for row in prune_mod.describe(plan):
        t.add_row(*row)
    out.print(t)
    if plan.empty:
        out.print("nothing to prune")
        if len(plan.history) != len(reg.load_history(opts.inventory)):
            reg.save_state(opts.inventory, state, plan.history)
        return
    if not confirmed(opts, "Remove these tags? (the registry keeps them: `ops images pull` "
                          "brings one back)"):
        raise OpsError("nothing removed", hint="-y answers yes")
    prune_mod.apply(opts.inv, ref, plan)
    out.print(f"pruned: {sum(len(s) + len(d) for s, d in plan.remove.values())} tag(s) "
              f"removed; kept {', '.join(sorted(plan.keep))}")


@images.command("status")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@common
@pass_opts
def status_cmd(opts: Opts, fmt: str) -> None:
    """The wanted tag of each variant, what the registry has, what each GPU server has."""
    import json

    from ops.images import build as build_mod
    from ops.images import registry as reg

    spec = spec_mod.load()
    client = _client()
    registry = reg.from_inventory(opts.inv, spec.repository)
    state = reg.load_state(opts.inventory)
    in_registry = set(registry.tags())
    on_servers = reg.server_images(opts.inv, f"{registry.address}/{spec.repository}")
    rows: list[dict[str, Any]] = []
    for variant in spec.variants.values():
        try:
            p = build_mod.prepare(client, spec, variant, cuda=_cuda(opts), log=lambda _: None,
                                  make_base=False)
            wanted, here = p.tag, build_mod.exists_locally(client, p.ref)
        except OpsError as exc:
            wanted, here = f"({exc.message[:40]})", False
        pushed = state.get(variant.name, {}).get("tag")
        rows.append({
            "variant": variant.name, "checkout": wanted, "built_here": here,
            "pushed": pushed, "in_registry": pushed in in_registry,
            "servers": {h: pushed in tags for h, tags in on_servers.items()},
        })
    if fmt == "json":
        out.print_json(json.dumps(rows))
        return
    t = Table("variant", "this checkout", "built here", "pushed (state)", "in registry",
              *on_servers)
    for r in rows:
        t.add_row(r["variant"], r["checkout"], "yes" if r["built_here"] else "no",
                  r["pushed"] or "-", "yes" if r["in_registry"] else "no",
                  *("yes" if ok else styled("no", "red") for ok in r["servers"].values()))
    out.print(t)


# --------------------------------------------------------------------------- updates


def _outdated_report(opts: Opts, spec: spec_mod.ImageSpec, chosen: list[Any],
                     find_links: tuple[Path, ...], index_url: str | None) -> Any:
    from ops.images import outdated as od

    opts.say(f"checking {', '.join(v.name for v in chosen)} and the base for newer versions")
    return od.check(_client(), spec, chosen, find_links=_find_links(find_links),
                    index_url=index_url, log=opts.say)


def _print_outdated(report: Any) -> None:
    for v in report.variants:
        if v.error:
            out.print(f"{v.variant}: not checked: {v.error}")
            continue
        shown = [p for p in v.packages if p.outdated or p.held]
        title = (f"{v.variant}: {len(v.outdated)} outdated, "
                 f"{sum(p.held for p in v.packages)} held back, "
                 f"{len(v.packages) - len(shown)} up to date")
        if not shown:
            out.print(title)
            continue
        t = Table("package", "layer", "locked", "wanted", "latest", "", title=title)
        for p in shown:
            note = (styled("outdated", "yellow") if p.outdated else
                    "pinned (image.yml)" if p.pinned else "held back")
            t.add_row(p.name, p.layer, p.locked, p.wanted or "(dropped)", p.latest or "?", note)
        out.print(t)
    d = report.debian
    if d.status == "error":
        out.print(f"debian: not checked: {d.error}")
        return
    security = sum(p.security for p in d.packages)
    titles = {"checked": f"debian ({d.base}): {len(d.packages)} pending, {security} security",
              "unlocked": f"debian: {d.lock} does not exist yet (`ops images lock --debian`)",
              "stale": f"debian: {d.lock} was made for another package list than {d.base}",
              "unmanaged": f"debian ({d.base}, given by name): {len(d.packages)} pending"}
    t = Table("package", "locked", "candidate", "", title=titles[d.status])
    for p in d.packages:
        t.add_row(p.name, p.locked or "(new)", p.candidate or "(removed)",
                  styled("security", "red") if p.security else "")
    out.print(t if d.packages else titles[d.status])


@images.command("outdated")
@variant_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              help="json: the document of ops/images/outdated.schema.json.")
@click.option("--find-links", "find_links", multiple=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Also look for wheels here (torch's CPU build). "
                   "Default: $OPS_FIND_LINKS, colon-separated.")
@index_option
@image_option
@common
@pass_opts
def outdated_cmd(opts: Opts, variants: tuple[str, ...], fmt: str, find_links: tuple[Path, ...],
                 index_url: str | None, image_dir: Path | None) -> None:
    """What has a newer version: each locked Python package (what a re-lock picks, and the
    newest release) and the base's Debian packages (security updates marked).

    Exits 0 when nothing is outdated, 9 (OUTDATED) when something is, 1 when a check could
    not run."""
    import sys

    from ops.errors import ExitCode

    spec, chosen = _spec_and_variants(variants, image_dir)
    report = _outdated_report(opts, spec, chosen, find_links, index_url)
    if fmt == "json":
        from ops.images import outdated as od

        out.print(od.dumps(report), end="", markup=False)
    else:
        _print_outdated(report)
    for line in report.errors:
        err.print(f"ops: error: {line}")
    if report.outdated:
        opts.say("something is outdated: `ops images update` re-locks it")
        sys.exit(ExitCode.OUTDATED)
    if report.errors:
        sys.exit(ExitCode.FAILED)
    opts.say("nothing is outdated")


@images.command("update")
@variant_option
@click.option("--security-only", is_flag=True,
              help="Only security fixes: Debian's security updates, and Python packages "
                   "pip-audit knows a vulnerability of that a newer allowed version fixes.")
@click.option("--package", "packages", multiple=True, metavar="NAME",
              help="Only this Python package (repeatable); the base is left as it is.")
@click.option("--push", is_flag=True,
              help="Push the new tags to the course registry and record them in "
                   "state/images.json.")
@click.option("--summary", "summary_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the Markdown summary to this file (for a merge request).")
@click.option("--find-links", "find_links", multiple=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Also look for wheels here (torch's CPU build). "
                   "Default: $OPS_FIND_LINKS, colon-separated.")
@_wheelhouse_option(required=False)
@index_option
@identity_options
@image_option
@common
@pass_opts
def update_cmd(opts: Opts, variants: tuple[str, ...], security_only: bool,
               packages: tuple[str, ...], push: bool, summary_file: Path | None,
               find_links: tuple[Path, ...], wheelhouse: Path | None, index_url: str | None,
               ca_bundle: Path | None, uid: int | None, image_dir: Path | None) -> None:
    """Re-lock what is outdated, rebuild (only the layers whose slices changed), run the
    image's tests and, with --push, push; print a summary for a merge request."""
    from ops.images import outdated as od
    from ops.images import update as up

    spec, chosen = _spec_and_variants(variants, image_dir)
    registry = None
    if push:
        from ops.images import registry as reg

        registry = reg.from_inventory(opts.inv, spec.repository)
        registry.require_auth()
    report = _outdated_report(opts, spec, chosen, find_links, index_url)
    audits = {}
    if security_only:
        for v in chosen:
            opts.say(f"{v.name}: asking pip-audit (PyPI's advisory data) about the lock")
            audits[v.name] = od.audit(spec.lock_path(v.name))
            a = audits[v.name]
            opts.say(f"{v.name}: pip-audit: {a.unavailable} - going on without it"
                     if a.unavailable else
                     f"{v.name}: pip-audit: {len(a.vulnerabilities)} known vulnerabilit"
                     f"{'y' if len(a.vulnerabilities) == 1 else 'ies'} in {a.audited} "
                     f"packages ({a.skipped} not audited)")
    the_plan = up.plan(report, security_only=security_only, audits=audits, packages=packages)

    def do_push(p: Any) -> str:
        return _push_recorded(opts, registry, p)

    result = up.apply(_client(), spec, chosen, report, the_plan, cuda=_cuda(opts),
                      find_links=_find_links(find_links), index_url=index_url,
                      wheelhouse=wheelhouse, security_only=security_only, uid=uid,
                      ca_bundle=ca_bundle, push=do_push if registry is not None else None,
                      log=opts.say)
    text = up.summary(result)
    out.print(text, end="", markup=False)
    if summary_file is not None:
        summary_file.write_text(text)
    if result.nothing:
        opts.say("nothing is outdated: no lock changed, nothing was built")
    if not result.passed:
        raise OpsError("the updated image failed its tests; the lock files are as they were",
                       hint="see the summary above (-v: every check's output)")


def _push_recorded(opts: Opts, registry: Any, p: Any) -> str:
    """Push a prepared build (unless the registry has its tag) and record it as the
    variant's pushed tag in state/images.json, as `ops images push` does."""
    from ops.images import registry as reg

    digest = registry.digest(p.tag) or reg.push(_client(), registry, p.ref, p.tag, opts.say)
    if not digest:
        raise OpsError(f"the registry gave no digest for {p.tag}", hint="push again")
    _record_push(opts, registry, p.variant.name, p.tag, digest)
    return str(registry.server_ref(p.tag))
