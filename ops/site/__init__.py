"""The course website: build (Jekyll in a local builder image), check, deploy, roll back.

``ops site build`` checks ``_config.yml`` and ``--out`` (never the source, the checkout or a
directory no build made), resolves the theme (ops/site/themes.py) and the plugins
(ops/site/plugins.py) and finds the semesters of the source (ops/site/source.py), all
before Jekyll; runs ``jekyll build`` in the builder image (ops/site/builder.py), copies the
static semesters in, and then checks every internal link and lists the external origins
the pages load from (ops/site/links.py). ``ops site deploy`` builds, then rsyncs a release
to every ``web`` host (only what changed is sent) and switches its ``previous`` and
``current`` links under the host's lock (ops/site/deploy.py); a build whose content hash
equals the live release's is not uploaded ("up to date"). ``ops site rollback`` swaps
``current`` and ``previous``. ``ops site serve`` previews on 127.0.0.1 (ops/site/serve.py).
``ops provision`` builds first (:func:`prebuild`), before any host, and deploys that build
after the machines phase. Settings come from the inventory's ``website_*`` variables, with
role ``website``'s defaults (roles/website/defaults/main.yml) where unset. It must not
configure the web server (nginx, TLS: role ``website``) nor reach a host but through
ops/ssh.py.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops import REPO_ROOT, Log
from ops import inventory as inv_mod
from ops.errors import InputError, OpsError, UsageError
from ops.site import builder, deploy, links, plugins, releases, source, themes

_LOG = logging.getLogger(__name__)
SEMESTER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
#: what website_root must not hold (role website asserts the same before templating nginx)
ROOT_BAD = re.compile(r"[\s;{}]")


@dataclass
class Options:
    """What the inventory says about building (the ``website_*`` variables)."""

    #: website_hostname of every web host: links to them are internal (and checked)
    hostnames: list[str] = field(default_factory=list)
    #: website_theme_dir: a local copy of the site's theme
    theme_dir: Path | None = None
    #: website_skip_plugins: plugins the builder cannot have, built without
    skip_plugins: list[str] = field(default_factory=list)
    #: website_link_check_allow: URL prefixes whose broken links are accepted
    link_allow: list[str] = field(default_factory=list)
    #: website_csp: the Content-Security-Policy the web hosts send
    csp: str | None = None
    #: website_builder: "debian" (Debian's jekyll and plugin packages, no network) or
    #: "bundler" (the site's Gemfile.lock from rubygems.org, where it is reachable)
    builder: str = "debian"
    #: variable -> where it is set ("file:line"), for messages
    where: dict[str, str] = field(default_factory=dict)
    #: website_cluster_info: the cluster's facts for the pages (``site.course_cluster``),
    #: from the inventory; None: the site gets none
    cluster: dict[str, Any] | None = None


@dataclass
class Plan:
    """What a build does besides Jekyll, decided before it runs (:func:`plan_build`)."""

    config: source.SiteConfig
    theme: themes.Theme | None
    plugins: plugins.PluginPlan
    semesters: list[source.Semester]
    inputs: builder.JekyllInputs
    #: what the build says about it, warnings first
    said: list[str]


@dataclass
class Built:
    out: Path
    config: source.SiteConfig
    baseurl: str
    hash: str
    seconds: float
    plan: Plan | None = None
    report: links.Report | None = None
    #: the build's phases: seconds of jekyll, the static copy, the link check, the hash
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class Settings:
    source: Path
    root: str
    baseurl: str
    keep: int
    hosts: list[inv_mod.Host]
    #: website_hostname of every web host: links to them are internal (and checked)
    hostnames: list[str]
    options: Options = field(default_factory=Options)
    #: the inventory's directory (where website_* are set, for the errors)
    inventory_dir: Path = Path(".")


@dataclass
class HostResult:
    host: str
    release: str
    action: str  # deployed | up to date | rolled back | archived
    pruned: list[str]
    seconds: float
    #: what rsync sent (None: nothing was uploaded)
    sent: deploy.Sent | None = None


def plan_build(src: Path, options: Options | None = None, *,
               semesters: bool = True) -> Plan:
    """Everything decided before Jekyll runs: the config (with its warnings), the theme,
    the plugins, the semesters (``semesters=False``: none, for an archive build). An
    InputError names the config line of what cannot be built."""
    opts = options or Options()
    cfg = source.load(src)
    said = [f"warning: {w}" for w in cfg.warnings]
    bundler = opts.builder == "bundler"
    if bundler:  # the site's own gems: its theme and plugins as GitHub Pages has them
        theme, pplan = None, plugins.PluginPlan(load=[p.value for p in cfg.plugins])
        said.append("theme and plugins: the site's Gemfile.lock (website_builder: bundler)")
    else:
        theme = themes.resolve(cfg, opts.theme_dir,
                               f"website_theme_dir ({opts.where.get('website_theme_dir', '')})"
                               .replace(" ()", ""))
        pplan = plugins.plan(cfg, theme, opts.skip_plugins)
    said += [f"warning: {w}" for w in pplan.warnings]
    if theme is not None:
        said.append(f"theme {theme.name} ({cfg.theme.key if cfg.theme else 'theme'}): "
                    f"{theme.via}")
    said += pplan.notes
    if pplan.load:
        said.append(f"plugins: {', '.join(pplan.load)}" + (
            f" (the builder installs {' '.join(pplan.packages)})" if pplan.packages else ""))
    sems = source.semesters(cfg.source, cfg.exclude)
    static = [s for s in sems if s.static] if semesters else []
    rendered = [s for s in sems if not s.static] if semesters else []
    if static:
        said.append(f"semesters copied as they are (static): {', '.join(s.id for s in static)}"
                    f" ({sum(s.files for s in static)} files)")
    if rendered:
        said.append(f"semesters rendered from their sources: "
                    f"{', '.join(s.id for s in rendered)}")
    extra = [f"{source.SEMESTERS}/{s.id}" for s in (static if semesters else sems)]
    inputs = builder.JekyllInputs(
        theme=theme,
        plugins=pplan.load if pplan.skipped else None,
        exclude=[*cfg.exclude, *extra] if extra else None,
        static=static,
        time=None if cfg.time_set else source.site_time(source.snapshot(cfg.source)),
        network=bundler,
        cluster=opts.cluster)
    return Plan(cfg, theme, pplan, static + rendered, inputs, said)


def build(src: Path, out: Path, *, baseurl: str | None = None, ca_bundle: Path | None = None,
          options: Options | None = None, semesters: bool = True,
          log: Log = _LOG.info) -> Built:
    """Check the source, build it into ``out`` (emptied), check every internal link (those
    to the web hosts' names and to the host of the site's ``url`` included)."""
    from ops import engine

    started = time.monotonic()
    opts = options or Options()
    plan = plan_build(src, opts, semesters=semesters)
    cfg = plan.config
    base = baseurl or cfg.baseurl
    builder.check_out(cfg.source, out)  # before Docker: a wrong --out removes nothing
    for line in plan.said:
        log(line)
    client = engine.client()
    if opts.builder == "bundler":
        image = builder.ensure_bundle_image(client, cfg.source, ca_bundle=ca_bundle, log=log)
    else:
        image = builder.ensure_image(client, ca_bundle=ca_bundle,
                                     site_packages=plan.plugins.packages, log=log)
    log(f"building {cfg.source} (baseurl {base})")
    phases: dict[str, float] = {}
    t0 = time.monotonic()
    builder.run_jekyll(client, image, cfg.source, out, baseurl=base, inputs=plan.inputs)
    phases["jekyll + static copy"] = time.monotonic() - t0
    t0 = time.monotonic()
    report = check_links(out, base, cfg, opts, log=log)
    phases["link check"] = time.monotonic() - t0
    t0 = time.monotonic()
    digest = releases.content_hash(out)
    phases["content hash"] = time.monotonic() - t0
    return Built(out, cfg, base, digest, time.monotonic() - started, plan, report, phases)


def check_links(out: Path, base: str, cfg: source.SiteConfig, opts: Options, *,
                log: Log = _LOG.info) -> links.Report:
    """The link check of a build (an OpsError naming the first broken link, every one
    logged), its allowed links counted and its external origins listed (and those
    ``website_csp`` blocks, as warnings)."""
    own = [*opts.hostnames, *([cfg.url_host] if cfg.url_host else [])]
    report = links.scan(out, base, own_hosts=own, site_baseurl=cfg.baseurl,
                        allow=opts.link_allow)
    if report.problems:
        for p in report.problems:
            log(f"broken link: {p}")
        first = report.problems[0]
        more = (f" (and {len(report.problems) - 1} more, listed above)"
                if len(report.problems) > 1 else "")
        hint = (f"fix the link in {cfg.source}; every internal link goes through relative_url"
                "; a link to accept as it is goes in website_link_check_allow")
        if first.page.startswith(f"{source.SEMESTERS}/") and \
                "/" in first.page[len(source.SEMESTERS) + 1:]:
            sem = first.page.split("/")[1]
            hint = (f"semester {sem} is copied as it is: it must have been built with baseurl "
                    f"{cfg.baseurl}/{source.SEMESTERS}/{sem}; " + hint)
        raise OpsError(f"broken link on {first.page}: {first.link} ({first.reason}){more}",
                       hint=hint)
    allowed = (f", {len(report.allowed)} broken but allowed (website_link_check_allow)"
               if report.allowed else "")
    log(f"links ok: {report.links} in {report.pages} pages and stylesheets{allowed}")
    log(f"external origins the pages load from: {links.origins_line(report.origins)}")
    if opts.csp:
        where = opts.where.get("website_csp", "")
        for d, origin, page in links.csp_blocked(opts.csp, report.origins):
            log(f"warning: website_csp{f' ({where})' if where else ''} blocks {d} {origin} "
                f"(loaded by {page}): add it to website_csp, or the page breaks in browsers")
    return report


def role_defaults() -> dict[str, Any]:
    """Role ``website``'s defaults, read as every role's are (ops/roles.py)."""
    from ops import roles

    return dict(roles.defaults("website"))


def _var_line(inventory_dir: Path, key: str) -> tuple[Path, int | None]:
    gv = inventory_dir / "group_vars"
    for path in [gv / "all.yml", gv / "web.yml", *sorted(gv.glob("*/*.yml"))]:
        if path.is_file():
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.startswith(f"{key}:"):
                    return path, n
    return gv / "all.yml", None


def resolve_source(inventory_dir: Path, value: str) -> Path:
    """``website_source``: absolute, else relative to the inventory, else to the checkout."""
    p = Path(value)
    if p.is_absolute():
        return p
    for base in (inventory_dir, REPO_ROOT):
        if (base / p).is_dir():
            return (base / p).resolve()
    return (inventory_dir / p).resolve()


def source_from_vars(inventory_dir: Path) -> Path:
    """``website_source`` of the inventory's group_vars (no hosts needed)."""
    value = inv_mod.load_vars_only(inventory_dir).get("website_source")
    if not value:
        raise UsageError(f"{inventory_dir / 'group_vars'}: website_source is not set",
                         hint="pass the site's directory: ops site build SOURCE")
    return resolve_source(inventory_dir.resolve(), str(value))


def settings(inv: inv_mod.Inventory, src: Path | None = None,
             keep: int | None = None) -> Settings:
    """The web hosts and ``website_*`` settings, checked (file:line) before any host."""
    hosts = inv.hosts_in("web")
    if not hosts:
        raise UsageError(f"{inv.hosts_file}: no host in group web",
                         hint="add the web server(s) to the web group")
    defaults = role_defaults()
    merged = {**defaults, **{k: v for k, v in hosts[0].vars.items() if k.startswith("website_")}}

    def where(key: str) -> tuple[Path, int | None]:
        return _var_line(inv.dir, key)

    if src is None:
        value = merged.get("website_source") or ""
        if not value:
            path, line = where("website_source")
            raise UsageError(f"{path}: website_source is not set",
                             hint="pass the site's directory, or set website_source "
                             "(see inventory/example/group_vars/all.yml)")
        src = resolve_source(inv.dir, str(value))
    root = merged.get("website_root")
    if not isinstance(root, str) or not root.startswith("/") or root.rstrip("/") in ("", "/"):
        path, line = where("website_root")
        raise InputError(path, line, f"website_root {root!r} must be an absolute directory",
                         hint="e.g. /srv/course-website")
    raw_keep = keep if keep is not None else merged.get("website_keep_releases")
    if isinstance(raw_keep, bool) or not isinstance(raw_keep, int) or raw_keep < 2:
        if keep is not None:
            raise UsageError(f"--keep {keep}: keep at least 2 releases",
                             hint="the current one and the one a rollback goes back to")
        path, line = where("website_keep_releases")
        raise InputError(path, line, f"website_keep_releases {raw_keep!r} must be a whole "
                         "number of at least 2", hint="the current and the previous release "
                         "are always kept; the default is 5")
    if ROOT_BAD.search(root):
        path, line = where("website_root")
        raise InputError(path, line, f"website_root {root!r} has a space, ';', '{{' or '}}'",
                         hint="nginx's configuration names it: use a plain path")
    baseurl = merged.get("website_baseurl")
    path, line = where("website_baseurl")
    source.check_baseurl(baseurl, path, line)
    names = _hostnames(hosts, defaults)
    return Settings(Path(src), root.rstrip("/"), str(baseurl), raw_keep, hosts, names,
                    _options(inv.dir, merged, names, inv), inv.dir)


def _options(inventory_dir: Path, merged: dict[str, Any], hostnames: list[str],
             inv: inv_mod.Inventory | None) -> Options:
    """The build's ``website_*`` settings, checked (file:line); ``inv``: the inventory, for
    ``website_cluster_info`` (none without a hosts.yml)."""
    where: dict[str, str] = {}

    def at(key: str) -> tuple[Path, int | None]:
        path, line = _var_line(inventory_dir, key)
        where[key] = f"{path}:{line}" if line else str(path)
        return path, line

    def str_list(key: str) -> list[str]:
        value = merged.get(key)
        path, line = at(key)
        if value is None or value == "":
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise InputError(path, line, f"{key} must be a list of names, not {value!r}",
                             hint=f"write {key}: [first, second]")
        return list(value)

    theme_dir = None
    value = merged.get("website_theme_dir")
    path, line = at("website_theme_dir")
    if value:
        if not isinstance(value, str) or "{{" in value:
            raise InputError(path, line, f"website_theme_dir must be a directory, not {value!r}")
        theme_dir = Path(value).expanduser()
        if not theme_dir.is_absolute():
            theme_dir = (inventory_dir / theme_dir).resolve()
    csp = merged.get("website_csp")
    path, line = at("website_csp")
    if csp is not None and not isinstance(csp, str):
        raise InputError(path, line, f"website_csp must be a policy string, not {csp!r}",
                         hint="e.g. website_csp: \"default-src 'self'\"")
    kind = merged.get("website_builder") or "debian"
    path, line = at("website_builder")
    if kind not in ("debian", "bundler"):
        raise InputError(path, line, f"website_builder {kind!r} is neither debian nor bundler",
                         hint="debian (the default, no network) or bundler (the site's "
                         "Gemfile.lock; rubygems.org must be reachable)")
    wanted = merged.get("website_cluster_info", False)
    path, line = at("website_cluster_info")
    if not isinstance(wanted, bool):
        raise InputError(path, line, f"website_cluster_info must be true or false, not "
                         f"{wanted!r}", hint="true: the pages get site.course_cluster")
    return Options(hostnames, theme_dir, str_list("website_skip_plugins"),
                   str_list("website_link_check_allow"),
                   " ".join(csp.split()) if csp else None, builder=str(kind), where=where,
                   cluster=(cluster_info(inv) if inv else {}) if wanted else None)


def cluster_info(inv: inv_mod.Inventory) -> dict[str, Any]:
    """What the course's pages may say of the cluster (``site.course_cluster`` where
    ``website_cluster_info`` is true), from the inventory and its state, never from a host:
    the login node, the hub's address and profiles, the pair's GPU cap, the longest job, the
    course image jobs run by default."""
    from ops import roles
    from ops.images import registry

    controllers = inv.hosts_in("slurm_controller")
    hub_hosts = inv.hosts_in("hub") or controllers
    web = {h.name for h in inv.hosts_in("web")}
    info: dict[str, Any] = {}
    if controllers:
        c = controllers[0].vars
        info["login_host"] = str(c.get("website_login_host") or controllers[0].name)
        info["pair_max_gpus"] = roles.setting(c, "slurm", "slurm_pair_max_gpus")
        info["max_time"] = str(roles.setting(c, "slurm", "slurm_max_time"))
    if hub_hosts:
        h = hub_hosts[0]
        name = (_hostnames([h], role_defaults())[0] if h.name in web else
                str(roles.setting(h.vars, "jupyterhub", "jupyterhub_hostname")))
        if "{{" in name:
            name = h.name
        info["hub_url"] = f"https://{name}/hub/"
        info["profiles"] = [
            {k: p.get(k) for k in ("name", "display", "cores", "gpus", "time")}
            for p in roles.setting(h.vars, "jupyterhub", "jupyterhub_profiles") or []
            if isinstance(p, dict)]
        info["spawn_timeout_minutes"] = int(
            roles.setting(h.vars, "jupyterhub", "jupyterhub_spawn_timeout")) // 60
        info["cull_idle_minutes"] = int(
            roles.setting(h.vars, "jupyterhub", "jupyterhub_cull_idle_timeout")) // 60
    _, default = registry.store_images(inv)
    if default.get("tag"):
        info["image_tag"] = default["tag"]
    return info


def build_options(inventory_dir: Path, inv: inv_mod.Inventory | None = None) -> Options:
    """The build's settings from the inventory, where it has them: the web hosts' merged
    ``website_*`` variables (else group_vars/all alone, else the role's defaults). Links to
    the web hosts' names are checked by ``ops site build`` too. ``inv``: the inventory
    loaded already (a build needs none: without it, one load is tried here)."""
    defaults = role_defaults()
    if inv is None:
        inv = maybe_load(inventory_dir)
    hosts = inv.hosts_in("web") if inv else []
    if hosts:
        found = hosts[0].vars
    elif inv is not None:
        found = inv.vars
    else:
        try:
            found = inv_mod.load_vars_only(inventory_dir)
        except (OpsError, OSError):
            found = {}
    merged = {**defaults, **{k: v for k, v in found.items() if k.startswith("website_")}}
    return _options(inventory_dir.resolve(), merged, _hostnames(hosts, defaults), inv)


def maybe_load(inventory_dir: Path) -> inv_mod.Inventory | None:
    """The inventory, for a command that can do without one (a site build): None where
    there is no hosts.yml or it does not load."""
    try:
        return inv_mod.load(inventory_dir)
    except (OpsError, OSError):
        return None


def _hostnames(hosts: list[inv_mod.Host], defaults: dict[str, Any]) -> list[str]:
    """Each web host's website_hostname; the role's default names the host itself."""
    names = []
    for h in hosts:
        value = str(h.vars.get("website_hostname") or defaults.get("website_hostname") or "")
        names.append(h.name if "{{" in value or not value else value)
    return sorted(set(names))


def provision_wanted(inv: inv_mod.Inventory) -> bool:
    """Does ``ops provision`` deploy the site? Yes when there are web hosts and
    ``website_source`` is set; then every input is checked here, before any host."""
    hosts = inv.hosts_in("web")
    if not hosts or not hosts[0].vars.get("website_source"):
        return False
    s = settings(inv)
    _check_same_baseurl(s, source.load(s.source))
    return True


def _check_same_baseurl(s: Settings, cfg: source.SiteConfig) -> None:
    if cfg.baseurl != s.baseurl:
        path, line = _var_line(s.inventory_dir, "website_baseurl")
        where = f"{path}:{line}" if line else str(path)
        raise InputError(cfg.config_file, _config_line(cfg.config_file, "baseurl"),
                         f"baseurl {cfg.baseurl!r} differs from website_baseurl "
                         f"{s.baseurl!r} ({where})",
                         hint="make them agree (nginx serves website_baseurl)")


def _config_line(path: Path, key: str) -> int | None:
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith(f"{key}:"):
            return n
    return None


def prebuild(inv: inv_mod.Inventory, out: Path, *, ca_bundle: Path | None = None,
             log: Log = _LOG.info) -> Built:
    """Build ``website_source`` into ``out`` for a later :func:`deploy_site` (``ops
    provision`` builds before any host is touched, so that a broken site fails early)."""
    s = settings(inv)
    cfg = source.load(s.source)
    _check_same_baseurl(s, cfg)
    return build(s.source, out, ca_bundle=ca_bundle, options=s.options, log=log)


def _sent(sent: deploy.Sent | None) -> str:
    if sent is None:
        return "-"
    return f"{sent.bytes / 1e6:.2f} MB, {sent.files} of {sent.total_files} files"


def deploy_site(inv: inv_mod.Inventory, src: Path | None = None, *, keep: int | None = None,
                force: bool = False, ca_bundle: Path | None = None,
                prebuilt: Built | None = None,
                log: Log = _LOG.info) -> tuple[Built, list[HostResult]]:
    """Build (or take ``prebuilt``, from :func:`prebuild`), then on every web host: rsync a
    release (only what changed is sent; the rest is hard-linked to the live release), point
    ``previous`` at the live one and ``current`` at the new one, unless the live release
    has the same content (``force`` uploads anyway); prune old releases."""
    s = settings(inv, src, keep)
    cfg = source.load(s.source)
    _check_same_baseurl(s, cfg)
    if prebuilt is not None and (prebuilt.config.source != cfg.source
                                 or prebuilt.baseurl != s.baseurl):
        raise UsageError(f"the prebuilt site is of {prebuilt.config.source} under "
                         f"{prebuilt.baseurl}, not of {cfg.source} under {s.baseurl}",
                         hint="build it with prebuild() from the same inventory")
    results: list[HostResult] = []
    with contextlib.ExitStack() as stack:
        if prebuilt is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ops-site-"))
            built = build(s.source, Path(tmp) / "site", ca_bundle=ca_bundle,
                          options=s.options, log=log)
        else:
            built = prebuilt
        name = releases.release_name(s.source)
        (built.out / releases.MARKER).write_text(f"name={name}\nhash={built.hash}\n")
        ids = [sem.id for sem in built.plan.semesters] if built.plan else []
        for host in s.hosts:
            t0 = time.monotonic()
            st = deploy.state(host, s.root)
            for sem in sorted(set(ids) & set(st.semesters)):
                log(f"{host.name}: semester {sem} is served from its `ops site archive` copy "
                    f"there, not from the source's {source.SEMESTERS}/{sem}/ (the archive "
                    "wins)")
            if st.hash == built.hash and not force:
                log(f"{host.name}: up to date (release {st.current})")
                results.append(HostResult(host.name, st.current or "", "up to date", [],
                                          time.monotonic() - t0))
                continue
            prune = releases.to_prune([*st.releases, name], s.keep, name, st.current)
            log(f"{host.name}: sending release {name} (what differs from "
                f"{st.current or 'nothing'})")
            pruned, sent = deploy.upload(host, s.root, name, built.out, st.current, prune)
            log(f"{host.name}: sent {_sent(sent)}; current -> {name}")
            results.append(HostResult(host.name, name, "deployed", pruned,
                                      time.monotonic() - t0, sent))
    return built, results


def rollback_plan(states: dict[str, deploy.HostState]) -> dict[str, str]:
    """Host -> the release a rollback makes current (its ``previous``); an error naming the
    first host that has none, before any host is touched."""
    plan = {}
    for name, st in states.items():
        if not st.previous or st.previous == st.current or st.previous not in st.releases:
            raise OpsError(f"{name}: no previous release to roll back to (current: "
                           f"{st.current or 'none'})",
                           hint="a host gets one with its second deploy; nothing was changed")
        plan[name] = st.previous
    return plan


def rollback(inv: inv_mod.Inventory, *, log: Log = _LOG.info) -> list[HostResult]:
    """Swap every web host's ``current`` and ``previous`` (a second rollback undoes it)."""
    s = settings(inv, Path("."))
    states = {host.name: deploy.state(host, s.root) for host in s.hosts}
    plan = rollback_plan(states)  # every host can roll back, or none is touched
    results = []
    for host in s.hosts:
        t0 = time.monotonic()
        now = deploy.rollback(host, s.root, states[host.name].current or "")
        log(f"{host.name}: current -> {now} (previous -> {states[host.name].current})")
        results.append(HostResult(host.name, now or plan[host.name], "rolled back", [],
                                  time.monotonic() - t0))
    return results


def archive(inv: inv_mod.Inventory, semester: str, src: Path | None = None, *,
            force: bool = False, ca_bundle: Path | None = None,
            log: Log = _LOG.info) -> list[HostResult]:
    """Build the site with baseurl ``<baseurl>/semesters/<id>`` (without the source's own
    semesters) and publish it there. An archived semester is replaced only with ``force``
    (the old copy stays, not served). It is served instead of a semester of the same id in
    the source."""
    if not SEMESTER_RE.match(semester):
        raise UsageError(f"semester {semester!r} is not a plain name",
                         hint="use letters, digits, '.', '_' or '-' (e.g. 2026-winter)")
    s = settings(inv, src)
    cfg = source.load(s.source)
    _check_same_baseurl(s, cfg)
    states = {host.name: deploy.state(host, s.root) for host in s.hosts}
    if not force:  # every host first: none is touched if one has it
        for host in s.hosts:
            if semester in states[host.name].semesters:
                raise OpsError(f"{host.name}: semester {semester} is archived already",
                               hint="pass --force to replace it (the old copy is kept, "
                               "not served); nothing was changed")
    base = f"{s.baseurl}/semesters/{semester}"
    results = []
    with tempfile.TemporaryDirectory(prefix="ops-site-") as tmp:
        built = build(s.source, Path(tmp) / "site", baseurl=base, ca_bundle=ca_bundle,
                      options=s.options, semesters=False, log=log)
        for host in s.hosts:
            t0 = time.monotonic()
            said, sent = deploy.archive(host, s.root, semester, built.hash[:12], built.out,
                                        force=force, current=states[host.name].current)
            log(f"{host.name}: archived at {base}/ (sent {_sent(sent)})"
                + (f" ({', '.join(said)})" if said else ""))
            results.append(HostResult(host.name, semester, "archived", [],
                                      time.monotonic() - t0, sent))
    return results
