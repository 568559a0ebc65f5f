"""The one inventory: an Ansible YAML inventory (``hosts.yml`` + ``group_vars/``).

This module is the only place hosts are listed for course-ops. Ansible reads the same files
itself (``-i DIR/hosts.yml``); pyinfra and testinfra get their targets from here. Variables
merge in Ansible's order, simplified: ``all`` vars in hosts.yml < ``group_vars/all`` < a
group's vars in hosts.yml (parents before children, then by name) < ``group_vars/<group>``
< a host's vars in hosts.yml < ``host_vars/<host>``. Values are not Jinja-templated here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ops import ssh
from ops.errors import InputError

ACCOUNT_GROUPS = ("slurm_controller", "gpu_servers")
#: libyaml's parser where PyYAML has it: the one Ansible and Jekyll (Psych) use, so a file
#: they read is read here too (PyYAML's own scanner refuses a tab after a value).
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: At most this many nodes in a value once its aliases are expanded (see node_value).
ALIAS_EXPANSION_LIMIT = 1_000_000
#: Variables ops reads once for the whole course (the accounts, the course image's CUDA,
#: the course QOS...): Ansible would apply a group's or a host's value to those hosts only,
#: so a value set anywhere but the ``all`` level is an error naming its file and line.
COURSE_WIDE_PREFIXES = ("accounts_",)
COURSE_WIDE = frozenset({"course_image_cuda", "lab_name", "slurm_qos_name",
                         "slurm_pair_max_gpus", "slurm_max_time", "website_source"})

#: Where a variable was set: its file and line.
Origin = tuple[Path, int | None]


def course_wide(key: str) -> bool:
    return key in COURSE_WIDE or key.startswith(COURSE_WIDE_PREFIXES)


@dataclass
class Host:
    name: str
    groups: list[str] = field(default_factory=list)  # every group it is in, "all" first
    vars: dict[str, Any] = field(default_factory=dict)
    #: how every tool reaches it (:mod:`ops.ssh`); :func:`load` sets it, jump hosts resolved
    access: ssh.Access | None = field(default=None, repr=False, compare=False)

    @property
    def reach(self) -> ssh.Access:
        if self.access is None:  # a host made by hand (tests): no other host to jump through
            self.access = ssh.access(self.name, self.vars, f"host {self.name!r}")
        return self.access

    @property
    def address(self) -> str:
        return self.reach.hostname

    @property
    def port(self) -> int:
        return self.reach.port

    @property
    def user(self) -> str:
        return self.reach.user


@dataclass
class Inventory:
    dir: Path
    hosts: dict[str, Host]
    groups: dict[str, list[str]]  # group -> host names (children included), file order
    vars: dict[str, Any]  # the ``all`` level
    origins: dict[str, Origin] = field(default_factory=dict)  # where each ``all`` var is set

    def where(self, key: str) -> Origin:
        """The file and line that set ``key`` at the ``all`` level (else group_vars/all.yml)."""
        return self.origins.get(key, (self.dir / "group_vars" / "all.yml", None))

    @property
    def hosts_file(self) -> Path:
        return self.dir / "hosts.yml"

    def hosts_in(self, *groups: str) -> list[Host]:
        seen: dict[str, Host] = {}
        for g in groups:
            for name in self.groups.get(g, []):
                seen.setdefault(name, self.hosts[name])
        return list(seen.values())

    def get(self, key: str, default: Any = None) -> Any:
        return self.vars.get(key, default)

    def ssh_config(self, control_dir: Path | None = None) -> str:
        """The ssh_config of every host (:mod:`ops.ssh`)."""
        return ssh.config_text([h.reach for h in self.hosts.values()], control_dir)

    def require(self, key: str) -> Any:
        if key not in self.vars:
            raise InputError(
                *self.where(key),
                f"the variable {key!r} is not set",
                hint="add it (see inventory/example/group_vars/all.yml)",
            )
        return self.vars[key]

    def path_var(self, key: str) -> Path:
        """A path variable, relative to the inventory directory unless absolute."""
        return self.dir / str(self.require(key))


def compose_yaml(path: Path, *, problem: str = "YAML syntax error",
                 missing_hint: str | None = None) -> yaml.Node | None:
    """A YAML file's node tree (lines kept); its problems as one-line InputErrors.

    ``problem`` opens the message of a syntax error; with ``missing_hint`` a missing file
    is an InputError too (else FileNotFoundError goes to the caller).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_hint is None:
            raise
        raise InputError(path, None, "no such file", hint=missing_hint) from None
    except UnicodeDecodeError:
        raise InputError(path, None, "not UTF-8 text") from None
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        lines = text.splitlines()
        tab = line is not None and 0 < line <= len(lines) and "\t" in lines[line - 1]
        raise InputError(
            path,
            line,
            f"{problem}: {exc.problem}",
            hint="YAML indents with spaces, not tabs: replace the tab on that line" if tab
            else "fix the indentation or quoting there",
        ) from None
    except yaml.YAMLError as exc:  # e.g. a control character (ReaderError)
        raise InputError(path, None, f"not readable as YAML: {exc}") from None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def expanded_size(node: yaml.Node, limit: int | None = None
                  ) -> tuple[int, int, yaml.Node | None]:
    """(nodes once every alias is expanded, distinct nodes, the innermost node holding more
    than ``limit`` (ALIAS_EXPANSION_LIMIT) or None), counted without expanding anything:
    each distinct node once."""
    limit = ALIAS_EXPANSION_LIMIT if limit is None else limit
    sizes: dict[int, int] = {}
    first_over: yaml.Node | None = None
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        n, expanded = stack.pop()
        if id(n) in sizes:
            continue
        kids = _children(n)
        if not expanded:
            stack.append((n, True))
            stack.extend((k, False) for k in kids if id(k) not in sizes)
            continue
        sizes[id(n)] = 1 + sum(sizes[id(k)] for k in kids)
        if first_over is None and sizes[id(n)] > limit:
            first_over = n
    return sizes[id(node)], len(sizes), first_over


def check_expansion(node: yaml.Node, path: Path | None) -> None:
    """Refuse, with the file and line, a value whose aliases expand it beyond
    ALIAS_EXPANSION_LIMIT nodes (a "billion laughs"): the loader shares an aliased value, but
    whatever walks or serialises it later (Ansible, Jinja, JSON, Liquid) expands it."""
    total, distinct, where = expanded_size(node)
    if where is not None and total > distinct:
        raise InputError(
            path or Path("<yaml>"),
            where.start_mark.line + 1,
            f"aliases expand this value to {total:.3g} values, more than "
            f"{ALIAS_EXPANSION_LIMIT:,}",
            hint="write the values out, or nest fewer aliases (*name) in one another",
        )


def node_value(node: yaml.Node, path: Path | None = None) -> Any:
    """The Python value of a composed node (an empty value is None), its size checked first
    (:func:`check_expansion`)."""
    check_expansion(node, path)
    return yaml.constructor.SafeConstructor().construct_document(node)


def _values(path: Path, items: list[tuple[str, yaml.Node]],
            origins: dict[str, Origin] | None = None) -> dict[str, Any]:
    """``{key: value}``; a value YAML cannot make (``2027-02-30``, an impossible date
    unquoted) is an InputError with its line. ``origins`` gets each key's file and line."""
    out: dict[str, Any] = {}
    for key, node in items:
        try:
            out[key] = node_value(node, path)
        except ValueError as exc:  # the timestamp constructor's "day is out of range"
            raise InputError(path, node.start_mark.line + 1,
                             f"{key}: {getattr(node, 'value', '')!r} is not a valid value ({exc})",
                             hint="a date is YYYY-MM-DD and must exist") from None
        if origins is not None:
            origins[key] = (path, node.start_mark.line + 1)
    return out


def _mapping(path: Path, node: yaml.Node | None, what: str) -> list[tuple[str, yaml.Node]]:
    if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")):
        return []
    if not isinstance(node, yaml.MappingNode):
        raise InputError(
            path,
            node.start_mark.line + 1,
            f"{what} must be a mapping",
            hint="see inventory/example/hosts.yml for the shape",
        )
    out = []
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode):
            raise InputError(path, k.start_mark.line + 1, f"{what}: keys must be names")
        out.append((str(k.value), v))
    return out


def vars_file(path: Path) -> dict[str, Any]:
    """One YAML file of variables (a group_vars file, a role's defaults)."""
    return _vars_file(path)


def _vars_file(path: Path, origins: dict[str, Origin] | None = None) -> dict[str, Any]:
    node = compose_yaml(path)
    items = _mapping(path, node, "a vars file")
    return _values(path, items, origins)


def _vars_dir(base: Path, name: str,
              origins: dict[str, Origin] | None = None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for suffix in ("", ".yml", ".yaml"):
        p = base / f"{name}{suffix}"
        if p.is_file():
            merged.update(_vars_file(p, origins))
    d = base / name
    if d.is_dir():
        for p in sorted(d.iterdir()):
            if p.suffix in (".yml", ".yaml") and p.is_file():
                merged.update(_vars_file(p, origins))
    return merged


def load(inventory_dir: Path) -> Inventory:
    inventory_dir = inventory_dir.resolve()
    path = inventory_dir / "hosts.yml"
    if not inventory_dir.is_dir():
        raise InputError(
            inventory_dir,
            None,
            "no such inventory directory",
            hint="pass -i DIR with a hosts.yml and group_vars/",
        )
    if not path.is_file():
        lab = inventory_dir.name == "lab"
        raise InputError(
            path,
            None,
            "the inventory has no hosts.yml",
            hint="run `ops lab up` first" if lab else "write one (see inventory/example/hosts.yml)",
        )
    root = compose_yaml(path)
    top = dict(_mapping(path, root, "the inventory"))
    if set(top) - {"all"} or "all" not in top:
        line = root.start_mark.line + 1 if root is not None else 1
        raise InputError(path, line, "the top level must be the single group 'all'")

    group_vars: dict[str, dict[str, Any]] = {}
    host_file_vars: dict[str, dict[str, Any]] = {}
    level_origins: dict[str, dict[str, Origin]] = {}  # group or host -> key -> origin
    members: dict[str, list[str]] = {}
    parents: dict[str, list[str]] = {}

    stack: list[str] = []

    def walk(group: str, node: yaml.Node, parent: str | None) -> None:
        if group in stack:
            raise InputError(path, node.start_mark.line + 1,
                             f"group {group!r} contains itself ({' > '.join(stack + [group])})")
        stack.append(group)
        try:
            walk_group(group, node, parent)
        finally:
            stack.pop()

    def walk_group(group: str, node: yaml.Node, parent: str | None) -> None:
        members.setdefault(group, [])
        parents.setdefault(group, [])
        if parent:
            parents[group].append(parent)
        _mapping(path, node, f"group {group!r}")  # checks the shape
        items = node.value if isinstance(node, yaml.MappingNode) else []
        for key_node, value in items:
            key = str(key_node.value)
            if key == "vars":
                group_vars.setdefault(group, {}).update(_values(
                    path, _mapping(path, value, f"{group}.vars"),
                    level_origins.setdefault(group, {})))
            elif key == "hosts":
                for hname, hnode in _mapping(path, value, f"{group}.hosts"):
                    hv = _values(path, _mapping(path, hnode, f"host {hname!r}"),
                                 level_origins.setdefault(f"host {hname}", {}))
                    host_file_vars.setdefault(hname, {}).update(hv)
                    if hname not in members[group]:
                        members[group].append(hname)
            elif key == "children":
                for child, cnode in _mapping(path, value, f"{group}.children"):
                    walk(child, cnode, group)
            else:
                raise InputError(
                    path,
                    key_node.start_mark.line + 1,
                    f"group {group!r}: unknown key {key!r}",
                    hint="a group holds only hosts, vars and children",
                )

    walk("all", top["all"], None)

    def closure(group: str) -> list[str]:  # a group's hosts, its children's included
        out = list(members[group])
        for child, ps in parents.items():
            if group in ps:
                out += [h for h in closure(child) if h not in out]
        return out

    def depth(group: str) -> int:
        return 0 if not parents[group] else 1 + max(depth(p) for p in parents[group])

    groups = {g: closure(g) for g in members}
    all_hosts = groups["all"]
    gv_dir, hv_dir = inventory_dir / "group_vars", inventory_dir / "host_vars"
    all_origins = dict(level_origins.get("all", {}))
    level_all = {**group_vars.get("all", {}), **_vars_dir(gv_dir, "all", all_origins)}
    for g in groups:
        if g != "all":
            _vars_dir(gv_dir, g, level_origins.setdefault(g, {}))
    for h in all_hosts:
        _vars_dir(hv_dir, h, level_origins.setdefault(f"host {h}", {}))
    for level, origins in level_origins.items():
        for key, (where, line) in origins.items():
            if level != "all" and course_wide(key):
                raise InputError(where, line, f"{key} is one value for the whole course: "
                                 f"set it in group_vars/all.yml, not for {level}",
                                 hint="ops and Ansible must read the same value")
    hosts: dict[str, Host] = {}
    for h in all_hosts:
        in_groups = sorted(
            (g for g in groups if h in groups[g] and g != "all"), key=lambda g: (depth(g), g)
        )
        merged = dict(level_all)
        for g in in_groups:
            merged.update(group_vars.get(g, {}))
            merged.update(_vars_dir(gv_dir, g))
        merged.update(host_file_vars.get(h, {}))
        merged.update(_vars_dir(hv_dir, h))
        port = merged.get("ansible_port", 22)
        if not (isinstance(port, int) or str(port).isdigit()) or not 0 < int(port) < 65536:
            raise InputError(path, None, f"host {h!r}: ansible_port {port!r} is not a port number")
        hosts[h] = Host(h, ["all", *in_groups], merged)
        levels = [f"host {h}", *reversed(in_groups), "all"]
        try:
            hosts[h].access = ssh.access(h, merged, f"host {h!r}")
        except ValueError as exc:
            var = next((v for v in ("ansible_ssh_extra_args", "ansible_ssh_common_args")
                        if v in str(exc)), "")
            found = [all_origins if lv == "all" else level_origins.get(lv, {}) for lv in levels]
            where, line = next((o[var] for o in found if var in o), (path, None))
            raise InputError(where, line, str(exc),
                             hint="fix the host's connection variables") from None
    try:
        resolved = ssh.resolve({n: h.reach for n, h in hosts.items()})
    except ValueError as exc:
        raise InputError(path, None, str(exc), hint="fix the hosts' ProxyJump") from None
    for n, a in resolved.items():
        hosts[n].access = a
    return Inventory(inventory_dir, hosts, groups, level_all, all_origins)


def load_vars_only(inventory_dir: Path) -> dict[str, Any]:
    """The ``all`` level of group_vars alone (for commands that need no hosts)."""
    return _vars_dir(inventory_dir.resolve() / "group_vars", "all")
