"""After the build: every internal link and asset must resolve under the baseurl.

Reads every HTML page of the built site (``href``, ``src``, ``srcset``, ``poster``,
``action`` and ``<meta http-equiv=refresh>``) and every stylesheet (``url(...)`` and
``@import``), resolves relative links against the file's URL, and reports a link that
leaves the baseurl, one that names no built file, one into a dot path (nginx answers 404
there) and any link to a loopback host (localhost, 127.0.0.0/8, [::1], 0.0.0.0). Links to
the site's own host (its ``url``, the web hosts' ``website_hostname``) are internal and
checked like paths. Links under ``<baseurl>/semesters/`` are accepted: archived semesters
live on the web host, not in the build. External links (http(s) to other hosts, mailto:,
tel:, data:) are not fetched: nothing leaves the machine.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

_ATTRS = {"href", "src", "poster", "action", "data-src"}
_SKIP_SCHEMES = {"mailto", "tel", "data", "javascript", "ftp", "sms"}
_CSS_URL = re.compile(r"""url\(\s*(?P<q>['"]?)(?P<url>[^'")]*?)(?P=q)\s*\)""", re.I)
_CSS_IMPORT = re.compile(r"""@import\s+(?P<q>['"])(?P<url>[^'"]*)(?P=q)""", re.I)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)


@dataclass(frozen=True)
class LinkProblem:
    page: str  # relative to the built site
    link: str
    reason: str

    def __str__(self) -> str:
        return f"{self.page}: {self.link} ({self.reason})"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v for k, v in attrs if v is not None}
        for name in _ATTRS & a.keys():
            self.links.append(a[name].strip())
        if "srcset" in a:
            self.links += [c.strip().split()[0] for c in a["srcset"].split(",") if c.strip()]
        if tag == "meta" and a.get("http-equiv", "").lower() == "refresh":
            _, _, url = a.get("content", "").partition("url=")
            if url.strip():
                self.links.append(url.strip().strip("'\""))


def css_links(text: str) -> list[str]:
    """The ``url(...)`` and ``@import "..."`` targets of a stylesheet, comments left out."""
    text = _CSS_COMMENT.sub("", text)
    found = [m["url"].strip() for m in _CSS_URL.finditer(text)]
    return found + [m["url"].strip() for m in _CSS_IMPORT.finditer(text)]


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


def resolves(out: Path, path: str) -> bool:
    """Would the web server find ``path`` (below the site root) in ``out``?"""
    rel = path.lstrip("/")
    target = (out / rel) if rel else out
    try:
        target.resolve().relative_to(out.resolve())
    except ValueError:
        return False
    if path.endswith("/") or not rel:
        return (target / "index.html").is_file()
    return target.is_file() or (target / "index.html").is_file()


def check_link(link: str, page: str, out: Path, baseurl: str,
               own_hosts: Iterable[str] = (), site_baseurl: str | None = None) -> str | None:
    """Why ``link`` on ``page`` (URL) is broken, or None. ``own_hosts``: the site's host
    names (links to them are internal); ``site_baseurl``: the live site's baseurl, when the
    build is for another one (an archive), for the semesters/ rule."""
    if not link or link.startswith("#"):
        return None
    try:
        parts = urlsplit(link)
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        return "not a valid URL"
    if host and is_local_host(host):
        return "links to localhost"
    if parts.scheme and parts.scheme.lower() in _SKIP_SCHEMES:
        return None
    own = {h.lower().rstrip(".") for h in own_hosts if h}
    if parts.scheme and parts.scheme.lower() not in ("http", "https"):
        return None
    if parts.netloc and host not in own:
        return None  # external: not fetched
    if parts.netloc:  # the site's own host: the path is checked
        link = parts._replace(scheme="", netloc="").geturl() or "/"
    absolute = urljoin(page, link)
    path = unquote(urlsplit(absolute).path)
    normal = posixpath.normpath(path) + ("/" if path.endswith("/") and path != "/" else "")
    archives = f"{site_baseurl or baseurl}/semesters/"
    if normal.startswith(archives) and normal != archives:
        rest = normal[len(archives):]
        if any(seg.startswith(".") for seg in rest.split("/")):
            return "a dot path (the web server answers 404)"
        return None  # an archived semester: on the web host, not in this build
    if normal != baseurl and not normal.startswith(baseurl + "/"):
        return f"outside the baseurl {baseurl}"
    if any(seg.startswith(".") for seg in normal[len(baseurl):].split("/")):
        return "a dot path (the web server answers 404)"
    if not resolves(out, normal[len(baseurl):] or "/"):
        return "no such page or file in the build"
    return None


def check(out: Path, baseurl: str, *, own_hosts: Iterable[str] = (),
          site_baseurl: str | None = None) -> list[LinkProblem]:
    """Every broken internal link of the built site in ``out``, page by page (stylesheets
    too)."""
    problems: list[LinkProblem] = []
    own = list(own_hosts)
    files = sorted([*out.rglob("*.html"), *out.rglob("*.css")])
    for file in files:
        rel = file.relative_to(out).as_posix()
        if any(seg.startswith(".") for seg in rel.split("/")):
            continue  # never served
        text = file.read_text(encoding="utf-8", errors="replace")
        if file.suffix == ".css":
            found = css_links(text)
        else:
            parser = _Links()
            parser.feed(text)
            found = parser.links
        url = page_url(rel, baseurl)
        seen: set[str] = set()
        for link in found:
            if link in seen:
                continue
            seen.add(link)
            reason = check_link(link, url, out, baseurl, own, site_baseurl)
            if reason:
                problems.append(LinkProblem(rel, link, reason))
    return problems
