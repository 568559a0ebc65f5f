"""Each pair's GPU budget for the semester, in GPU-hours: ``slurm_pair_gpu_hours`` for every
pair (or single), and the exceptions (an extension) in the small YAML file beside the roster
that ``accounts_gpu_budgets`` names::

    # pair (the roster's pair column): GPU-hours for the semester; null: no budget
    7: 150
    "lab-a": 40

Slurm enforces them (GrpTRESMins=gres/gpu on each pair's account, set by the accounts sync
in its batched sacctmgr calls); this module only reads and checks the inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ops import roles
from ops.errors import InputError
from ops.roster import Roster, pair_key

#: the file's name when the inventory does not set accounts_gpu_budgets (absent: no overrides)
DEFAULT_FILE = "gpu-budgets.yml"
#: more than a year of one GPU: surely a typo (minutes, or an extra digit)
MAX_HOURS = 24 * 366 * 8


@dataclass(frozen=True)
class Budgets:
    default: float | None = None  # GPU-hours; None: no budget
    overrides: dict[str, float | None] = field(default_factory=dict)  # pair key -> hours

    def hours(self, pair: str) -> float | None:
        return self.overrides.get(pair, self.default)

    def minutes(self, pair: str) -> int | None:
        """GrpTRESMins=gres/gpu for the pair's account (whole GPU-minutes), None: no limit."""
        h = self.hours(pair)
        return None if h is None else int(round(h * 60))


def _hours(value: Any, path: Path, line: int | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) \
            or not 0 <= value <= MAX_HOURS:
        raise InputError(path, line, f"{what}: expected GPU-hours, a number from 0 to "
                         f"{MAX_HOURS}, or null for no budget; got {value!r}",
                         hint="write the semester's GPU-hours, e.g. 100 (0.5 is 30 minutes)")
    return float(value)


def load(variables: dict[str, Any], inventory_dir: Path, roster: Roster,
         where: Any = None) -> Budgets:
    """The budgets the inventory asks for, checked against the roster (``where(key)`` names
    the file and line of a group_vars setting)."""
    path, line = where("slurm_pair_gpu_hours") if where else (inventory_dir, None)
    default = _hours(roles.setting(variables, "slurm", "slurm_pair_gpu_hours"), path, line,
                     "slurm_pair_gpu_hours")
    named = variables.get("accounts_gpu_budgets")
    if named in (None, ""):
        file = inventory_dir / DEFAULT_FILE
        if not file.is_file():
            return Budgets(default)
    else:
        file = inventory_dir / str(named)
    from ops.inventory import compose_yaml, node_value

    node = compose_yaml(file, problem="GPU budgets: YAML syntax error",
                        missing_hint="create it (pair: GPU-hours per line) or unset "
                        "accounts_gpu_budgets")
    if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")):
        return Budgets(default)
    if not isinstance(node, yaml.MappingNode):
        raise InputError(file, node.start_mark.line + 1,
                         "expected a mapping of pair: GPU-hours",
                         hint='one line per pair, e.g. "7: 150"')
    pairs = roster.pairs()
    overrides: dict[str, float | None] = {}
    for k, v in node.value:
        n = k.start_mark.line + 1
        if not isinstance(k, yaml.ScalarNode) or not k.value.strip():
            raise InputError(file, n, "a key must be a pair of the roster")
        key = pair_key(str(k.value))
        if key not in pairs:
            raise InputError(file, n, f"pair {k.value!r} is not in the roster {roster.path}",
                             hint="use the roster's pair column; remove the line of a pair "
                             "that left")
        if key in overrides:
            raise InputError(file, n, f"pair {k.value!r} is given twice",
                             hint="keep one line per pair")
        overrides[key] = _hours(node_value(v, file), file, n, f"pair {k.value}")
    return Budgets(default, overrides)
