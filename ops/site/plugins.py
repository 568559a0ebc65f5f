"""The site's Jekyll plugins, checked against what the builder can have, before Jekyll runs.

The builder is Debian's jekyll (no rubygems): a plugin is available when Debian packages it
(``jekyll-sitemap`` -> ``ruby-jekyll-sitemap``), and the builder image for a site installs
the packages of the plugins it names (ops/site/builder.py tags the image by that list).
A plugin Debian lacks (jemoji, github-pages) stops the build at its config line, unless it
is in ``website_skip_plugins``: then Jekyll runs without it and the build warns.
``jekyll-remote-theme`` is never loaded: the theme is resolved locally (ops/site/themes.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ops.errors import InputError
from ops.site.source import SiteConfig
from ops.site.themes import Theme

#: plugin (the name Jekyll requires) -> Debian bookworm's package of it
DEBIAN_PLUGINS = {
    "jekyll-archives": "ruby-jekyll-archives",
    "jekyll-avatar": "ruby-jekyll-avatar",
    "jekyll-commonmark": "ruby-jekyll-commonmark",
    "jekyll-default-layout": "ruby-jekyll-default-layout",
    "jekyll-feed": "ruby-jekyll-feed",
    "jekyll-gist": "ruby-jekyll-gist",
    "jekyll-github-metadata": "ruby-jekyll-github-metadata",
    "jekyll-include-cache": "ruby-jekyll-include-cache",
    "jekyll-last-modified-at": "ruby-jekyll-last-modified-at",
    "jekyll-mentions": "ruby-jekyll-mentions",
    "jekyll-optional-front-matter": "ruby-jekyll-optional-front-matter",
    "jekyll-paginate": "ruby-jekyll-paginate",
    "jekyll-paginate-v2": "ruby-jekyll-paginate-v2",
    "jekyll-polyglot": "ruby-jekyll-polyglot",
    "jekyll-readme-index": "ruby-jekyll-readme-index",
    "jekyll-redirect-from": "ruby-jekyll-redirect-from",
    "jekyll-relative-links": "ruby-jekyll-relative-links",
    "jekyll-seo-tag": "ruby-jekyll-seo-tag",
    "jekyll-sitemap": "ruby-jekyll-sitemap",
    "jekyll-titles-from-headings": "ruby-jekyll-titles-from-headings",
    "jekyll-toc": "ruby-jekyll-toc",
}
#: come with Debian's jekyll itself
WITH_JEKYLL = {"jekyll-sass-converter", "jekyll-watch"}
#: replaced by the local theme (ops/site/themes.py): never loaded
THEME_LOADERS = {"jekyll-remote-theme"}


@dataclass
class PluginPlan:
    #: Debian packages the builder needs (plugins and theme), sorted
    packages: list[str] = field(default_factory=list)
    #: the plugins Jekyll loads (the ``plugins:`` it is given)
    load: list[str] = field(default_factory=list)
    #: named by the site, not loaded
    skipped: list[str] = field(default_factory=list)
    #: what the build says about them
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def plan(cfg: SiteConfig, theme: Theme | None = None, skip: list[str] | None = None,
         skip_where: str = "website_skip_plugins") -> PluginPlan:
    """Which Debian packages the builder needs and which plugins Jekyll loads; an InputError
    on the config line for a plugin the builder cannot have and nobody skipped."""
    skip = [str(s) for s in (skip or [])]
    out = PluginPlan()
    packages = set()
    if theme is not None and theme.package:
        packages.add(theme.package)
    named = {p.value for p in cfg.plugins}
    for p in cfg.plugins:
        name = p.value
        where = f"{cfg.config_file}:{p.line}"
        if name in THEME_LOADERS:
            out.skipped.append(name)
            out.notes.append(f"{where}: plugin {name} is not loaded: the theme is "
                             + (f"{theme.via}" if theme else "not remote"))
        elif name in skip:
            out.skipped.append(name)
            out.warnings.append(f"{where}: plugin {name} is skipped ({skip_where}): the "
                                "pages are built without it")
        elif name in WITH_JEKYLL:
            out.load.append(name)
        elif name in DEBIAN_PLUGINS:
            packages.add(DEBIAN_PLUGINS[name])
            out.load.append(name)
        else:
            raise InputError(cfg.config_file, p.line,
                             f"plugin {name}: the builder has no {name} and no Debian "
                             "package provides it",
                             hint=f"list it in {skip_where} (group_vars) to build without "
                             "it, or build with bundler where rubygems.org is reachable "
                             "(roles/website/README.md)")
    for name in skip:
        if name not in named:
            out.warnings.append(f"{skip_where}: {name} is not a plugin of the site "
                                f"({cfg.config_file} names {', '.join(sorted(named)) or 'none'})")
    out.packages = sorted(packages)
    return out


def missing_hint(name: str) -> str:
    """What to do about a plugin Jekyll could not load (its Dependency Error)."""
    if name in DEBIAN_PLUGINS:
        return (f"Debian's package {DEBIAN_PLUGINS[name]} provides it: name it under plugins: "
                "in _config.yml so that the builder installs it")
    return "list it in website_skip_plugins (group_vars) to build without it"
