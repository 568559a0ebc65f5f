"""The console every command speaks through: the two rich consoles, tables whose cells are
plain text, the options every command takes (-i/-v/-q/-y) and the one confirmation.

It must not know any command: ops/cli.py and the command modules (ops/images/commands.py)
import it; it imports neither.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich import table as rich_table
from rich.console import Console
from rich.text import Text

from ops import REPO_ROOT
from ops.errors import UsageError

if TYPE_CHECKING:
    from ops.inventory import Inventory

DEFAULT_INVENTORY = REPO_ROOT / "inventory" / "lab"
# markup off: roster names, paths and hosts are printed as they are, never as rich markup
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def styled(text: object, style: str) -> Text:
    """``text`` in a rich style (the only way colour reaches the consoles)."""
    return Text(str(text), style=style)


class Table(rich_table.Table):
    """A rich table whose string cells are plain text: names, paths and messages in it are
    never read as markup (rich reads a table's strings as markup whatever the console's
    setting)."""

    def add_row(self, *cells: Any, **kwargs: Any) -> None:
        super().add_row(*(Text(c) if isinstance(c, str) else c for c in cells), **kwargs)


@dataclass
class Opts:
    inventory: Path = DEFAULT_INVENTORY
    verbose: int = 0
    quiet: bool = False
    yes: bool = False
    _inv: Inventory | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def inv(self) -> Inventory:
        """The inventory, loaded once per command and handed down from here (a malformed
        one stops the command here, before any host). ``-i`` forgets it."""
        if self._inv is None:
            from ops import inventory

            self._inv = inventory.load(self.inventory)
        return self._inv

    def say(self, message: str) -> None:
        """A phase or progress line, on stderr."""
        if not self.quiet:
            err.print(Text.assemble((">", "bold cyan"), " ", message))


def _set(attr: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def cb(ctx: click.Context, _p: click.Parameter, value: Any) -> Any:
        opts = ctx.find_object(Opts) or ctx.ensure_object(Opts)
        if value not in (None, 0, False):
            setattr(opts, attr, Path(value) if attr == "inventory" else value)
            if attr == "inventory":
                opts._inv = None  # loaded from the directory given last
        return value

    return cb


def common(f: Callable[..., Any]) -> Callable[..., Any]:
    """-i/-v/-q/-y on the group and on every command, so they go before or after."""
    opts = [
        click.option(
            "-i",
            "--inventory",
            type=click.Path(file_okay=False),
            expose_value=False,
            callback=_set("inventory"),
            is_eager=True,
            help="Inventory directory (hosts.yml + group_vars/). Default: the lab.",
        ),
        click.option(
            "-v",
            "--verbose",
            count=True,
            expose_value=False,
            callback=_set("verbose"),
            help="Show the commands run (-vv: tracebacks too).",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            expose_value=False,
            callback=_set("quiet"),
            help="Only errors and data.",
        ),
        click.option(
            "-y",
            "--yes",
            is_flag=True,
            expose_value=False,
            callback=_set("yes"),
            help="Do not ask before changing hosts.",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def pass_opts(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opts = click.get_current_context().find_object(Opts) or Opts()
        _logging(opts)
        return f(opts, *args, **kwargs)

    return wrapper


def _logging(opts: Opts) -> None:
    level = (
        logging.WARNING
        if opts.verbose == 0
        else logging.INFO
        if opts.verbose == 1
        else logging.DEBUG
    )
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
    )
    for noisy in ("pyinfra", "paramiko", "docker", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR if opts.verbose < 2 else logging.DEBUG)


def confirmed(opts: Opts, question: str) -> bool:
    if opts.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError("not confirmed: no terminal to ask on", hint="pass -y to apply")
    return click.confirm(question, default=False, err=True)
