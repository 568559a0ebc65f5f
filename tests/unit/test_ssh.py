"""The one host model (ops.ssh): what every tool is handed to reach a host, jump host
included, with host keys always checked."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from ops import inventory, machines, ssh
from ops.errors import InputError
from ops.site import deploy

#: a cluster whose GPU servers sit on a private network behind the login node
JUMP_HOSTS = """\
all:
  vars:
    ansible_user: admin
    ansible_ssh_private_key_file: /keys/staff
    ansible_ssh_common_args: -o UserKnownHostsFile=/keys/known_hosts
  children:
    slurm_controller:
      hosts:
        login: {ansible_host: login.example.edu, ansible_port: 2222}
    gpu_servers:
      hosts:
        gpu1: {ansible_host: 10.0.0.11}
        gpu2: {ansible_host: 10.0.0.12}
      vars:
        ansible_ssh_common_args: >-
          -o UserKnownHostsFile=/keys/known_hosts -o ProxyJump=login
    web:
      hosts:
        www:
          ansible_host: 10.0.0.20
          ansible_ssh_common_args: -J admin@login.example.edu:2222
"""


@pytest.fixture
def jump_inv(tmp_path: Path) -> inventory.Inventory:
    (tmp_path / "hosts.yml").write_text(JUMP_HOSTS)
    return inventory.load(tmp_path)


def block(config: str, alias: str) -> list[str]:
    """One Host block of an ssh_config, as its lines."""
    part = config.split(f"Host {alias}\n", 1)[1].split("\nHost ", 1)[0]
    return [line.strip() for line in part.splitlines()]


def test_the_inventory_hosts_become_one_block_each(jump_inv: inventory.Inventory) -> None:
    text = jump_inv.ssh_config()
    assert block(text, "login") == ["HostName login.example.edu", "Port 2222", "User admin",
                                    "IdentityFile /keys/staff",
                                    "UserKnownHostsFile /keys/known_hosts"]
    assert block(text, "gpu1") == ["HostName 10.0.0.11", "Port 22", "User admin",
                                   "IdentityFile /keys/staff",
                                   "UserKnownHostsFile /keys/known_hosts", "ProxyJump login"]
    # a hop given by address and port is the inventory host there: its block applies
    assert "ProxyJump login" in block(text, "www")
    assert text.endswith("Host *\n  StrictHostKeyChecking yes\n  ServerAliveInterval 15\n")
    assert "StrictHostKeyChecking no" not in text


def test_a_host_brings_the_hosts_it_jumps_through(jump_inv: inventory.Inventory) -> None:
    a = jump_inv.hosts["gpu2"].reach
    assert [h.alias for h in a.hops] == ["login"]
    text = Path(ssh.config_file([a])).read_text()
    assert "Host login\n" in text and "Host gpu2\n" in text and "Host gpu1\n" not in text


def test_every_tool_gets_the_same_config(jump_inv: inventory.Inventory,
                                         tmp_path: Path) -> None:
    """The exact argv each phase builds for the jump-host inventory."""
    gpu1 = jump_inv.hosts["gpu1"]
    # ssh (site deploy, registry, hub, usage): the alias, through the config
    argv = ssh.argv(gpu1.reach, "echo $1", "x y")
    config = Path(argv[2])
    assert argv[:2] == ["ssh", "-F"] and argv[3:] == [
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "gpu1", "--",
        "sudo -n sh -c 'echo $1' sh 'x y'"]
    assert block(config.read_text(), "gpu1") == block(jump_inv.ssh_config(), "gpu1")
    assert config.stat().st_mode & 0o777 == 0o600
    assert config.parent.stat().st_mode & 0o777 == 0o700
    # rsync: the same ssh
    www = jump_inv.hosts["www"]
    r = deploy.rsync_argv(www, "/srv/w", tmp_path, "/srv/w/releases/.x", [])
    assert shlex.split(r[r.index("-e") + 1])[:2] == ["ssh", "-F"]
    assert r[-1] == "www:/srv/w/releases/.x/"
    # pyinfra: the alias looked up in the config (its client follows ProxyJump from there)
    data = ssh.pyinfra_data(gpu1.reach, ssh.config_file([gpu1.reach]))
    assert data["ssh_hostname"] == "gpu1"
    assert "ProxyJump login" in Path(data["ssh_config_file"]).read_text()
    assert not {"ssh_port", "ssh_key"} & data.keys() and data["ssh_user"] == "admin"
    # Ansible: ansible.cfg's ssh_args after -F the config of every host
    p = machines.playbook_argv(jump_inv)
    assert p[:4] == ["ansible-playbook", "-i", str(jump_inv.dir / "hosts.yml"),
                     str(machines.PLAYBOOKS / "site.yml")]
    assert p[4] == "-e"
    args = shlex.split(json.loads(p[5])["ansible_ssh_args"])
    assert args[:1] == ["-F"] and args[2:] == ["-o", "ControlMaster=auto", "-o",
                                               "ControlPersist=60s"]
    assert Path(args[1]).read_text() == jump_inv.ssh_config()


def test_verify_hands_testinfra_the_inventory_config(jump_inv: inventory.Inventory,
                                                     tmp_path: Path) -> None:
    text = jump_inv.ssh_config(tmp_path)
    assert block(text, "gpu1")[-1] == "ProxyJump login"
    assert f"ControlPath {tmp_path}/cm-%C" in text and "ControlPersist 60s" in text


def test_openssh_reads_the_config_as_written(jump_inv: inventory.Inventory) -> None:
    """``ssh -G`` (the client's own parser: what it would use, no connection made)."""
    config = ssh.config_file([h.reach for h in jump_inv.hosts.values()])
    said = subprocess.run(["ssh", "-G", "-F", str(config), "gpu1"], capture_output=True,
                          text=True, check=True).stdout.splitlines()
    for line in ("hostname 10.0.0.11", "user admin", "port 22", "proxyjump login",
                 "stricthostkeychecking true", "userknownhostsfile /keys/known_hosts"):
        assert line in said
    login = subprocess.run(["ssh", "-G", "-F", str(config), "login"], capture_output=True,
                           text=True, check=True).stdout.splitlines()
    assert "port 2222" in login and "hostname login.example.edu" in login


@pytest.mark.parametrize(("args", "parsed"), [
    ("-o ProxyJump=gw -o StrictHostKeyChecking=accept-new",
     [("ProxyJump", "gw"), ("StrictHostKeyChecking", "accept-new")]),
    ("-oProxyCommand='ssh -W %h:%p -q bastion'", [("ProxyCommand", "ssh -W %h:%p -q bastion")]),
    ("-o 'ServerAliveInterval 30' -C -J a@b:2", [("ServerAliveInterval", "30"),
                                                  ("Compression", "yes"), ("ProxyJump", "a@b:2")]),
    ("-F ~/.ssh/bastion.cfg", [("Include", "~/.ssh/bastion.cfg")]),
])
def test_ansible_ssh_args_are_read_as_ssh_would(args: str, parsed: list) -> None:
    assert ssh.parse_args(args, "x") == parsed


@pytest.mark.parametrize(("args", "said"), [
    ("-o StrictHostKeyChecking=no", "turns host-key checking off"),
    ("-o StrictHostKeyChecking=off", "turns host-key checking off"),
    ("-X", "ssh flag '-X' is not one ops can carry"),
    ("-o ControlPath=/tmp/x", "ControlPath is set by ops itself"),
    ("-p twentytwo", "Port 'twentytwo' is not a port number"),
    ("-o", "-o without an option"),
    ("-o 'ProxyJump", "cannot be split"),
])
def test_what_ops_cannot_carry_is_an_error_naming_the_file_and_line(
        tmp_path: Path, args: str, said: str) -> None:
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    h1:\n      ansible_host: 10.0.0.1\n"
                                        f"      ansible_ssh_common_args: {json.dumps(args)}\n")
    with pytest.raises(InputError) as e:
        inventory.load(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'hosts.yml'}:5: host 'h1': "
                                   "ansible_ssh_common_args: ") and said in str(e.value)


def test_a_value_in_group_vars_is_named_there(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    h1: {}\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(
        "course: x\nansible_ssh_extra_args: -o StrictHostKeyChecking=no\n")
    with pytest.raises(InputError, match=r"group_vars/all.yml:2: host 'h1': "
                                         "ansible_ssh_extra_args: StrictHostKeyChecking=no"):
        inventory.load(tmp_path)


def test_a_jump_through_itself_is_refused(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    a: {ansible_ssh_common_args: -J b}\n"
        "    b: {ansible_ssh_common_args: -J a}\n")
    with pytest.raises(InputError, match="its ProxyJump goes through itself"):
        inventory.load(tmp_path)


def test_a_hop_outside_the_inventory_is_left_to_ssh(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    a: {ansible_ssh_common_args: -J ops@gateway.example.edu}\n")
    a = inventory.load(tmp_path).hosts["a"].reach
    assert a.hops == () and a.option("ProxyJump") == "ops@gateway.example.edu"


def test_the_lab_inventory_checks_host_keys(tmp_path: Path) -> None:
    from ops import lab

    key = tmp_path / ".lab" / "id_ed25519"
    (tmp_path / "hosts.yml").write_text(lab.render_hosts("t", key, {"ctl": 1, "gpu1": 2,
                                                                     "gpu2": 3}))
    text = inventory.load(tmp_path).ssh_config()
    assert f"UserKnownHostsFile {lab.known_hosts_path(key)}" in block(text, "gpu1")
    assert "StrictHostKeyChecking yes" in block(text, "gpu1")


def test_verify_runs_one_pytest_session_over_the_inventory_config(
        jump_inv: inventory.Inventory, tmp_path: Path) -> None:
    from ops import verify

    argv = verify.pytest_argv(jump_inv.dir, ["accounts", "gpu"],
                              {a: verify.targets(jump_inv, [a]) for a in ("accounts", "gpu")},
                              tmp_path / "j.xml", None, 0, tmp_path / "ssh_config",
                              inv=jump_inv)
    assert argv[1:3] == ["-m", "pytest"]
    assert json.loads(next(a for a in argv if a.startswith("--ops-targets="))
                      .split("=", 1)[1]) == {
        "accounts": "ansible://slurm_controller,ansible://gpu_servers",
        "gpu": "ansible://gpu_servers"}
    assert f"--ssh-config={tmp_path / 'ssh_config'}" in argv
    assert f"--ansible-inventory={jump_inv.dir / 'hosts.yml'}" in argv
    assert "--sudo" in argv  # admin, not root


def test_the_provision_phases_are_numbered_in_order() -> None:
    from ops import provision

    assert [(p.number, p.timed_as) for p in provision.PHASES] == [
        (None, "website build"), (1, "machines (ansible-playbook)"), (2, "website deploy"),
        (3, "accounts"), (None, ""), (4, "verify")]
    assert provision.NUMBERED == 4
