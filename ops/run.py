"""Subprocess wrappers: argv lists, shell=False, explicit env, streamed output."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ops.errors import OpsError

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
