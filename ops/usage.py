"""``ops usage``: GPU time per pair and per student, from the controller's Slurm.

The figures are :mod:`ops.slurm_usage`'s (the same code makes the staff page on the
controller); this side reaches the controller, names each account by the roster's pair
(``state/accounts.json``) and finds the homework deadlines in the course site.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from ops import inventory as inv_mod
from ops import roles, slurm_usage, ssh
from ops.accounts import model
from ops.errors import InputError, OpsError, RemoteError, UsageError
from ops.inventory import Inventory

_WHEN = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?$")


def check_when(flag: str, value: str, where: tuple[Path, int | None] | None = None) -> str:
    """A --since/--until value (or ``where``: a group_vars setting's file and line):
    YYYY-MM-DD[THH:MM[:SS]] on the controller's clock, or ``now``."""
    if value == "now":
        return value
    ok = bool(_WHEN.match(value))
    if ok:
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            ok = False
    if not ok:
        what = f"{flag} {value!r}: expected a date YYYY-MM-DD (or YYYY-MM-DDTHH:MM)"
        if where is not None:
            raise InputError(*where, what, hint="e.g. semester_start: 2026-10-18")
        raise UsageError(what, hint="e.g. --since 2026-10-18")
    return value


def default_since(inv: Inventory) -> str:
    """The semester's start (``semester_start`` in group_vars), else 120 days ago."""
    start = inv.get("semester_start")
    if isinstance(start, dt.date):
        return start.isoformat()
    if start:
        return check_when("semester_start", str(start), inv.where("semester_start"))
    return (dt.date.today() - dt.timedelta(days=120)).isoformat()


def pair_names(inventory_dir: Path) -> dict[str, str]:
    """Slurm account -> the roster's pair, from the state file (empty without one)."""
    from ops.state import StateFile

    try:
        state = StateFile(inventory_dir).load()
    except OpsError:
        return {}
    return {p.group: key for key, p in state.pairs.items()}


def site_deadlines(inv: Inventory) -> list[tuple[str, str]]:
    """The homework deadlines of the site ``website_source`` names (none without one)."""
    source = inv.get("website_source")
    if not source:
        return []
    from ops import REPO_ROOT

    root = inv.dir / str(source)
    if not root.is_dir():
        root = REPO_ROOT / str(source)
    schedule = root / "_data" / "schedule.yml"
    if not schedule.is_file():
        return []
    node = inv_mod.compose_yaml(schedule, problem="the site's schedule: YAML syntax error")
    rows = inv_mod.node_value(node, schedule) if node is not None else None
    pages = {p.stem: _due(p) for d in root.glob("_*") if d.is_dir() for p in d.glob("*.md")}
    return slurm_usage.deadlines(rows, pages)


def _due(page: Path) -> str | None:
    """A collection page's ``due: YYYY-MM-DD`` (its front matter), else None."""
    try:
        head = page.read_text(encoding="utf-8").split("\n---", 1)[0]
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r"^due:\s*['\"]?(\d{4}-\d{2}-\d{2})", head, re.M)
    return m.group(1) if m and head.startswith("---") else None


def read(inv: Inventory, since: str, until: str) -> dict[str, Any]:
    """The report, from one command on the first slurm_controller host."""
    hosts = inv.hosts_in("slurm_controller")
    if not hosts:
        raise InputError(inv.hosts_file, None, "no host in the group slurm_controller",
                         hint="ops usage reads Slurm's accounting there")
    host = hosts[0]
    said = ssh.run(host.reach, slurm_usage.READ, since, until, timeout=300,
                   what="reading Slurm's accounting",
                   hint="is the host up and provisioned? (`ops provision`)")
    try:
        raw = slurm_usage.parse(said)
    except slurm_usage.UsageError as exc:
        raise RemoteError(f"{host.name}: {exc}",
                          hint="is Slurm running there? (`ops verify slurm`)") from None
    course = str(inv.get("accounts_course_group", model.COURSE_GROUP))
    staff = str(inv.get("accounts_staff_group", model.STAFF_GROUP))
    return slurm_usage.report(raw, course, staff, pair_names(inv.dir))


def page_config(inv: Inventory) -> dict[str, Any]:
    """What the controller's staff page reads (/etc/course-ops/usage-page.json, role
    usage_page): the semester's start and the homework deadlines of the course site."""
    return {"since": default_since(inv),
            "deadlines": [list(d) for d in site_deadlines(inv)]}


def extra_vars(inv: Inventory) -> dict[str, Any]:
    """``-e`` for the playbooks: the staff page's settings (``usage_page_config``)."""
    if not roles.setting(inv.vars, "usage_page", "usage_page_enabled"):
        return {}
    return {"usage_page_config": page_config(inv)}
