"""The site source: its ``_config.yml`` and data files, read with line numbers.

Checked before Jekyll runs, so that a wrong ``baseurl`` names its line and nothing is built
or deployed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ops.errors import InputError
from ops.inventory import compose_yaml

#: a URL path of plain segments (role website asserts the same before templating nginx)
BASEURL_RE = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


@dataclass
class SiteConfig:
    source: Path
    title: str
    baseurl: str
    staff: list[str]
    url: str = ""

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


def _top(path: Path) -> dict[str, tuple[int, Any]]:
    """A YAML mapping file's keys -> (line, value)."""
    node = _compose(path)
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise InputError(path, node.start_mark.line + 1, "must be a mapping of settings")
    out: dict[str, tuple[int, Any]] = {}
    for k, v in node.value:
        out[str(k.value)] = (k.start_mark.line + 1,
                             yaml.SafeLoader(yaml.serialize(v)).get_single_data())
    return out


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


def load(source: Path) -> SiteConfig:
    source = source.resolve()
    if not source.is_dir():
        raise InputError(source, None, "no such site directory",
                         hint="pass the Jekyll site's directory (it holds _config.yml)")
    cfg_file = source / "_config.yml"
    top = _top(cfg_file)
    if "baseurl" not in top:
        raise InputError(cfg_file, None, "baseurl is not set",
                         hint='add baseurl: "/cs236781" (where the site lives on the server)')
    line, baseurl = top["baseurl"]
    check_baseurl(baseurl, cfg_file, line)
    title_line, title = top.get("title", (None, None))
    if not isinstance(title, str) or not title.strip():
        raise InputError(cfg_file, title_line, "title is not set",
                         hint="add title: \"<the course's name>\"")
    check_data_files(source)
    _, url = top.get("url", (None, ""))
    return SiteConfig(source, title.strip(), baseurl, staff_names(source),
                      url if isinstance(url, str) else "")


def check_data_files(source: Path) -> None:
    """Every ``_data`` YAML file parses (Jekyll's own error would not name the file)."""
    data = source / "_data"
    if data.is_dir():
        for path in sorted(data.rglob("*")):
            if path.suffix in (".yml", ".yaml") and path.is_file():
                _compose(path)


def staff_names(source: Path) -> list[str]:
    """The names in ``_data/authors.yml`` (a list of mappings with ``name``)."""
    path = source / "_data" / "authors.yml"
    if not path.is_file():
        return []
    node = _compose(path)
    if node is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise InputError(path, node.start_mark.line + 1,
                         "must be a list of staff members (- name: ...)")
    names = []
    for item in node.value:
        data = yaml.SafeLoader(yaml.serialize(item)).get_single_data()
        if not isinstance(data, dict) or not str(data.get("name") or "").strip():
            raise InputError(path, item.start_mark.line + 1, "a staff member without a name",
                             hint="give every entry a name: field")
        names.append(str(data["name"]).strip())
    return names
