"""Initial passwords, only where the inventory turns password login on.

Each new password is random, stored in ``state/initial-passwords.csv`` (0600, for the staff
to hand out) before any host gets its hash, and must be changed at the first login. Hosts
only ever see the SHA-512 crypt hash; no password is logged.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from ops import run as run_mod
from ops.errors import OpsError
from ops.run import last_line


def crypt_sha512(password: str) -> str:
    p = run_mod.capture(["openssl", "passwd", "-6", "-stdin"], what="openssl passwd",
                        input=password, timeout=30, level=logging.DEBUG)
    if p.returncode:
        raise OpsError(f"cannot hash a password with openssl: {last_line(p.stderr)}",
                       hint="is openssl installed and working? `openssl passwd -6 -stdin`")
    return p.stdout.strip()


class InitialPasswords:
    """Callable for plan.compute: one password per user, the same on every host."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.made: dict[str, tuple[str, str]] = {}

    def __call__(self, user: str) -> str:
        if user not in self.made:
            password = secrets.token_urlsafe(12)
            self.made[user] = (password, crypt_sha512(password))
        return self.made[user][1]

    def save(self) -> None:
        if not self.made:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            if fh.tell() == 0:
                fh.write("username,initial_password\n")
            for user, (password, _hash) in sorted(self.made.items()):
                fh.write(f"{user},{password}\n")
        os.chmod(self.path, 0o600)
