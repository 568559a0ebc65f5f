"""After the build: every internal link and asset must resolve under the baseurl.

The built tree is listed once (one walk) and every page and stylesheet is read once: the
links of HTML pages (``href``, ``src``, ``srcset``, ``poster``, ``action``, ``data-src``
and ``<meta http-equiv=refresh>``; script and style bodies and comments left out) and of
stylesheets (``url(...)`` and ``@import``). Relative links are resolved against the file's
URL. A link is broken when it leaves the baseurl, names no built file, names a folder
without an index page, goes into a dot path (nginx answers 404 there) or to a loopback host
(localhost, 127.0.0.0/8, [::1], 0.0.0.0). Links to the site's own host (its ``url``, the web
hosts' ``website_hostname``) are internal and checked like paths.

Semesters: a semester folder of the build (``semesters/<id>/``: a static tree, built under
its own baseurl ``<baseurl>/semesters/<id>``, or rendered sources) is checked like any
page; a link to a semester the build does not hold is accepted (``ops site archive`` puts
those on the web host). ``website_link_check_allow`` (URL prefixes) accepts known broken
links, which are counted, not hidden.

External links are not fetched: nothing leaves the machine. The origins pages load scripts,
styles, frames, images and fonts from are collected, for the content security policy
(``website_csp``): :func:`csp_blocked` says which of them a policy would block.
"""

from __future__ import annotations

import html
import ipaddress
import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

_ATTRS = ("href", "src", "poster", "action", "data-src", "srcset")
_SKIP_SCHEMES = {"mailto", "tel", "data", "javascript", "ftp", "sms", "blob", "about"}
_CSS_URL = re.compile(r"""url\(\s*(?P<q>['"]?)(?P<url>[^'")]*?)(?P=q)\s*\)""", re.I)
_CSS_IMPORT = re.compile(r"""@import\s+(?P<q>['"])(?P<url>[^'"]*)(?P=q)""", re.I)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
#: a script's or style's body is not markup: only its opening tag is kept
_RAW_BODY = re.compile(r"(<(script|style)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*>).*?</\2\s*>",
                       re.S | re.I)
_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9:-]*)(\s(?:[^>\"']|\"[^\"]*\"|'[^']*')*)?/?>")
_ATTR = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'<>`]+))?""")
_FONT = re.compile(r"\.(?:woff2?|ttf|otf|eot)(?:[?#].*)?$", re.I)
SEMESTERS = "semesters"


@dataclass(frozen=True)
class LinkProblem:
    page: str  # relative to the built site
    link: str
    reason: str

    def __str__(self) -> str:
        return f"{self.page}: {self.link} ({self.reason})"


@dataclass(frozen=True)
class Link:
    """A link found in a page: the tag and attribute it is in (for the CSP directive)."""

    url: str
    tag: str = "a"
    attr: str = "href"
    rel: str = ""


@dataclass
class Report:
    problems: list[LinkProblem] = field(default_factory=list)
    #: broken, but under a website_link_check_allow prefix
    allowed: list[LinkProblem] = field(default_factory=list)
    #: CSP directive -> external origin -> the first page loading from it
    origins: dict[str, dict[str, str]] = field(default_factory=dict)
    pages: int = 0
    links: int = 0


def html_links(text: str) -> list[Link]:
    """The links of an HTML page, with their tag and attribute."""
    text = _RAW_BODY.sub(r"\1", _HTML_COMMENT.sub("", text))
    found: list[Link] = []
    for m in _TAG.finditer(text):
        tag = m[1].lower()
        if not m[2]:
            continue
        attrs: dict[str, str] = {}
        for a in _ATTR.finditer(m[2]):
            name = a[1].lower()
            if name in attrs:
                continue
            value = a[2] or ""
            if value[:1] in ("'", '"'):
                value = value[1:-1]
            attrs[name] = html.unescape(value).strip()
        rel = attrs.get("rel", "").lower()
        for name in _ATTRS:
            if name not in attrs:
                continue
            if name == "srcset":
                found += [Link(c.strip().split()[0], tag, name, rel)
                          for c in attrs[name].split(",") if c.strip()]
            else:
                found.append(Link(attrs[name], tag, name, rel))
        if tag == "meta" and attrs.get("http-equiv", "").lower() == "refresh":
            _, _, url = attrs.get("content", "").partition("url=")
            if url.strip():
                found.append(Link(url.strip().strip("'\""), tag, "content"))
    return found


def css_links(text: str) -> list[str]:
    """The ``url(...)`` and ``@import "..."`` targets of a stylesheet, comments left out."""
    text = _CSS_COMMENT.sub("", text)
    found = [m["url"].strip() for m in _CSS_URL.finditer(text)]
    return found + [m["url"].strip() for m in _CSS_IMPORT.finditer(text)]


def directive(link: Link) -> str | None:
    """The CSP directive that governs loading ``link`` (None: a plain link, not a load)."""
    if link.tag == "script" and link.attr == "src":
        return "script-src"
    if link.tag == "link":
        rels = link.rel.split()
        if "stylesheet" in rels:
            return "style-src"
        if "icon" in rels or "apple-touch-icon" in rels:
            return "img-src"
        return None
    if link.tag in ("iframe", "frame"):
        return "frame-src"
    if link.tag in ("img", "picture") or link.attr == "poster" or \
            (link.tag == "input" and link.attr == "src"):
        return "img-src"
    if link.tag == "source":
        return "img-src" if link.attr == "srcset" else "media-src"
    if link.tag in ("video", "audio", "track"):
        return "media-src"
    if link.tag in ("embed", "object"):
        return "object-src"
    if link.tag == "form" and link.attr == "action":
        return "form-action"
    if link.tag == "css":  # url() of a stylesheet
        return "font-src" if _FONT.search(link.url) else "img-src"
    if link.tag == "css-import":
        return "style-src"
    return None


def page_url(rel: str, baseurl: str) -> str:
    """The URL a built file is served at (``info/index.html`` -> ``/base/info/``)."""
    url = f"{baseurl}/{rel}"
    return url[: -len("index.html")] if url.endswith("/index.html") else url


def is_local_host(host: str) -> bool:
    """localhost (also ``localhost.``, ``x.localhost``), a loopback or unspecified address."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


class Tree:
    """The files and folders of a build, listed once."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files: set[str] = set()
        self.dirs: set[str] = {""}
        for dirpath, dirnames, filenames in os.walk(out):
            rel = os.path.relpath(dirpath, out).replace(os.sep, "/")
            rel = "" if rel == "." else rel + "/"
            self.dirs.update(rel + d for d in dirnames)
            self.files.update(rel + f for f in filenames)

    def why_not(self, path: str) -> str | None:
        """Why the web server would not find ``path`` (below the site root), or None."""
        rel = path.strip("/")
        if path.endswith("/") or not rel:
            if (f"{rel}/index.html" if rel else "index.html") in self.files:
                return None
            return "a folder without an index page" if rel in self.dirs else \
                "no such page or file in the build"
        if rel in self.files or f"{rel}/index.html" in self.files:
            return None
        if rel in self.dirs:
            return "a folder without an index page"
        return "no such page or file in the build"


def resolves(out: Path, path: str) -> bool:
    """Would the web server find ``path`` (below the site root) in ``out``?"""
    return Tree(out).why_not(path) is None


def _origin(parts: SplitResult) -> str:
    scheme = (parts.scheme or "https").lower()
    host = (parts.hostname or "").lower().rstrip(".")
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


class Checker:
    """Checks links of one build; verdicts of page-independent links are cached."""

    def __init__(self, out: Path, baseurl: str, own_hosts: Iterable[str] = (),
                 site_baseurl: str | None = None, tree: Tree | None = None) -> None:
        self.tree = tree or Tree(out)
        self.baseurl = baseurl
        self.own = {h.lower().rstrip(".") for h in own_hosts if h}
        self.archives = f"{site_baseurl or baseurl}/{SEMESTERS}/"
        self.in_build = site_baseurl in (None, baseurl)
        self._cache: dict[str, tuple[str | None, str | None]] = {}

    def check(self, link: str, page: str) -> tuple[str | None, str | None]:
        """(why ``link`` on ``page`` (URL) is broken or None, its external origin or None)."""
        if not link or link.startswith("#"):
            return None, None
        absolute = link.startswith("/") or "://" in link[:12] or ":" in link.split("/", 1)[0]
        if absolute and link in self._cache:
            return self._cache[link]
        verdict = self._check(link, page)
        if absolute:
            self._cache[link] = verdict
        return verdict

    def _check(self, link: str, page: str) -> tuple[str | None, str | None]:
        try:
            parts = urlsplit(link)
            host = (parts.hostname or "").lower().rstrip(".")
        except ValueError:
            return "not a valid URL", None
        if host and is_local_host(host):
            return "links to localhost", None
        scheme = parts.scheme.lower()
        if scheme in _SKIP_SCHEMES:
            return None, None
        if scheme and scheme not in ("http", "https"):
            return None, None
        if parts.netloc and host not in self.own:
            return None, _origin(parts)  # external: not fetched
        if parts.netloc:  # the site's own host: the path is checked
            link = parts._replace(scheme="", netloc="").geturl() or "/"
        path = unquote(urlsplit(urljoin(page, link)).path)
        normal = posixpath.normpath(path) + ("/" if path.endswith("/") and path != "/" else "")
        if normal.startswith(self.archives) and normal != self.archives:
            rest = normal[len(self.archives):]
            if any(seg.startswith(".") for seg in rest.split("/")):
                return "a dot path (the web server answers 404)", None
            sem = rest.split("/", 1)[0]
            if not self.in_build or f"{SEMESTERS}/{sem}" not in self.tree.dirs:
                return None, None  # an archived semester: on the web host, not in this build
        if normal != self.baseurl and not normal.startswith(self.baseurl + "/"):
            return f"outside the baseurl {self.baseurl}", None
        if any(seg.startswith(".") for seg in normal[len(self.baseurl):].split("/")):
            return "a dot path (the web server answers 404)", None
        return self.tree.why_not(normal[len(self.baseurl):] or "/"), None


def check_link(link: str, page: str, out: Path, baseurl: str,
               own_hosts: Iterable[str] = (), site_baseurl: str | None = None) -> str | None:
    """Why ``link`` on ``page`` (URL) is broken, or None (see :class:`Checker`)."""
    return Checker(out, baseurl, own_hosts, site_baseurl).check(link, page)[0]


def _allowed(problem: LinkProblem, page_url_: str, allow: list[str]) -> bool:
    if not allow:
        return False
    try:
        resolved = urljoin(page_url_, problem.link)
    except ValueError:
        resolved = problem.link
    return any(problem.link.startswith(a) or resolved.startswith(a) for a in allow)


def scan(out: Path, baseurl: str, *, own_hosts: Iterable[str] = (),
         site_baseurl: str | None = None, allow: Iterable[str] = ()) -> Report:
    """Every broken internal link of the built site in ``out``, page by page (stylesheets
    too), the allowed ones apart, and the external origins pages load from."""
    report = Report()
    checker = Checker(out, baseurl, own_hosts, site_baseurl)
    allow = [a for a in allow if a]
    for rel in sorted(checker.tree.files):
        if not rel.endswith((".html", ".htm", ".css")):
            continue
        if any(seg.startswith(".") for seg in rel.split("/")):
            continue  # never served
        text = (out / rel).read_text(encoding="utf-8", errors="replace")
        if rel.endswith(".css"):
            found = [Link(u, "css", "url") for u in css_links(text)]
        else:
            found = html_links(text)
        report.pages += 1
        url = page_url(rel, baseurl)
        seen: set[tuple[str, str, str]] = set()
        for link in found:
            key = (link.url, link.tag, link.attr)
            if key in seen:
                continue
            seen.add(key)
            report.links += 1
            reason, origin = checker.check(link.url, url)
            if origin:
                d = directive(link)
                if d:
                    report.origins.setdefault(d, {}).setdefault(origin, rel)
            if reason:
                problem = LinkProblem(rel, link.url, reason)
                (report.allowed if _allowed(problem, url, allow) else
                 report.problems).append(problem)
    return report


def check(out: Path, baseurl: str, *, own_hosts: Iterable[str] = (),
          site_baseurl: str | None = None, allow: Iterable[str] = ()) -> list[LinkProblem]:
    """Every broken internal link of the built site in ``out`` (see :func:`scan`)."""
    return scan(out, baseurl, own_hosts=own_hosts, site_baseurl=site_baseurl,
                allow=allow).problems


# ----------------------------------------------------------------------------- CSP

#: fetch directives that fall back to default-src
_FALLBACK = {"script-src", "style-src", "img-src", "font-src", "frame-src", "media-src",
             "object-src", "connect-src"}


def parse_csp(policy: str) -> dict[str, list[str]]:
    """``"default-src 'self'; img-src 'self' data:"`` -> directive -> sources."""
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out.setdefault(words[0].lower(), [w for w in words[1:]])
    return out


def _source_allows(source: str, origin: str) -> bool:
    src = source.strip()
    if src == "*":
        return True
    if src.startswith("'"):
        return False  # 'self', 'none', nonces: not an external origin
    o = urlsplit(origin)
    if src.endswith(":") and "/" not in src:  # a scheme source: https:
        return o.scheme == src[:-1].lower()
    scheme, sep, rest = src.partition("://")
    if not sep:
        scheme, rest = "", src
    if scheme and scheme.lower() != o.scheme:
        return False
    host_port = rest.split("/", 1)[0].lower()
    host, _, port = host_port.partition(":")
    if port and port != "*" and str(o.port or {"http": 80, "https": 443}[o.scheme]) != port:
        return False
    ohost = (o.hostname or "").lower()
    if host.startswith("*."):
        return ohost.endswith(host[1:])
    return ohost == host


def csp_blocked(policy: str, origins: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    """(directive, origin, first page) for each origin the policy does not allow."""
    csp = parse_csp(policy)
    blocked = []
    for d, found in sorted(origins.items()):
        sources = csp.get(d)
        if sources is None and d in _FALLBACK:
            sources = csp.get("default-src")
        if sources is None:
            continue  # no directive, no fallback: not restricted
        for origin, page in sorted(found.items()):
            if not any(_source_allows(s, origin) for s in sources):
                blocked.append((d, origin, page))
    return blocked


def origins_line(origins: dict[str, dict[str, str]]) -> str:
    """``script-src https://a https://b; frame-src https://c`` (or 'none')."""
    parts = [f"{d} {' '.join(sorted(found))}" for d, found in sorted(origins.items())]
    return "; ".join(parts) or "none"
