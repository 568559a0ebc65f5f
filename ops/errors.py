"""One exception hierarchy, mapped to named exit codes.

Every error a user can cause or fix is an :class:`OpsError`; the CLI prints its
one-line message (file, line, what to do) and exits with its code. Tracebacks are
shown only at ``-vv``.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # a check or a tool run failed
    USAGE = 2  # bad flags or arguments
    BAD_INPUT = 3  # roster, inventory, lock or state file is malformed
    NO_ENGINE = 4  # no Docker engine answers
    UNREACHABLE = 5  # a host could not be reached or an apply step failed
    ABORTED = 6  # the user answered no
    REFUSED = 7  # a guard stopped a change too large to be meant (--allow-mass-change)
    NOT_CHECKED = 8  # a verify area had nothing it could check (no image pushed yet, ...)
    OUTDATED = 9  # `ops images outdated`: something has a newer version (CI branches on it)
    INTERRUPTED = 130  # Ctrl-C


class OpsError(Exception):
    code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class InputError(OpsError):
    """A user file is wrong; names the file and line, changes nothing anywhere."""

    code = ExitCode.BAD_INPUT

    def __init__(self, path: Path | str, line: int | None, message: str, *, hint: str = "") -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}", hint=hint)
        self.path = str(path)
        self.line = line


class InputErrors(InputError):
    """Several problems in one file, all reported at once."""

    def __init__(self, path: Path | str, problems: list[tuple[int | None, str]]) -> None:
        self.problems = problems
        line, first = problems[0]
        super().__init__(path, line, first)

    def lines(self) -> list[str]:
        return [
            f"{self.path}:{ln}: {msg}" if ln else f"{self.path}: {msg}" for ln, msg in self.problems
        ]

    def __str__(self) -> str:
        more = len(self.problems) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        return f"{self.lines()[0]}{tail}"


class UsageError(OpsError):
    code = ExitCode.USAGE


class EngineError(OpsError):
    code = ExitCode.NO_ENGINE


class RemoteError(OpsError):
    code = ExitCode.UNREACHABLE


class Aborted(OpsError):
    code = ExitCode.ABORTED


class Refused(OpsError):
    code = ExitCode.REFUSED
