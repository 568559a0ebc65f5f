"""The site source: its ``_config.yml`` and data files, read with line numbers.

Checked before Jekyll runs, so that a wrong ``baseurl`` names its line and nothing is built
or deployed. Every config Jekyll reads is read here (the YAML reader is libyaml, as
Jekyll's Psych): empty values, comments, anchors, tabs after values. A key given twice is
a warning naming both lines (Jekyll takes the last one, so does this). The theme
(``theme``/``remote_theme``) and the plugins are read with their lines, for
ops/site/themes.py and ops/site/plugins.py. ``_data`` is the site's own: it must be valid
YAML; the staff names the checks need are read from ``authors.yml`` as a list of people or
a mapping of them (Minimal Mistakes' shape), whatever else it holds.

Semesters: each folder ``semesters/<id>/`` of the source is a previous semester. One whose
files have no front matter is a pre-built static tree: copied into the build as it is
(ops/site/builder.py), never rendered again. One with front matter is rendered by Jekyll
like any page.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ops.errors import InputError
from ops.inventory import check_expansion, compose_yaml, node_value

#: a URL path of plain segments (role website asserts the same before templating nginx)
BASEURL_RE = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
SEMESTERS = "semesters"


@dataclass(frozen=True)
class Setting:
    """A value of ``_config.yml`` and the line it is on."""

    key: str
    value: Any
    line: int
    node: yaml.Node | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Semester:
    id: str
    path: Path
    #: pre-built (no file has front matter): copied as it is, not rendered
    static: bool
    files: int


@dataclass
class SiteConfig:
    source: Path
    title: str
    baseurl: str
    staff: list[str]
    url: str = ""
    #: ``theme`` or ``remote_theme`` (remote_theme wins, as on GitHub Pages)
    theme: Setting | None = None
    #: every plugin named in ``plugins:`` (or the older ``gems:``), with its line
    plugins: list[Setting] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    #: what is wrong but accepted (a duplicate key), one line each, file:line first
    warnings: list[str] = field(default_factory=list)
    #: the site sets Jekyll's ``time`` itself
    time_set: bool = False

    @property
    def url_host(self) -> str:
        """The host of ``url`` (``https://host``), lower case, or ''."""
        try:
            return (urlsplit(self.url).hostname or "").rstrip(".")
        except ValueError:
            return ""

    @property
    def config_file(self) -> Path:
        return self.source / "_config.yml"


def _compose(path: Path) -> yaml.Node | None:
    return compose_yaml(path, problem="not valid YAML",
                        missing_hint="pass the Jekyll site's directory (it holds _config.yml)")


def duplicate_keys(path: Path, node: yaml.Node | None) -> list[str]:
    """A warning for every key given twice in one mapping, anywhere in the document."""
    said: list[str] = []
    todo = [node] if node is not None else []
    seen_nodes: set[int] = set()
    while todo:
        n = todo.pop()
        if id(n) in seen_nodes:
            continue
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict[str, int] = {}
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    line = k.start_mark.line + 1
                    if k.value in first:
                        said.append(f"{path}:{line}: duplicate key {k.value!r} (also at line "
                                    f"{first[k.value]}); Jekyll takes this one, the last")
                    first.setdefault(k.value, line)
                todo.append(v)
        elif isinstance(n, yaml.SequenceNode):
            todo.extend(n.value)
    return sorted(said, key=lambda s: int(s.split(":")[1]) if s.split(":")[1].isdigit() else 0)


def _top(path: Path) -> tuple[dict[str, Setting], list[str]]:
    """A YAML mapping file's keys -> Setting (the last one of a key given twice), and the
    warnings (duplicate keys)."""
    node = _compose(path)
    if node is None:
        return {}, []
    if not isinstance(node, yaml.MappingNode):
        raise InputError(path, node.start_mark.line + 1, "must be a mapping of settings")
    check_expansion(node, path)
    out: dict[str, Setting] = {}
    for k, v in node.value:
        key = str(k.value)
        try:
            value = node_value(v, path)
        except ValueError as exc:  # YAML's timestamp: "day is out of range for month"
            raise InputError(path, v.start_mark.line + 1, f"{key}: not a valid value ({exc})",
                             hint="a date is YYYY-MM-DD and must exist") from None
        out[key] = Setting(key, value, k.start_mark.line + 1, v)
    return out, duplicate_keys(path, node)


def check_baseurl(baseurl: Any, path: Path, line: int | None) -> str:
    """``/name`` (or ``/a/b``): starts with a slash, no slash at the end, no host, no space."""
    hint = 'write it as baseurl: "/cs236781" (a leading slash, none at the end)'
    if not isinstance(baseurl, str) or not baseurl:
        raise InputError(path, line, f"baseurl must be a path such as /cs236781, not "
                         f"{baseurl!r}", hint=hint)
    if not baseurl.startswith("/") or baseurl.startswith("//"):
        raise InputError(path, line, f"baseurl {baseurl!r} does not start with a slash",
                         hint=hint)
    if baseurl.endswith("/"):
        raise InputError(path, line, f"baseurl {baseurl!r} ends with a slash", hint=hint)
    if not BASEURL_RE.match(baseurl) or any(seg.startswith(".") for seg in baseurl.split("/")):
        raise InputError(path, line, f"baseurl {baseurl!r} is not a plain URL path",
                         hint=hint + "; letters, digits, '.', '_', '~', '-' in each part, "
                         "none starting with '.'")
    return baseurl


def _plain(s: Setting | None) -> Any:
    return None if s is None else s.value


def load(source: Path) -> SiteConfig:
    source = source.resolve()
    if not source.is_dir():
        raise InputError(source, None, "no such site directory",
                         hint="pass the Jekyll site's directory (it holds _config.yml)")
    cfg_file = source / "_config.yml"
    top, warnings = _top(cfg_file)
    if "baseurl" not in top:
        raise InputError(cfg_file, None, "baseurl is not set",
                         hint='add baseurl: "/cs236781" (where the site lives on the server)')
    check_baseurl(_plain(top["baseurl"]), cfg_file, top["baseurl"].line)
    title = _plain(top.get("title"))
    if not isinstance(title, str) or not title.strip():
        raise InputError(cfg_file, top["title"].line if "title" in top else None,
                         "title is not set", hint="add title: \"<the course's name>\"")
    check_data_files(source)
    url = _plain(top.get("url"))
    return SiteConfig(source, title.strip(), _plain(top["baseurl"]), staff_names(source),
                      url if isinstance(url, str) else "", theme=_theme(cfg_file, top),
                      plugins=_plugins(cfg_file, top), exclude=_exclude(cfg_file, top),
                      warnings=warnings, time_set=_plain(top.get("time")) is not None)


def _theme(path: Path, top: dict[str, Setting]) -> Setting | None:
    for key in ("remote_theme", "theme"):
        s = top.get(key)
        if s is None or s.value is None or s.value == "":
            continue
        if not isinstance(s.value, str):
            raise InputError(path, s.line, f"{key} must be a name such as "
                             f"{'owner/theme@1.0' if key == 'remote_theme' else 'minima'}, "
                             f"not {_plain(s)!r}")
        return Setting(key, s.value.strip(), s.line)
    return None


def _plugins(path: Path, top: dict[str, Setting]) -> list[Setting]:
    found: list[Setting] = []
    for key in ("plugins", "gems"):
        s = top.get(key)
        if s is None or s.value is None:
            continue
        if not isinstance(s.node, yaml.SequenceNode):
            raise InputError(path, s.line, f"{key} must be a list of plugin names",
                             hint=f"write {key}: [jekyll-sitemap, jekyll-feed]")
        for item in s.node.value:
            name = node_value(item, path)
            line = item.start_mark.line + 1
            if not isinstance(name, str) or not name.strip():
                raise InputError(path, line, f"{key}: {name!r} is not a plugin name")
            if name.strip() not in {p.value for p in found}:
                found.append(Setting(key, name.strip(), line))
    return found


def _exclude(path: Path, top: dict[str, Setting]) -> list[str]:
    value = _plain(top.get("exclude"))
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(path, top["exclude"].line, "exclude must be a list of paths")
    return list(value)


def check_data_files(source: Path) -> None:
    """Every ``_data`` YAML file parses (Jekyll's own error would not name the file) and
    holds no alias bomb (Liquid would expand it)."""
    data = source / "_data"
    if data.is_dir():
        for path in sorted(data.rglob("*")):
            if path.suffix in (".yml", ".yaml") and path.is_file():
                node = _compose(path)
                if node is not None:
                    check_expansion(node, path)


def staff_names(source: Path) -> list[str]:
    """The names in ``_data/authors.yml``: a list of people (``- name: ...``) or a mapping
    of them (``chaim: {name: ...}``, the key standing in for a missing name). Entries of
    another shape are the site's business: they name nobody."""
    path = source / "_data" / "authors.yml"
    if not path.is_file():
        return []
    node = _compose(path)
    if node is None:
        return []
    data = node_value(node, path)
    people: list[tuple[str | None, Any]] = []
    if isinstance(data, list):
        people = [(None, item) for item in data]
    elif isinstance(data, dict):
        people = [(str(k), v) for k, v in data.items()]
    names = []
    for key, person in people:
        if not isinstance(person, dict):
            continue
        name = person.get("name")
        name = str(name).strip() if name is not None and str(name).strip() else key
        if name and name not in names:
            names.append(name)
    return names


# ----------------------------------------------------------------------------- the files

#: not part of the source: never a reason to rebuild, never its time
IGNORED = {".git", "_site", ".jekyll-cache", ".sass-cache", "node_modules", ".bundle",
           ".jekyll-metadata"}


def snapshot(src: Path) -> dict[str, tuple[int, int]]:
    """Every file of the source -> (mtime_ns, size)."""
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if d not in IGNORED]
        for name in filenames:
            p = os.path.join(dirpath, name)
            try:
                st = os.stat(p)
            except OSError:
                continue
            found[os.path.relpath(p, src)] = (st.st_mtime_ns, st.st_size)
    return found


def site_time(files: dict[str, tuple[int, int]]) -> str:
    """The newest change of the source, as Jekyll's ``time`` setting: ``site.time`` (the
    feed's <updated>, a theme's "last updated") then changes with the source, not with each
    build, and a build of an unchanged source is the same bytes."""
    import datetime as dt

    newest = max((m for m, _ in files.values()), default=0)
    when = dt.datetime.fromtimestamp(newest // 1_000_000_000, dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S +0000")


# ----------------------------------------------------------------------------- semesters

def excluded(rel: str, patterns: list[str]) -> bool:
    """Does one of Jekyll's ``exclude`` entries cover ``rel`` (a path in the source)?"""
    for pat in patterns:
        pat = pat.strip("/")
        if not pat:
            continue
        if rel == pat or rel.startswith(pat + "/") or fnmatch.fnmatch(rel, pat):
            return True
    return False


def has_front_matter(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(5)
    except OSError:
        return False
    return head.startswith(b"---\n") or head.startswith(b"---\r\n")


def semesters(source: Path, exclude: list[str] | None = None) -> list[Semester]:
    """The folders ``semesters/<id>/`` of the source (not excluded), static or not."""
    base = source / SEMESTERS
    if not base.is_dir():
        return []
    found = []
    for d in sorted(base.iterdir()):
        rel = f"{SEMESTERS}/{d.name}"
        if not d.is_dir() or d.is_symlink() or d.name.startswith((".", "_")) \
                or excluded(rel, exclude or []):
            continue
        files, rendered = 0, False
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames.sort()
            for name in filenames:
                files += 1
                if not rendered and has_front_matter(Path(dirpath) / name):
                    rendered = True
        found.append(Semester(d.name, d, not rendered, files))
    return found
