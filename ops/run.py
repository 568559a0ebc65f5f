"""Every tool course-ops runs on this machine goes through here: argv lists, shell=False,
the command logged, a missing tool or a timeout said in one line (with the package that has
the tool), output streamed or captured. The callers read the exit code: what a failure
means is theirs to say. (``ops/slurm_usage.py`` is the one exception: it is installed on
the controller as a standalone script and imports nothing of ours.)"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ops.errors import EngineError, OpsError

log = logging.getLogger(__name__)

#: the package that has a tool, for the "is not installed" hint
PACKAGES = {"ssh": "openssh-client", "rsync": "rsync", "git": "git", "openssl": "openssl",
            "debootstrap": "debootstrap", "tar": "tar", "umount": "mount"}
_PIP_HINT = "install course-ops with its dependencies: pip install -e ."


class TimedOut(OpsError):
    """A tool that did not finish in its time (for a caller that waits and tries again)."""


def _missing(argv: Sequence[str], exc: FileNotFoundError) -> OpsError:
    """A tool that is not here (a local problem, whatever host the tool was to reach), or
    the directory it was to run in."""
    if exc.filename not in (None, argv[0]):
        return OpsError(f"{exc.filename}: no such file or directory",
                        hint=f"needed to run {Path(argv[0]).name}")
    name = Path(argv[0]).name
    package = PACKAGES.get(name)
    return OpsError(f"{name} is not installed",
                    hint=f"apt-get install {package}" if package else _PIP_HINT)


def run(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> int:
    """Run a tool with its output streamed to ours; return its exit code."""
    full_env = {**os.environ, **(env or {})}
    log.info("$ %s", shlex.join(argv))
    try:
        return subprocess.call(list(argv), cwd=cwd, env=full_env)
    except FileNotFoundError as exc:
        raise _missing(argv, exc) from None


def capture(argv: Sequence[str], *, what: str, timeout: float | None = None,
            text: bool = True, input: str | bytes | None = None,
            cwd: Path | str | None = None, env: Mapping[str, str] | None = None,
            stdin: int | None = None, merge: bool = False, umask: int = -1,
            error: type[OpsError] = OpsError, hint: str = "",
            shown: Sequence[str] | None = None, level: int = logging.INFO
            ) -> subprocess.CompletedProcess[Any]:
    """Run a tool and return what it printed and its exit code (not checked here).

    ``what`` names the step in the timeout's message ("WHAT did not finish in N s");
    ``error`` is the OpsError class raised for that (a missing tool is always an
    OpsError); ``shown`` is the argv logged in place of ``argv`` (a script argument
    abbreviated); ``merge`` sends stderr into stdout. Without ``input`` or ``stdin`` the
    tool reads nothing (``/dev/null``): no tool run here may take the terminal's input."""
    if input is not None and stdin is not None:
        raise ValueError("capture: input and stdin are exclusive")
    log.log(level, "$ %s", shlex.join(argv if shown is None else shown))
    # either input or stdin, never both keys: gevent's subprocess (pyinfra patches it in)
    # refuses a stdin key next to input even when it is None
    feed: dict[str, Any] = ({"input": input} if input is not None else
                            {"stdin": subprocess.DEVNULL if stdin is None else stdin})
    try:
        return subprocess.run(
            list(argv), **feed, text=text, cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            timeout=timeout, umask=umask, check=False)
    except FileNotFoundError as exc:
        raise _missing(argv, exc) from None
    except subprocess.TimeoutExpired:
        raise error(f"{what} did not finish in {timeout:g} s", hint=hint) from None


def start(argv: Sequence[str], *, stdout: int | IO[Any] | None = subprocess.PIPE,
          stderr: int | IO[Any] | None = None, level: int = logging.INFO,
          **kw: Any) -> subprocess.Popen[Any]:
    """A tool started with its output read as it comes (a playbook's lines, a tar stream)."""
    log.log(level, "$ %s", shlex.join(argv))
    try:
        return subprocess.Popen(list(argv), stdout=stdout, stderr=stderr, **kw)
    except FileNotFoundError as exc:
        raise _missing(argv, exc) from None


def tool(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise EngineError(
            f"`{name}` is not installed", hint=f"install it: `sudo apt-get install {package}`"
        )
    return found


def output(argv: Sequence[str], *, timeout: float = 60) -> str:
    """What a tool prints; its failure is an OpsError with its last line."""
    done = capture(argv, what=f"`{argv[0]}`", timeout=timeout, level=logging.DEBUG)
    if done.returncode:
        raise OpsError(f"`{' '.join(argv)}` failed: {last_line(done.stderr or done.stdout)}")
    return done.stdout


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
