"""``ops site serve``: a preview of the site on 127.0.0.1, rebuilt when its source changes.

The same build as ``ops site build`` (the builder image, the theme, the plugins, the link
check), into one of two directories in turn: the one served is switched only after a build
that passed, so a broken edit says what is wrong (file and line) and the last good build
stays up. The source is polled (file sizes and mtimes, once a second; ``.git``, ``_site``
and caches left out). The server is Python's, bound to 127.0.0.1 only, serving the build
under its baseurl as nginx does (a folder's index.html, the site's 404.html, no dot paths).
"""

from __future__ import annotations

import http.server
import logging
import posixpath
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ops import Log
from ops.errors import OpsError
from ops.site.source import snapshot

_LOG = logging.getLogger(__name__)
def changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """The files added, removed or modified, sorted."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def map_path(url_path: str, baseurl: str, root: Path) -> tuple[int, Path | str | None]:
    """What the preview answers for ``url_path``: (200, file), (301/302, location) or
    (404, None), as nginx serves the site."""
    path = unquote(urlsplit(url_path).path)
    if path in ("", "/"):
        return 302, f"{baseurl}/"
    if path == baseurl:
        return 301, f"{baseurl}/"
    if not path.startswith(baseurl + "/"):
        return 404, None
    rest = path[len(baseurl) + 1:]
    normal = posixpath.normpath("/" + rest)
    if any(seg.startswith(".") for seg in normal.split("/") if seg):
        return 404, None
    target = root / normal.lstrip("/")
    if target.is_dir():
        if not path.endswith("/"):
            return 301, path + "/"
        target = target / "index.html"
    return (200, target) if target.is_file() else (404, None)


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        self._answer(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)

    def _answer(self, *, head: bool) -> None:
        root, baseurl = self.server.site()
        status, what = map_path(self.path, baseurl, root)
        if status in (301, 302):
            self.send_response(status)
            self.send_header("Location", str(what))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if status == 404:
            page = root / "404.html"
            body = page.read_bytes() if page.is_file() else b"not found\n"
            self._send(404, "text/html; charset=utf-8", body, head)
            return
        assert isinstance(what, Path)
        self._send(200, self.guess_type(str(what)), what.read_bytes(), head)

    def _send(self, status: int, ctype: str, body: bytes, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        _LOG.debug("preview: " + format, *args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int]) -> None:
        super().__init__(addr, _Handler)
        self._lock = threading.Lock()
        self._root = Path("/nonexistent")
        self._baseurl = "/"

    def site(self) -> tuple[Path, str]:
        with self._lock:
            return self._root, self._baseurl

    def switch(self, root: Path, baseurl: str) -> None:
        with self._lock:
            self._root, self._baseurl = root, baseurl


def serve(src: Path, *, port: int = 4000, build: Callable[[Path], Any],
          poll: float = 1.0, stop: threading.Event | None = None,
          log: Log = _LOG.info) -> None:
    """Build ``src`` (``build(out)`` returns a Built), serve it on 127.0.0.1:``port`` (0: any
    free port), rebuild on every change until ``stop`` is set (or Ctrl-C)."""
    stop = stop or threading.Event()
    with tempfile.TemporaryDirectory(prefix="ops-serve-") as tmp:
        slots = [Path(tmp) / "a", Path(tmp) / "b"]
        seen = snapshot(src)
        built = build(slots[0])  # the first build must pass: nothing to serve otherwise
        live = 0
        try:
            server = _Server(("127.0.0.1", port))
        except OSError as exc:
            raise OpsError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}",
                           hint="pass another --port (0: any free one)") from None
        server.switch(slots[live], built.baseurl)
        thread = threading.Thread(target=server.serve_forever, name="ops-site-serve",
                                  daemon=True)
        thread.start()
        log(f"serving http://127.0.0.1:{server.server_address[1]}{built.baseurl}/ "
            f"(rebuilt when {src} changes; Ctrl-C stops)")
        try:
            while not stop.wait(poll):
                now = snapshot(src)
                diff = changed(seen, now)
                if not diff:
                    continue
                seen = now
                log(f"changed: {', '.join(diff[:5])}" + (f" and {len(diff) - 5} more"
                                                          if len(diff) > 5 else ""))
                started = time.monotonic()
                try:
                    built = build(slots[1 - live])
                except OpsError as exc:
                    log(f"build failed, still serving the last good one: {exc}")
                    continue
                live = 1 - live
                server.switch(slots[live], built.baseurl)
                log(f"rebuilt in {time.monotonic() - started:.1f} s")
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
