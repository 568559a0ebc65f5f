"""Subprocess wrappers: argv lists, shell=False, explicit env, streamed or captured output;
where a tool is missing, the package that has it."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ops.errors import EngineError, OpsError

log = logging.getLogger(__name__)


def run(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> int:
    """Run a tool with its output streamed to ours; return its exit code."""
    full_env = {**os.environ, **(env or {})}
    log.info("$ %s", shlex.join(argv))
    try:
        return subprocess.call(list(argv), cwd=cwd, env=full_env)
    except FileNotFoundError:
        raise OpsError(
            f"{argv[0]} is not installed",
            hint="install course-ops with its dependencies: pip install -e .",
        ) from None


def tool(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise EngineError(
            f"`{name}` is not installed", hint=f"install it: `sudo apt-get install {package}`"
        )
    return found


def output(argv: Sequence[str], *, timeout: float = 60) -> str:
    log.debug("running %s", argv)
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise OpsError(f"`{argv[0]}` did not finish in {timeout:.0f} s") from exc
    if done.returncode:
        raise OpsError(f"`{' '.join(argv)}` failed: {last_line(done.stderr or done.stdout)}")
    return done.stdout


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
