"""The site's theme: ``remote_theme``/``theme`` resolved to a local copy of its files.

Nothing is fetched (no GitHub, no rubygems): the theme is a directory staff keep, named by
``website_theme_dir`` in group_vars, or ``_themes/<name>/`` inside the site (Jekyll skips
underscore folders, so it is never published). The builder gives it to Jekyll as an
installed gem theme (ops/site/builder.py), so it is layered exactly as a gem theme is: the
site's own ``_layouts``, ``_includes``, ``_sass``, ``_data`` and ``assets`` win, the theme's
fill the rest (its ``_data``, such as UI strings, included), and the theme's own
``_config.yml`` is merged under the site's. A theme Debian packages (minima) needs no copy.
When none of these has it, the build stops before Jekyll runs, naming the config line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ops.errors import InputError
from ops.site.source import Setting, SiteConfig

#: theme gem name -> the Debian package that installs it in the builder
DEBIAN_THEMES = {"minima": "jekyll-theme-minima"}
#: what a theme folder holds (at least one of them)
THEME_PARTS = ("_layouts", "_includes", "_sass", "assets", "_data")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Theme:
    #: the gem name Jekyll is given (a remote theme's repository name)
    name: str
    #: the local copy; None for a theme the builder installs from Debian
    path: Path | None
    setting: Setting
    #: where it came from, in words
    via: str
    package: str | None = None


def theme_name(setting: Setting) -> str:
    """``owner/name@ref``, ``https://github.com/owner/name`` -> ``name``; ``theme: x`` -> x."""
    value = setting.value.strip()
    if setting.key == "remote_theme":
        value = re.sub(r"^(?:https?://)?(?:www\.)?github\.com/", "", value)
        value = value.split("@", 1)[0].rstrip("/")
        value = value.removesuffix(".git").split("/")[-1]
    return value


def _looks_like_a_theme(path: Path) -> bool:
    return any((path / part).is_dir() for part in THEME_PARTS)


def resolve(cfg: SiteConfig, theme_dir: Path | None = None,
            theme_dir_where: str = "website_theme_dir") -> Theme | None:
    """The site's theme, or None when it names none; an InputError on the config line when
    no copy of it is here."""
    s = cfg.theme
    if s is None:
        return None
    name = theme_name(s)
    if not _NAME.match(name):
        raise InputError(cfg.config_file, s.line, f"{s.key} {s.value!r} is not a theme name",
                         hint="remote_theme: owner/name@version, theme: name")
    if theme_dir is not None:
        if not theme_dir.is_dir() or not _looks_like_a_theme(theme_dir):
            raise InputError(cfg.config_file, s.line,
                             f"{s.key} {s.value}: {theme_dir_where} {theme_dir} is not a "
                             f"theme's files (none of {', '.join(THEME_PARTS)} in it)",
                             hint="point website_theme_dir at a copy of the theme's repository")
        return Theme(name, theme_dir.resolve(), s, f"{theme_dir_where} ({theme_dir})")
    local = cfg.source / "_themes" / name
    if local.is_dir() and _looks_like_a_theme(local):
        return Theme(name, local.resolve(), s, f"the site's _themes/{name}/")
    if s.key == "theme" and name in DEBIAN_THEMES:
        return Theme(name, None, s, f"Debian's {DEBIAN_THEMES[name]}", DEBIAN_THEMES[name])
    how = ""
    if s.key == "remote_theme" and "/" in s.value and "://" not in s.value:
        repo, _, ref = s.value.partition("@")
        branch = f"--branch {ref} " if ref else ""
        how = f" (git clone --depth 1 {branch}https://github.com/{repo} _themes/{name})"
    raise InputError(cfg.config_file, s.line,
                     f"{s.key} {s.value}: the theme is not here (themes are not fetched: "
                     "neither GitHub nor rubygems is used)",
                     hint=f"copy the theme's files into {cfg.source}/_themes/{name}/{how}, or "
                     "set website_theme_dir in group_vars to a directory holding them")
