"""The site builder image (Debian's jekyll on the lab's base image) and `jekyll build` in it.

Staff need no Ruby: the image is made locally from ``images/site-builder/Dockerfile.j2``
with the Docker SDK, ``FROM`` the lab's debootstrap base image (no registry is pulled), and
tagged by the hash of what goes into it; an existing tag is reused. A site's plugins (and a
Debian-packaged theme) add their Debian packages in a layer of their own, so a site with
plugins gets an image of its own that shares the jekyll layer (ops/site/plugins.py).

The build runs as the caller's uid:gid, without network, the source bind-mounted read-only
at /src and the output directory read-write at /out. Jekyll reads the site's _config.yml and
then an override (``/ops/override.yml``): the theme as ops resolved it, the plugins it
loads, and the static semesters excluded. A local theme is mounted as an installed gem
(``/ops/gems``: a one-line gemspec and the theme's directory), so Jekyll layers it as any
gem theme. Static semesters are copied into the output after Jekyll, as they are (hard
links where the file system allows). Jekyll's errors are turned into one line naming the
file and line; its "destination shared by multiple files" warning is an error here.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from ops import REPO_ROOT, Log
from ops.errors import InputError, OpsError, UsageError
from ops.site.releases import BUILD_MARKER
from ops.site.source import Semester
from ops.site.themes import Theme

_LOG = logging.getLogger(__name__)
IMAGE_DIR = REPO_ROOT / "images" / "site-builder"
IMAGE_REPOSITORY = "course-ops/site-builder"
BUILD_TIMEOUT = 300


def _packages(image_dir: Path) -> list[str]:
    lines = (image_dir / "packages.txt").read_text(encoding="utf-8").splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


def render_dockerfile(base_image: str, *, ca_bundle: bool = False,
                      image_dir: Path = IMAGE_DIR, site_packages: list[str] | None = None) -> str:
    template = jinja2.Template((image_dir / "Dockerfile.j2").read_text(encoding="utf-8"),
                               undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return template.render(base_image=base_image, ca_bundle=ca_bundle,
                           packages=_packages(image_dir),
                           site_packages=sorted(set(site_packages or [])))


def image_tag(base_image: str, ca_bundle: bytes | None = None,
              image_dir: Path = IMAGE_DIR, site_packages: list[str] | None = None) -> str:
    """``course-ops/site-builder:<12 hex>``: the Dockerfile as rendered (the site's plugin
    packages in it), and the CA bundle."""
    digest = hashlib.sha256(render_dockerfile(base_image, ca_bundle=bool(ca_bundle),
                                              image_dir=image_dir,
                                              site_packages=site_packages).encode())
    digest.update(ca_bundle or b"")
    return f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:12]}"


def ca_bundle_bytes(path: Path | None) -> bytes | None:
    path = path or (Path(os.environ["OPS_CA_BUNDLE"]) if os.environ.get("OPS_CA_BUNDLE")
                    else None)
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(path, None, f"cannot read the CA bundle: {exc.strerror}",
                         hint="pass a PEM file to --ca-bundle (or OPS_CA_BUNDLE)") from None


def ensure_image(client: Any, *, ca_bundle: Path | None = None,
                 site_packages: list[str] | None = None, log: Log = _LOG.info) -> str:
    """The builder image's tag, building it (a few minutes, once) unless it exists."""
    from ops import rootfs

    base = rootfs.ensure_base_image(client, log=log)
    bundle = ca_bundle_bytes(ca_bundle)
    tag = image_tag(base, bundle, site_packages=site_packages)
    extra = f", with {' '.join(sorted(site_packages))}" if site_packages else ""
    dockerfile = render_dockerfile(base, ca_bundle=bundle is not None,
                                   site_packages=site_packages)
    return _build_image(client, tag, dockerfile, {"ca-bundle.crt": bundle},
                        f"Debian's jekyll{extra}", "is Debian's mirror reachable from "
                        "containers? (--ca-bundle for an intercepting proxy)", log)


def _build_image(client: Any, tag: str, dockerfile: str, files: dict[str, bytes | None],
                 what: str, hint: str, log: Log) -> str:
    from ops import engine

    with engine.errors(f"looking for image {tag}"):
        if engine.get(client.images, tag) is not None:
            return tag
    log(f"building the site builder image {tag} ({what}; a few minutes, once)")
    started = time.monotonic()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile.encode()), *files.items()):
            if data is None:
                continue
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    with engine.errors(f"building {tag}"):
        try:
            client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True,
                                forcerm=True, pull=False,
                                labels={engine.IMAGE_LABEL: "site-builder"})
        except Exception as exc:  # BuildError carries the log; keep its last line
            build_log = getattr(exc, "build_log", None) or []
            lines = [str(c.get("stream", c.get("error", ""))).strip() for c in build_log]
            last = next((ln for ln in reversed(lines) if ln), str(exc))
            raise OpsError(f"building the site builder image failed: {last}",
                           hint=hint) from None
    log(f"built {tag} in {time.monotonic() - started:.0f} s")
    return tag


# ----------------------------------------------------------------------------- bundler

BUNDLE_REPOSITORY = "course-ops/site-builder-bundle"


def bundle_files(source: Path) -> tuple[bytes, bytes]:
    """The site's Gemfile and Gemfile.lock (the bundler builder installs exactly the lock)."""
    gemfile, lock = source / "Gemfile", source / "Gemfile.lock"
    for path in (gemfile, lock):
        if not path.is_file():
            raise InputError(path, None, "missing: the bundler builder installs the site's "
                             "Gemfile.lock", hint="run `bundle lock` in the site where "
                             "rubygems.org is reachable, and commit both files; or set "
                             "website_builder: debian")
    return gemfile.read_bytes(), lock.read_bytes()


def render_bundle_dockerfile(builder_image: str, image_dir: Path = IMAGE_DIR) -> str:
    template = jinja2.Template((image_dir / "Dockerfile.bundler.j2").read_text(encoding="utf-8"),
                               undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return template.render(builder_image=builder_image)


def bundle_tag(builder_image: str, gemfile: bytes, lock: bytes,
               image_dir: Path = IMAGE_DIR) -> str:
    """``course-ops/site-builder-bundle:<12 hex>``: the Dockerfile, the Gemfile and its lock."""
    digest = hashlib.sha256(render_bundle_dockerfile(builder_image, image_dir).encode())
    digest.update(b"\0" + gemfile + b"\0" + lock)
    return f"{BUNDLE_REPOSITORY}:{digest.hexdigest()[:12]}"


def ensure_bundle_image(client: Any, source: Path, *, ca_bundle: Path | None = None,
                        log: Log = _LOG.info) -> str:
    """The bundler builder for the site's Gemfile.lock (``website_builder: bundler``): the
    Debian builder plus ``bundle install`` of the lock, from rubygems.org, tagged by the
    lock's hash; built once per lock."""
    gemfile, lock = bundle_files(source)
    builder = ensure_image(client, ca_bundle=ca_bundle, log=log)
    tag = bundle_tag(builder, gemfile, lock)
    return _build_image(client, tag, render_bundle_dockerfile(builder),
                        {"Gemfile": gemfile, "Gemfile.lock": lock},
                        "bundle install of the site's Gemfile.lock",
                        "is rubygems.org reachable from containers? The bundler builder "
                        "needs it (website_builder: debian does not)", log)


# ----------------------------------------------------------------------------- errors

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: "Liquid Exception: Liquid syntax error (line 6): Unknown tag 'bogus' in info.md", and in
#: an include or layout "Liquid syntax error (/src/_includes/staff.html line 3): Unknown tag
#: 'bogus' included in info.md" (the template named, the page after "included in").
_LIQUID = re.compile(r"Liquid Exception:\s*(?:Liquid (?:syntax )?error\s*)?"
                     r"(?:\((?:(?P<tfile>\S+) )?line (?P<line>\d+)\))?:?\s*(?P<msg>.*?)"
                     r"\s+(?:included\s+)?in\s+(?P<file>\S+)\s*$")
#: "YAML Exception reading /src/x.md: (<unknown>): found ... at line 2 column 8"
_YAML = re.compile(r"YAML Exception reading\s+(?P<file>\S+?):\s*(?:\(<unknown>\):\s*)?"
                   r"(?P<msg>.*?)(?:\s+at line (?P<line>\d+)(?: column \d+)?)?\s*$")
#: _config.yml: Psych's own line, "psych.rb:455:in `parse': (<unknown>): MSG at line N ..."
_PSYCH = re.compile(r"\(<unknown>\):\s*(?P<msg>.*?)\s+at line (?P<line>\d+)")
_GENERIC = re.compile(r"^(?:\S+\s+)?Error:\s*(?P<msg>.+)$")
#: "Dependency Error: Yikes! It looks like you don't have jemoji or one of its dependencies
#: installed."
_DEPENDENCY = re.compile(r"you don't have (?P<name>\S+) or one of its dependencies")
_CONFLICT = "The following destination is shared by multiple files"


def _local(file: str, source: Path) -> Path:
    """Jekyll's path (under /src in the container, or relative to the source) here."""
    p = file.strip().strip("'\"").rstrip(":")
    if p.startswith("/src/"):
        p = p[len("/src/"):]
    return source / p.lstrip("/")


def _is_include(path: Path, source: Path) -> bool:
    try:
        return path.relative_to(source).parts[:1] == ("_includes",)
    except ValueError:
        return False


def front_matter_lines(path: Path) -> int:
    """Lines the front matter takes (Liquid counts lines from the end of it)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return 0
    if not lines or lines[0].rstrip() != "---":
        return 0
    for i, line in enumerate(lines[1:], start=2):
        if line.rstrip() in ("---", "..."):
            return i
    return 0


def parse_errors(output: str, source: Path) -> InputError | OpsError | None:
    """Jekyll's output -> one error naming the file and line (None: no error in it).

    Jekyll skips a page whose front matter is not YAML and still exits 0: that is an error
    here too.
    """
    lines = [_ANSI.sub("", ln).strip() for ln in output.replace("\r", "").splitlines()]
    lines = [ln for ln in lines if ln]
    for ln in lines:
        m = _DEPENDENCY.search(ln)
        if m:
            from ops.site.plugins import missing_hint

            return OpsError(f"jekyll could not load the plugin {m['name']}",
                            hint=missing_hint(m["name"]))
    conflict = conflicts(lines, source)
    if conflict is not None:
        return conflict
    for ln in lines:
        m = _LIQUID.search(ln)
        if m:
            where = _local(m["tfile"] or m["file"], source)
            line = int(m["line"]) if m["line"] else None
            # Liquid counts from the end of the front matter; includes have none (Jekyll
            # reads an include's file as it is)
            if line is not None and not _is_include(where, source):
                line += front_matter_lines(where)
            return InputError(where, line, f"Liquid error: {m['msg']}",
                              hint="fix the tag, filter or variable there")
    for ln in lines:
        m = _YAML.search(ln)
        if m:
            where = _local(m["file"], source)
            return InputError(where, int(m["line"]) if m["line"] else None,
                              f"front matter is not valid YAML: {m['msg'].rstrip(',')}",
                              hint="fix the indentation or quoting between the --- lines")
    in_config = any("read_config_file" in ln for ln in lines)
    for ln in lines:
        m = _PSYCH.search(ln)
        if m and in_config:
            return InputError(source / "_config.yml", int(m["line"]),
                              f"not valid YAML: {m['msg']}",
                              hint="fix the indentation or quoting there")
        if m:
            return OpsError(f"jekyll failed: a YAML file of {source} is not valid: "
                            f"{m['msg']} at line {m['line']}",
                            hint="check _data/ and the front matter of the pages")
    for ln in lines:
        m = _GENERIC.match(ln)
        if m:
            return OpsError(f"jekyll failed: {m['msg']}", hint=f"in {source}; run with -v")
    return None


def conflicts(lines: list[str], source: Path) -> InputError | None:
    """Jekyll's "destination shared by multiple files" warning (two pages with one
    permalink: one silently overwrites the other) as an error naming both sources."""
    for i, ln in enumerate(lines):
        if _CONFLICT not in ln:
            continue
        rest = [x for x in lines[i + 1:i + 12] if not x.startswith("The written file")]
        dest = rest[0] if rest else "?"
        sources = []
        for x in rest[1:]:
            if not x.startswith("- "):
                break
            sources.append(_local(x[2:], source))
        if len(sources) < 2:
            continue
        rel = [str(_rel(p, source)) for p in sources]
        out = dest[len("/out/"):] if dest.startswith("/out/") else dest
        return InputError(sources[0], None,
                          f"{out} is made from both {rel[0]} and {' and '.join(rel[1:])} "
                          "(Jekyll: \"destination shared by multiple files\"): one page "
                          "would silently replace the other",
                          hint="give one of them another permalink; a previous semester "
                          "committed as sources renders again: commit it pre-built (static "
                          "HTML without front matter) or exclude it")
    return None


def _rel(path: Path, source: Path) -> Path:
    try:
        return path.relative_to(source)
    except ValueError:
        return path


# ----------------------------------------------------------------------------- build

#: in the container: the override config, the theme as an installed gem
OPS_DIR = "/ops"
OVERRIDE = f"{OPS_DIR}/override.yml"
GEM_DIR = f"{OPS_DIR}/gems"
THEME_VERSION = "0.0.0"


@dataclass
class JekyllInputs:
    """What ops adds to the site's own config (see the module's docstring)."""

    theme: Theme | None = None
    #: the plugins Jekyll loads (None: the site's list as it is)
    plugins: list[str] | None = None
    #: the site's exclude plus the static semesters (None: the site's as it is)
    exclude: list[str] | None = None
    static: list[Semester] = field(default_factory=list)
    #: Jekyll's ``time`` (site.time), when the site sets none: the source's newest change
    time: str | None = None
    #: the bundler builder: Jekyll with the site's own gems, and the network (a remote
    #: theme is fetched by jekyll-remote-theme, as on GitHub Pages)
    network: bool = False
    #: the cluster's facts (website_cluster_info), as ``site.course_cluster``: in the
    #: override config, never in the site's source
    cluster: dict[str, Any] | None = None

    def override(self) -> dict[str, Any]:
        o: dict[str, Any] = {}
        if self.cluster is not None:
            o["course_cluster"] = self.cluster
        if self.time is not None:
            o["time"] = self.time
        if self.theme is not None:
            o["theme"] = self.theme.name
            o["remote_theme"] = None
        if self.plugins is not None:
            o["plugins"] = list(self.plugins)
            o["gems"] = []
        if self.exclude is not None:
            o["exclude"] = list(self.exclude)
        return o


def jekyll_argv(baseurl: str | None, *, override: bool = False) -> list[str]:
    argv = ["build", "--source", "/src", "--destination", "/out", "--disable-disk-cache"]
    if override:
        argv += ["--config", f"/src/_config.yml,{OVERRIDE}"]
    if baseurl is not None:
        argv += ["--baseurl", baseurl]
    return argv


def theme_gemspec(name: str) -> str:
    """A gemspec that makes ``name`` an installed gem theme (its files are mounted at the
    gem's directory): Jekyll then layers it as any gem theme."""
    return (f"Gem::Specification.new do |s|\n  s.name = {json.dumps(name)}\n"
            f'  s.version = "{THEME_VERSION}"\n  s.summary = "the site\'s theme (a local copy)"\n'
            '  s.authors = ["course-ops"]\n  s.files = []\nend\n')


def _ops_dir(tmp: Path, inputs: JekyllInputs) -> dict[str, dict[str, str]]:
    """Write the override config and the theme's gemspec under ``tmp``; the volumes."""
    # JSON is YAML that Ruby's YAML 1.1 reads as written: "04:00:00" stays a string (PyYAML
    # would leave it unquoted, and Psych would read a sexagesimal 14400)
    (tmp / "override.yml").write_text(json.dumps(inputs.override(), sort_keys=True,
                                                 ensure_ascii=False) + "\n")
    volumes = {str(tmp): {"bind": OPS_DIR, "mode": "ro"}}
    theme = inputs.theme
    if theme is not None and theme.path is not None:
        full = f"{theme.name}-{THEME_VERSION}"
        (tmp / "gems" / "specifications").mkdir(parents=True)
        (tmp / "gems" / "gems" / full).mkdir(parents=True)  # the mount point
        (tmp / "gems" / "specifications" / f"{full}.gemspec").write_text(
            theme_gemspec(theme.name))
        volumes[str(theme.path)] = {"bind": f"{GEM_DIR}/gems/{full}", "mode": "ro"}
    return volumes


def check_out(source: Path, out: Path) -> Path:
    """``out``, resolved, if a build may empty it: not /, $HOME, the source, the course-ops
    checkout nor a directory holding one of them, not inside the source; a directory that
    exists is empty or was made by an earlier build (it holds BUILD_MARKER)."""
    source, out = source.resolve(), out.resolve()
    hint = "pass --out a new directory, or one an earlier `ops site build` made"

    def refuse(why: str) -> UsageError:
        return UsageError(f"--out {out}: {why}; nothing was removed", hint=hint)

    home = Path(os.path.expanduser("~")).resolve()
    if out == Path(out.anchor):
        raise refuse("is the root directory")
    for what, path in (("the site source", source), ("the course-ops checkout", REPO_ROOT),
                       ("your home directory", home)):
        if path == out or out in path.parents:
            raise refuse(f"is or holds {what} {path}")
    if source in out.parents:
        raise refuse(f"is inside the site source {source} (Jekyll would read it back)")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise refuse("is not a directory")
    if out.is_dir() and not (out / BUILD_MARKER).is_file() and any(out.iterdir()):
        raise refuse(f"is not empty and no earlier build made it (no {BUILD_MARKER} in it)")
    return out


def prepare_out(source: Path, out: Path) -> Path:
    """Check ``out`` (:func:`check_out`), empty it and mark it as a build's."""
    out = check_out(source, out)
    if out.is_dir():
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot make it: {exc.strerror}",
                         hint="pass a directory you can write") from None
    (out / BUILD_MARKER).write_text("made by ops site build; emptied by the next one\n")
    return out


def run_jekyll(client: Any, image: str, source: Path, out: Path, *,
               baseurl: str | None = None, inputs: JekyllInputs | None = None) -> str:
    """``jekyll build`` in the builder into ``out`` (checked and emptied first, see
    :func:`check_out`), then the static semesters copied in. Returns jekyll's output."""
    source = source.resolve()
    out = prepare_out(source, out)
    inputs = inputs or JekyllInputs()
    try:
        logs = _run_jekyll(client, image, source, out, baseurl, inputs)
        copy_static(inputs.static, source, out)
        return logs
    finally:  # Jekyll removes files it did not make: mark the directory again
        if out.is_dir():
            (out / BUILD_MARKER).write_text("made by ops site build; emptied by the next one\n")


def copy_static(semesters: list[Semester], source: Path, out: Path) -> int:
    """Copy each static semester into ``out/semesters/<id>/`` as it is: hard links where
    source and output share a file system, else copies. A file Jekyll made already there
    is two sources for one URL: an InputError. Returns the files copied."""
    n = 0
    for sem in semesters:
        rel_dir = sem.path.relative_to(source)
        link = True
        for dirpath, dirnames, filenames in os.walk(sem.path):
            dirnames.sort()
            here = Path(dirpath)
            dest_dir = out / rel_dir / here.relative_to(sem.path)
            dest_dir.mkdir(parents=True, exist_ok=True)
            for name in sorted(filenames):
                src, dest = here / name, dest_dir / name
                if dest.exists() or dest.is_symlink():
                    raise InputError(src, None, f"{dest.relative_to(out)} is both in the "
                                     f"static semester {sem.id} and made by Jekyll from "
                                     "another page", hint="give that page another permalink")
                if src.is_symlink():
                    dest.symlink_to(os.readlink(src))
                    continue
                if link:
                    try:
                        os.link(src, dest)
                        n += 1
                        continue
                    except OSError:
                        link = False  # another file system (or not allowed): copy
                shutil.copyfile(src, dest)
                n += 1
    return n


def _run_jekyll(client: Any, image: str, source: Path, out: Path,
                baseurl: str | None, inputs: JekyllInputs) -> str:
    from ops import engine

    user = f"{os.getuid()}:{os.getgid()}"
    override = bool(inputs.override())
    argv = jekyll_argv(baseurl, override=override)
    with tempfile.TemporaryDirectory(prefix="ops-jekyll-") as tmp:
        volumes = {str(source): {"bind": "/src", "mode": "ro"},
                   str(out): {"bind": "/out", "mode": "rw"}}
        environment = {}
        if override:
            volumes.update(_ops_dir(Path(tmp), inputs))
            if inputs.theme is not None and inputs.theme.path is not None:
                environment["GEM_PATH"] = f"{GEM_DIR}:"  # the trailing ':' keeps Debian's
        _LOG.info("$ docker run --rm --user %s %s %s jekyll %s", user,
                  " ".join(f"-v {k}:{v['bind']}:{v['mode']}" for k, v in volumes.items()),
                  image, " ".join(argv))
        if override:
            _LOG.info("override.yml: %s", json.dumps(inputs.override()))
        with engine.errors("running jekyll"):
            container = client.containers.create(
                image, argv, user=user, network_disabled=not inputs.network,
                working_dir="/tmp",
                volumes=volumes, environment=environment,
                labels={engine.IMAGE_LABEL: "site-builder"})
        try:
            with engine.errors("running jekyll"):
                container.start()
                result = container.wait(timeout=BUILD_TIMEOUT)
                logs = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        finally:
            with engine.errors("removing the jekyll container"):
                container.remove(force=True)
    _LOG.debug("jekyll said:\n%s", logs)
    problem = parse_errors(logs, source)
    if problem is not None:
        raise problem
    if result.get("StatusCode", 1) != 0:
        tail = [ln for ln in _ANSI.sub("", logs).splitlines() if ln.strip()]
        raise OpsError(f"jekyll failed: {tail[-1].strip() if tail else '(no output)'}",
                       hint=f"in {source}; run with -vv to see all it said")
    return logs
