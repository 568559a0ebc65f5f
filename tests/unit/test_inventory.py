from __future__ import annotations

from pathlib import Path

import pytest

from ops import inventory
from ops.errors import InputError

HOSTS = """\
all:
  vars:
    ansible_user: root
    where: file-all
  children:
    slurm_controller:
      hosts:
        ctl: {ansible_host: 127.0.0.1, ansible_port: 2201}
    web:
      hosts:
        ctl:
    gpu_servers:
      vars:
        where: file-group
      hosts:
        gpu1: {ansible_host: 127.0.0.1, ansible_port: 2202}
        gpu2: {ansible_host: 127.0.0.1, ansible_port: 2203, where: file-host}
"""


def make(tmp_path: Path, hosts: str = HOSTS, group_vars: dict[str, str] | None = None) -> Path:
    (tmp_path / "hosts.yml").write_text(hosts)
    (tmp_path / "group_vars").mkdir()
    for name, text in (group_vars or {"all.yml": "where: gv-all\naccounts_roster: r.csv\n"}
                       ).items():
        (tmp_path / "group_vars" / name).write_text(text)
    return tmp_path


def test_hosts_groups_and_merge_order(tmp_path: Path) -> None:
    inv = inventory.load(make(tmp_path, group_vars={
        "all.yml": "where: gv-all\n", "gpu_servers.yml": "where: gv-group\n"}))
    assert [h.name for h in inv.hosts_in("slurm_controller", "gpu_servers")] == \
        ["ctl", "gpu1", "gpu2"]
    assert inv.groups["web"] == ["ctl"]
    assert inv.hosts["ctl"].port == 2201 and inv.hosts["ctl"].groups == \
        ["all", "slurm_controller", "web"]
    assert inv.hosts["ctl"].vars["where"] == "gv-all"  # group_vars/all beats hosts.yml all
    assert inv.hosts["gpu1"].vars["where"] == "gv-group"  # a group's file beats all
    assert inv.hosts["gpu2"].vars["where"] == "file-host"  # host vars beat groups
    assert inv.get("where") == "gv-all"


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    make(tmp_path, hosts="all:\n  children:\n    gpu_servers:\n      hosts: [gpu1\n")
    with pytest.raises(InputError, match=r"hosts.yml:5: YAML syntax error"):
        inventory.load(tmp_path)


def test_wrong_shape_names_the_line(tmp_path: Path) -> None:
    make(tmp_path, hosts="all:\n  children:\n    gpu_servers:\n      hosts:\n        - gpu1\n")
    with pytest.raises(InputError, match=r"hosts.yml:5: gpu_servers.hosts must be a mapping"):
        inventory.load(tmp_path)


def test_unknown_group_key(tmp_path: Path) -> None:
    make(tmp_path, hosts="all:\n  children:\n    web:\n      host:\n        ctl:\n")
    with pytest.raises(InputError, match=r"hosts.yml:4: group 'web': unknown key 'host'"):
        inventory.load(tmp_path)


def test_missing_hosts_file_says_what_to_do(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    with pytest.raises(InputError, match="run `ops lab up` first"):
        inventory.load(lab)


def test_bad_group_vars_file(tmp_path: Path) -> None:
    make(tmp_path, group_vars={"all.yml": "accounts_roster: [\n"})
    with pytest.raises(InputError, match=r"all.yml:2: YAML syntax error"):
        inventory.load(tmp_path)


def test_the_lab_group_vars_are_valid() -> None:
    from ops import REPO_ROOT
    from ops.accounts.model import AccountsConfig

    for inv in ("lab", "example"):
        v = inventory.load_vars_only(REPO_ROOT / "inventory" / inv)
        cfg = AccountsConfig.from_vars(v, Path("all.yml"))
        assert cfg.uid_range[0] > cfg.course_gid


def test_a_group_containing_itself(tmp_path: Path) -> None:
    make(tmp_path, hosts="all:\n  children:\n    a:\n      children:\n        a:\n")
    with pytest.raises(InputError, match=r"group 'a' contains itself \(all > a > a\)"):
        inventory.load(tmp_path)


def test_a_control_character_and_a_bad_port(tmp_path: Path) -> None:
    make(tmp_path, hosts="all:\n  hosts:\n    ctl: {ansible_port: x\x07}\n")
    with pytest.raises(InputError, match="not readable as YAML"):
        inventory.load(tmp_path)
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    ctl: {ansible_port: ssh}\n")
    with pytest.raises(InputError, match="ansible_port 'ssh' is not a port number"):
        inventory.load(tmp_path)


def test_empty_values_comments_tabs_and_anchors_load(tmp_path: Path) -> None:
    # an empty value (with a comment after it) crashed the reader; libyaml, as Ansible and
    # Jekyll read YAML, takes a tab after a value
    make(tmp_path, group_vars={"all.yml": (
        "accounts_roster: r.csv\n"
        "website_source:   # set per course\n"
        "course_code:\tcs236781\t# a tab before the value and the comment\n"
        "base: &base {shell: /bin/bash, groups: [course]}\n"
        "student_defaults: *base\n"
        "empty_list:\n  -\n")})
    v = inventory.load(tmp_path).vars
    assert v["website_source"] is None and v["course_code"] == "cs236781"
    assert v["student_defaults"] == {"shell": "/bin/bash", "groups": ["course"]}
    assert v["empty_list"] == [None]


def test_a_tab_indenting_names_the_line_and_says_so(tmp_path: Path) -> None:
    make(tmp_path, group_vars={"all.yml": "accounts_roster: r.csv\nlist:\n\t- a\n"})
    with pytest.raises(InputError) as e:
        inventory.load(tmp_path)
    assert e.value.line == 3 and "not tabs" in str(e.value)


def test_aliases_that_expand_beyond_the_bound_are_refused_quickly(tmp_path: Path) -> None:
    import time

    laughs = "accounts_roster: r.csv\nlol0: &l0 [" + ", ".join(["lol"] * 9) + "]\n"
    for i in range(1, 10):  # 9**10 values once expanded
        laughs += f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n"
    make(tmp_path, group_vars={"all.yml": laughs})
    started = time.monotonic()
    with pytest.raises(InputError) as e:
        inventory.load(tmp_path)
    assert time.monotonic() - started < 2
    # lol6 is the first to hold more than a million (9**7 + ... nodes)
    assert e.value.path.endswith("all.yml") and e.value.line == 8
    assert "aliases expand this value" in str(e.value)


def test_a_big_file_without_aliases_is_not_refused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # the bound is about aliases: a document is never refused for its own size
    monkeypatch.setattr(inventory, "ALIAS_EXPANSION_LIMIT", 1000)
    big = _write(tmp_path / "big.yml", "[" + ", ".join(["1"] * 1100) + "]\n")
    assert len(inventory.node_value(inventory.compose_yaml(big), big)) == 1100
    laughs = _write(tmp_path / "laughs.yml", "a: &a [" + ", ".join(["1"] * 40) + "]\n"
                    "b: [" + ", ".join(["*a"] * 40) + "]\n")
    with pytest.raises(InputError) as e:
        inventory.node_value(inventory.compose_yaml(laughs), laughs)
    assert e.value.line == 2


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_inventory_is_loaded_in_one_place_per_command() -> None:
    """Every command loads the inventory once (``Opts.inv``) and hands the object down; the
    one other load is the site build's, which can do without an inventory."""
    import ast

    from ops import REPO_ROOT

    calls = []
    for path in sorted((REPO_ROOT / "ops").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in ("inventory", "inv_mod")):
                calls.append(str(path.relative_to(REPO_ROOT)))
    assert sorted(calls) == ["ops/console.py", "ops/site/__init__.py"]


def test_a_command_loads_the_inventory_once(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    from ops import inventory
    from ops.console import Opts

    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    ctl:\n")
    loads: list[Path] = []
    real = inventory.load
    monkeypatch.setattr(inventory, "load", lambda d: loads.append(d) or real(d))
    opts = Opts(inventory=tmp_path)
    assert opts.inv is opts.inv and list(opts.inv.hosts) == ["ctl"]
    assert loads == [tmp_path]
