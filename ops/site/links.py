"""After the build: every internal link and asset must resolve under the baseurl.

Reads every HTML page of the built site (``href``, ``src``, ``srcset``, ``poster``,
``action`` and ``<meta http-equiv=refresh>``), resolves relative links against the page's
URL, and reports a link that leaves the baseurl, one that names no built file, and any link
to localhost / 127.0.0.1 / [::1]. External links (http(s) to other hosts, mailto:, tel:,
data:) are not fetched: nothing leaves the machine.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

_ATTRS = {"href", "src", "poster", "action", "data-src"}
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
_SKIP_SCHEMES = {"mailto", "tel", "data", "javascript", "ftp", "sms"}


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


def page_url(rel: str, baseurl: str) -> str:
    """The URL a built file is served at (``info/index.html`` -> ``/base/info/``)."""
    url = f"{baseurl}/{rel}"
    return url[: -len("index.html")] if url.endswith("/index.html") else url


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


def check_link(link: str, page: str, out: Path, baseurl: str) -> str | None:
    """Why ``link`` on ``page`` (URL) is broken, or None."""
    if not link or link.startswith("#"):
        return None
    parts = urlsplit(link)
    host = (parts.hostname or "").lower()
    if host in _LOCAL_HOSTS or host.endswith(".localhost"):
        return "links to localhost"
    if parts.scheme and parts.scheme.lower() in _SKIP_SCHEMES:
        return None
    if parts.scheme or parts.netloc:
        return None  # external: not fetched
    absolute = urljoin(page, link)
    path = unquote(urlsplit(absolute).path)
    normal = posixpath.normpath(path) + ("/" if path.endswith("/") and path != "/" else "")
    if normal != baseurl and not normal.startswith(baseurl + "/"):
        return f"outside the baseurl {baseurl}"
    if not resolves(out, normal[len(baseurl):] or "/"):
        return "no such page or file in the build"
    return None


def check(out: Path, baseurl: str) -> list[LinkProblem]:
    """Every broken internal link of the built site in ``out``, page by page."""
    problems: list[LinkProblem] = []
    for html in sorted(out.rglob("*.html")):
        rel = html.relative_to(out).as_posix()
        parser = _Links()
        parser.feed(html.read_text(encoding="utf-8", errors="replace"))
        url = page_url(rel, baseurl)
        seen: set[str] = set()
        for link in parser.links:
            if link in seen:
                continue
            seen.add(link)
            reason = check_link(link, url, out, baseurl)
            if reason:
                problems.append(LinkProblem(rel, link, reason))
    return problems
