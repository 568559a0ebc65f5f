"""``missing_packages``: which of an apt task's packages are not installed yet.

The roles guard each ``ansible.builtin.apt`` task with it, so a run where every package is
installed already skips the apt module (which loads the whole apt cache, about a second a
task on a small host) instead of running it to report "ok". The installed list is the
host's own, read at the start of the run by role common's ``dpkg_packages``
(plugins/modules: ``ansible_facts.course_ops_packages``, the names one a line): a package
removed by hand is missing there, and its task runs and puts it back. Where it has not run
(a playbook without role common, a run limited by ``--tags``), every package counts as
missing and the apt task runs as it always did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def missing_packages(names: str | Iterable[str], facts: Mapping[str, Any] | None) -> list[str]:
    """The names of ``names`` (one, or a list, as apt's ``name`` takes them) that
    ``facts`` (``ansible_facts``) does not list as installed. A name with a version or an
    architecture (``pkg=1.2``, ``pkg:amd64``) is never taken as installed: apt decides."""
    wanted = [names] if isinstance(names, str) else list(names)
    listed = (facts or {}).get("course_ops_packages")
    if not isinstance(listed, str):
        return [str(n) for n in wanted]
    installed = set(listed.split())
    return [str(n) for n in wanted if str(n) not in installed]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"missing_packages": missing_packages}
