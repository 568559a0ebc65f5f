#!/usr/bin/python
"""``dpkg_packages``: the names of the installed Debian packages, as one small fact.

Role common reads the installed packages on every run for the ``missing_packages`` guard of
each apt task (plugins/filter/packages.py). ``ansible.builtin.package_facts`` gives them as
a mapping of every package to its versions: about 60 KB of the controller's 75 KB of facts
on the lab's login node, and Ansible copies a host's whole facts for every task it runs there
(``VariableManager.get_vars``: ``namespace_facts`` and ``clean_facts``), so that one fact
made every later task of the run slower. This module sets ``ansible_facts.course_ops_packages``
instead: the names alone, one string, which a copy does not walk. It reads dpkg's database
with one ``dpkg-query`` (no apt cache loaded, as python3-apt would). Only packages in the
``installed`` state count: one removed with its configuration kept (``config-files``) or
half-installed is missing, and its apt task runs.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: dpkg_packages
short_description: The names of the installed Debian packages, as one fact
description:
  - Sets C(ansible_facts.course_ops_packages), the names of the packages in dpkg's
    C(installed) state, sorted, one per line.
options: {}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

FORMAT = r"${db:Status-Status} ${Package}\n"


def installed(text: str) -> str:
    """``dpkg-query -W -f FORMAT``'s output: the installed packages' names, one a line."""
    names = set()
    for line in text.splitlines():
        status, _, name = line.partition(" ")
        if status == "installed" and name:
            names.add(name)
    return "\n".join(sorted(names))


def main() -> None:
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    rc, out, err = module.run_command(["dpkg-query", "-W", "-f", FORMAT],
                                      environ_update={"LC_ALL": "C"})
    if rc != 0:
        module.fail_json(msg=f"dpkg-query -W failed ({rc}): {err.strip()}")
    module.exit_json(changed=False, ansible_facts={"course_ops_packages": installed(out)})


if __name__ == "__main__":
    main()
