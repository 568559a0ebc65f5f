"""The roles' own defaults (``roles/<role>/defaults/main.yml``) for the Python side.

A setting the inventory leaves unset has the value its role gives it; ops and the specs
read that value here instead of repeating it as a literal. Only literal defaults can be
read outside Ansible: a templated one (``{{ ... }}``) is refused, not half-resolved.
"""

from __future__ import annotations

import functools
from typing import Any

from ops import REPO_ROOT
from ops.errors import OpsError

ROLES = REPO_ROOT / "roles"


@functools.cache
def defaults(role: str) -> dict[str, Any]:
    from ops.inventory import vars_file

    path = ROLES / role / "defaults" / "main.yml"
    return vars_file(path)


def default(role: str, key: str) -> Any:
    value = defaults(role)[key]
    if isinstance(value, str) and "{{" in value:
        raise OpsError(f"{ROLES / role / 'defaults' / 'main.yml'}: {key} is templated; "
                       "ops cannot read it outside Ansible", hint="set it in group_vars")
    return value


def setting(variables: dict[str, Any], role: str, key: str) -> Any:
    """``key`` as the inventory sets it, else as its role's defaults do."""
    return variables[key] if key in variables else default(role, key)
