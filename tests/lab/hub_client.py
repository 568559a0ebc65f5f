"""A student's side of the course hub, over HTTPS as a browser does it (for the hub's lab
tests and bench/hub.py): log in at /hub/login, spawn a profile, reach the server through
the hub's OAuth, and run code in a kernel through the server's REST API and its websocket.

Cookies and the XSRF token are the browser's (JupyterHub 4 checks ``_xsrf`` on every
cookie-authenticated API request); nothing here holds a hub admin token.
"""

from __future__ import annotations

import csv
import json
import shlex
import ssl
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import websocket


def initial_passwords(inv: Path) -> dict[str, str]:
    """The accounts sync's initial passwords (state/initial-passwords.csv)."""
    with (inv / "state" / "initial-passwords.csv").open(newline="") as fh:
        return {r["username"]: r["initial_password"] for r in csv.DictReader(fh)}


def set_own_password(lab_name: str, node: str, user: str, initial: str) -> str:
    """What a student does when a node asks for a new password (the initial one must be
    changed): ``passwd`` as the student on ``node``, the initial password, then their own
    (a new random one, returned)."""
    own = f"Own-{uuid.uuid4().hex[:12]}!"
    script = (f"printf '%s\\n%s\\n%s\\n' {shlex.quote(initial)} {shlex.quote(own)} "
              f"{shlex.quote(own)} | runuser -u {shlex.quote(user)} -- passwd")
    subprocess.run(["docker", "exec", f"{lab_name}-{node}", "sh", "-c", script],
                   check=True, capture_output=True, timeout=60)
    return own


def own_passwords(inv: Path, lab_name: str) -> dict[str, str]:
    """Every student's own password but the last one's (by name: they keep the initial
    one), set as a student does at the first ssh login (the initial password must be
    changed): ``passwd`` as the student on the login node, the initial password then their
    own. Kept in the lab's .lab/hub-test-passwords.json (0600) for a rerun on the same lab;
    a student given a new initial password since (back on the roster) sets a new one.
    """
    kept_file = inv / ".lab" / "hub-test-passwords.json"
    kept: dict[str, list[str]] = json.loads(kept_file.read_text()) if kept_file.exists() \
        else {}
    for user, initial in sorted(initial_passwords(inv).items())[:-1]:
        if kept.get(user, [""])[0] == initial:
            continue
        kept[user] = [initial, set_own_password(lab_name, "ctl", user, initial)]
        kept_file.touch(mode=0o600)
        kept_file.write_text(json.dumps(kept))
    return {user: own for user, (_, own) in kept.items()}


class HubError(RuntimeError):
    """The hub answered otherwise than a working hub would."""


@dataclass
class KernelResult:
    stdout: str
    error: str


class HubSession:
    """One student's browser session against ``base`` (``https://127.0.0.1:PORT``)."""

    def __init__(self, base: str, ca: Path, user: str) -> None:
        self.base = base.rstrip("/")
        self.ca = ca
        self.user = user
        self.http = requests.Session()
        self.http.verify = str(ca)
        # loopback only: no proxy, and no REQUESTS_CA_BUNDLE over the lab's own CA
        self.http.trust_env = False

    # -- the hub -------------------------------------------------------------------------
    def _xsrf(self, path: str) -> str:
        """The ``_xsrf`` cookie set for ``path`` (the hub's, or the server's own)."""
        best = ""
        best_len = -1
        for c in self.http.cookies:
            if c.name == "_xsrf" and path.startswith(c.path or "/") and \
                    len(c.path or "/") > best_len:
                best, best_len = c.value or "", len(c.path or "/")
        return best

    def login(self, password: str) -> requests.Response:
        """POST the login form; the response after redirects (the spawn page, or the form
        again with its error when refused)."""
        self.http.get(f"{self.base}/hub/login", timeout=30).raise_for_status()
        return self.http.post(f"{self.base}/hub/login", timeout=60, data={
            "username": self.user, "password": password, "_xsrf": self._xsrf("/hub/")})

    def logged_in(self) -> bool:
        r = self.http.get(f"{self.base}/hub/home", timeout=30, allow_redirects=False)
        return r.status_code == 200

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"X-XSRFToken": self._xsrf("/hub/"), **kw.pop("headers", {})}
        return self.http.request(method, f"{self.base}/hub/api{path}", headers=headers,
                                 timeout=kw.pop("timeout", 60), **kw)

    def spawn(self, profile: str) -> requests.Response:
        """Submit the spawn page's form with ``profile`` (as the browser does)."""
        page = self.http.get(f"{self.base}/hub/spawn", timeout=60)
        if page.status_code != 200:
            raise HubError(f"/hub/spawn answered {page.status_code}")
        return self.http.post(f"{self.base}/hub/spawn/{self.user}", timeout=120,
                              data={"profile": profile, "_xsrf": self._xsrf("/hub/")},
                              allow_redirects=False)

    def server(self) -> dict[str, Any] | None:
        """The hub's model of the student's default server (None: none)."""
        r = self.api("GET", f"/users/{self.user}")
        r.raise_for_status()
        servers = r.json().get("servers") or {}
        return servers.get("")

    def progress(self, timeout: float) -> list[dict[str, Any]]:
        """The spawn's progress events (the page's), until ready or failed or ``timeout``."""
        events: list[dict[str, Any]] = []
        with self.api("GET", f"/users/{self.user}/server/progress", stream=True,
                      timeout=timeout) as r:
            if r.status_code != 200:
                raise HubError(f"progress answered {r.status_code}: {r.text[:200]}")
            for line in r.iter_lines(decode_unicode=True):
                if not line or not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                events.append(event)
                if event.get("ready") or event.get("failed"):
                    break
        return events

    def wait_ready(self, timeout: float) -> list[dict[str, Any]]:
        """Wait for the spawn to finish; its events. HubError when it failed."""
        events = self.progress(timeout)
        if not events or not events[-1].get("ready"):
            last = events[-1].get("message", "") if events else "(no event)"
            raise HubError(f"the spawn did not become ready: {last}")
        return events

    def stop(self) -> None:
        self.api("DELETE", f"/users/{self.user}/server", timeout=120)

    # -- the student's server ----------------------------------------------------------------
    def open_lab(self) -> requests.Response:
        """GET /user/NAME/lab: through the hub's OAuth to JupyterLab's page."""
        return self.http.get(f"{self.base}/user/{self.user}/lab", timeout=120)

    def server_api(self, method: str, path: str, **kw: Any) -> requests.Response:
        prefix = f"/user/{self.user}/"
        headers = {"X-XSRFToken": self._xsrf(prefix), **kw.pop("headers", {})}
        return self.http.request(method, f"{self.base}{prefix}api{path}", headers=headers,
                                 timeout=kw.pop("timeout", 60), **kw)

    def run_code(self, code: str, timeout: float = 120) -> KernelResult:
        """Start a kernel (REST), run ``code`` over its websocket, delete the kernel."""
        r = self.server_api("POST", "/kernels", json={"name": "python3"})
        if r.status_code not in (200, 201):
            raise HubError(f"POST kernels answered {r.status_code}: {r.text[:200]}")
        kernel = r.json()["id"]
        try:
            return self._execute(kernel, code, timeout)
        finally:
            self.server_api("DELETE", f"/kernels/{kernel}")

    def _execute(self, kernel: str, code: str, timeout: float) -> KernelResult:
        host = self.base.split("://", 1)[1]
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies
                            if f"/user/{self.user}/".startswith(c.path or "/"))
        ws = websocket.create_connection(
            f"wss://{host}/user/{self.user}/api/kernels/{kernel}/channels",
            timeout=timeout, cookie=cookies, origin=self.base,
            header={"X-XSRFToken": self._xsrf(f"/user/{self.user}/")},
            sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(self.ca)})
        msg_id = uuid.uuid4().hex
        try:
            ws.send(json.dumps({
                "header": {"msg_id": msg_id, "username": self.user, "session":
                           uuid.uuid4().hex, "msg_type": "execute_request",
                           "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell",
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False}}))
            out: list[str] = []
            err = ""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg.get("msg_type") or msg["header"]["msg_type"]
                if kind == "stream":
                    out.append(msg["content"]["text"])
                elif kind == "error":
                    err = f"{msg['content']['ename']}: {msg['content']['evalue']}"
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    return KernelResult("".join(out), err)
            raise HubError(f"kernel {kernel} gave no result within {timeout:.0f} s")
        finally:
            ws.close()
