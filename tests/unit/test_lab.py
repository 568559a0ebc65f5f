"""ops.lab without a Docker engine: inventory, image tag, mirror, container spec, errors."""

from __future__ import annotations

import re
import shlex
import shutil
import stat
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml

from ops import REPO_ROOT, engine, lab, rootfs
from ops.errors import EngineError, ExitCode, InputError

PORTS = {"ctl": 32768, "gpu1": 32769, "gpu2": 32770}


def write_all_yml(inventory: Path, text: str) -> None:
    (inventory / "group_vars").mkdir(parents=True, exist_ok=True)
    (inventory / "group_vars" / "all.yml").write_text(text, encoding="utf-8")


# ------------------------------------------------------------------------- hosts.yml


@pytest.fixture
def hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(tmp_path)
    text = lab.render_hosts("demo-lab", Path("inv/.lab/id_ed25519"), PORTS)
    return yaml.safe_load(text)


def test_hosts_groups_are_the_lab_groups(hosts: dict) -> None:
    assert list(hosts["all"]["children"]) == ["slurm_controller", "web", "registry", "gpu_servers"]


@pytest.mark.parametrize(
    ("group", "members"),
    [
        ("slurm_controller", ["ctl"]),
        ("web", ["ctl"]),
        ("registry", ["ctl"]),
        ("gpu_servers", ["gpu1", "gpu2"]),
    ],
)
def test_hosts_group_members(hosts: dict, group: str, members: list[str]) -> None:
    assert list(hosts["all"]["children"][group]["hosts"]) == members


@pytest.mark.parametrize("node", ["ctl", "gpu1", "gpu2"])
def test_hosts_port_of_each_node(hosts: dict, node: str) -> None:
    described = [
        members[node]
        for group in hosts["all"]["children"].values()
        if (members := group["hosts"]).get(node)
    ]
    assert described == [{"ansible_host": "127.0.0.1", "ansible_port": PORTS[node]}]


def test_hosts_published_ports_are_host_vars() -> None:
    text = lab.render_hosts(
        "demo-lab", Path("/k/id_ed25519"), PORTS, {"ctl": {443: 40001, 80: 40000}}
    )
    ctl = yaml.safe_load(text)["all"]["children"]["slurm_controller"]["hosts"]["ctl"]
    assert ctl == {
        "ansible_host": "127.0.0.1",
        "ansible_port": PORTS["ctl"],
        "lab_ports": {80: 40000, 443: 40001},
    }


def test_ctl_publishes_web_and_registry_ports() -> None:
    spec = lab.container_spec("demo-lab", lab.NODES[0], "img:tag")
    assert spec["ports"] == {
        f"{p}/tcp": ("127.0.0.1", None) for p in (22, 80, 443, 5000)
    }


def test_gpu_nodes_keep_docker_on_a_volume_of_their_own() -> None:
    spec = lab.container_spec("demo-lab", lab.NODES[1], "img:tag")
    assert spec["volumes"]["demo-lab-gpu1-var-lib-docker"] == {
        "bind": "/var/lib/docker", "mode": "rw"}


def test_hosts_vars_given_once_then_empty(hosts: dict) -> None:
    assert hosts["all"]["children"]["web"]["hosts"]["ctl"] == {}
    assert hosts["all"]["children"]["registry"]["hosts"]["ctl"] == {}


def test_hosts_key_path_is_absolute(hosts: dict, tmp_path: Path) -> None:
    key = hosts["all"]["vars"]["ansible_ssh_private_key_file"]
    assert Path(key).is_absolute()
    assert Path(key) == (tmp_path / "inv" / ".lab" / "id_ed25519").resolve()


def test_hosts_connection_vars(hosts: dict) -> None:
    variables = hosts["all"]["vars"]
    assert variables["ansible_user"] == "root"
    assert variables["ansible_python_interpreter"] == "/usr/bin/python3"
    # host keys checked, against the lab's own known_hosts beside its key
    args = shlex.split(variables["ansible_ssh_common_args"])
    assert "StrictHostKeyChecking=yes" in args and "StrictHostKeyChecking=no" not in args
    known = Path(variables["ansible_ssh_private_key_file"]).with_name("known_hosts")
    assert f"UserKnownHostsFile={known}" in args


def test_hosts_header_names_the_lab() -> None:
    text = lab.render_hosts("demo-lab", Path("/k"), PORTS)
    assert text.startswith("# Written by `ops lab up` for lab demo-lab;")


def test_hosts_key_path_with_odd_characters_round_trips(tmp_path: Path) -> None:
    key = tmp_path / 'my "labs": #1' / "id_ed25519"
    parsed = yaml.safe_load(lab.render_hosts("x", key, PORTS))
    assert parsed["all"]["vars"]["ansible_ssh_private_key_file"] == str(key)


def test_write_if_changed_leaves_same_content_untouched(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    assert lab._write_if_changed(path, "a\n")
    before = path.stat().st_mtime_ns
    path.touch()  # any write would move the mtime past this
    touched = path.stat().st_mtime_ns
    assert not lab._write_if_changed(path, "a\n")
    assert path.stat().st_mtime_ns == touched >= before
    assert lab._write_if_changed(path, "b\n")
    assert path.read_text() == "b\n"


# ------------------------------------------------------------------------- lab_name


def test_lab_name_default_without_group_vars(tmp_path: Path) -> None:
    assert lab.lab_name(tmp_path) == "course-ops-lab"


def test_lab_name_default_without_the_key(tmp_path: Path) -> None:
    write_all_yml(tmp_path, "course_code: cs236781\n")
    assert lab.lab_name(tmp_path) == "course-ops-lab"


def test_lab_name_default_for_an_empty_all_yml(tmp_path: Path) -> None:
    write_all_yml(tmp_path, "---\n# nothing yet\n")
    assert lab.lab_name(tmp_path) == "course-ops-lab"


def test_lab_name_read_from_all_yml(tmp_path: Path) -> None:
    write_all_yml(tmp_path, "---\ncourse_code: cs236781\nlab_name: scratch-lab\n")
    assert lab.lab_name(tmp_path) == "scratch-lab"


def test_lab_name_of_the_embedded_inventory() -> None:
    assert lab.lab_name(REPO_ROOT / "inventory" / "lab") == "course-ops-lab"


@pytest.mark.parametrize("bad", ['"my lab"', "-lab", "[a, b]", '"{{ x }}"'])
def test_lab_name_unusable_names_the_line(tmp_path: Path, bad: str) -> None:
    write_all_yml(tmp_path, f"---\ncourse_code: x\nlab_name: {bad}\n")
    with pytest.raises(InputError) as caught:
        lab.lab_name(tmp_path)
    assert caught.value.line == 3
    assert caught.value.code == ExitCode.BAD_INPUT


def test_lab_name_broken_yaml_is_an_input_error(tmp_path: Path) -> None:
    write_all_yml(tmp_path, "lab_name: [unclosed\n")
    with pytest.raises(InputError, match="all.yml"):
        lab.lab_name(tmp_path)


# ------------------------------------------------------------------------- image tag


@pytest.fixture
def image_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "lab-base"
    shutil.copytree(rootfs.IMAGE_DIR, copy)
    return copy


def test_image_tag_shape() -> None:
    assert re.fullmatch(r"course-ops/lab-base:bookworm-[0-9a-f]{12}", rootfs.base_image_tag())


def test_image_tag_same_content_same_tag(image_copy: Path) -> None:
    assert rootfs.base_image_tag(image_copy) == rootfs.base_image_tag()


@pytest.mark.parametrize(
    "changed",
    [
        "packages.txt",
        "masked-units.txt",
        "rootfs/etc/ssh/sshd_config.d/10-lab.conf",
        "rootfs/etc/systemd/system/ssh-hostkeys.service",
    ],
)
def test_image_tag_changes_with_a_file(image_copy: Path, changed: str) -> None:
    before = rootfs.base_image_tag(image_copy)
    with (image_copy / changed).open("a", encoding="utf-8") as handle:
        handle.write("\n# changed\n")
    assert rootfs.base_image_tag(image_copy) != before


def test_image_tag_changes_with_a_new_config_file(image_copy: Path) -> None:
    before = rootfs.base_image_tag(image_copy)
    (image_copy / "rootfs" / "etc" / "motd").write_text("welcome\n")
    assert rootfs.base_image_tag(image_copy) != before


def test_image_tag_changes_with_the_import_instructions(
    image_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = rootfs.base_image_tag(image_copy)
    monkeypatch.setattr(rootfs, "_IMPORT_CHANGES", (*rootfs._IMPORT_CHANGES, "ENV X=1"))
    assert rootfs.base_image_tag(image_copy) != before


def test_image_tag_changes_with_a_package(image_copy: Path) -> None:
    before = rootfs.base_image_tag(image_copy)
    with (image_copy / "packages.txt").open("a", encoding="utf-8") as handle:
        handle.write("curl\n")
    assert "curl" in rootfs._read_list(image_copy / "packages.txt")
    assert rootfs.base_image_tag(image_copy) != before


@pytest.mark.parametrize(
    "package",
    [
        "python3", "sudo", "systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2",
        "procps", "ca-certificates", "less", "passwd", "login", "tar", "gzip", "findutils",
        "coreutils",
    ],
)  # fmt: skip
def test_image_package_list_has(package: str) -> None:
    assert package in rootfs._read_list(rootfs.IMAGE_DIR / "packages.txt")


def test_configure_rootfs_applies_overlay_masks_and_drops_host_keys(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for directory in ("etc/ssh", "etc/systemd/system", "var/lib/dbus", "var/cache/apt/archives"):
        (tree / directory).mkdir(parents=True)
    (tree / "etc/ssh/ssh_host_ed25519_key").write_text("secret")
    (tree / "etc/machine-id").write_text("0123456789abcdef\n")
    (tree / "var/cache/apt/archives/x.deb").write_text("deb")
    rootfs._configure_rootfs(tree, rootfs.IMAGE_DIR)
    assert not list((tree / "etc/ssh").glob("ssh_host_*"))
    assert (tree / "etc/machine-id").read_text() == ""
    assert not (tree / "var/cache/apt/archives/x.deb").exists()
    conf = tree / "etc/ssh/sshd_config.d/10-lab.conf"
    assert "PermitRootLogin prohibit-password" in conf.read_text()
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    masked = tree / "etc/systemd/system/getty@tty1.service"
    assert masked.is_symlink() and str(masked.readlink()) == "/dev/null"


# ------------------------------------------------------------------------- mirror


def test_mirror_from_the_environment(tmp_path: Path) -> None:
    env = {"OPS_LAB_MIRROR": "http://mirror.example/debian"}
    assert rootfs.debian_mirror(env, [tmp_path / "none"]) == "http://mirror.example/debian"


def test_mirror_from_deb822_skips_security(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://ftp.il.debian.org/debian/\nSuites: bookworm\n"
    )
    assert rootfs.debian_mirror({}, [sources]) == "http://ftp.il.debian.org/debian"


def test_mirror_from_one_line_sources_with_options(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list"
    sources.write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
    )
    assert rootfs.debian_mirror({}, [tmp_path / "none", sources]) == "http://mirror.example/debian"


def test_mirror_default(tmp_path: Path) -> None:
    assert rootfs.debian_mirror({}, [tmp_path / "none"]) == "http://deb.debian.org/debian"


# ------------------------------------------------------------------------- containers


@pytest.fixture
def spec() -> dict:
    return lab.container_spec("demo-lab", lab.NODES[1], "img:tag")


def test_spec_never_privileged(spec: dict) -> None:
    assert not spec.get("privileged")
    assert sorted(spec["cap_add"]) == ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"]


def test_spec_allows_rootless_containers_inside(spec: dict) -> None:
    """systempaths=unconfined (as the CLI sends it: no masked or read-only /proc paths), the
    lab only; seccomp and AppArmor stay unconfined as before, nothing privileged."""
    assert spec[lab.HOST_CONFIG_EXTRA] == {"MaskedPaths": [], "ReadonlyPaths": []}
    assert "systempaths=unconfined" not in spec["security_opt"]  # the engine refuses it


def test_spec_passes_the_hosts_fuse_device_when_it_has_one() -> None:
    with_fuse = lab.container_spec("demo-lab", lab.NODES[1], "img:tag", ["/dev/fuse"])
    assert with_fuse["devices"] == ["/dev/fuse:/dev/fuse:rwm"]
    assert lab.container_spec("demo-lab", lab.NODES[1], "img:tag", [])["devices"] == []


def test_spec_passes_only_host_devices_that_exist(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setattr(lab, "HOST_DEVICES", (str(tmp_path / "fuse"), "/dev/no-such-dev"))
    (tmp_path / "fuse").touch()
    assert lab.container_spec("demo-lab", lab.NODES[1], "img:tag")["devices"] == [
        f"{tmp_path / 'fuse'}:{tmp_path / 'fuse'}:rwm"]


def test_gpu_nodes_keep_container_storage_on_a_volume_not_the_home() -> None:
    spec = lab.container_spec("demo-lab", lab.NODES[1], "img:tag")
    assert spec["volumes"]["demo-lab-gpu1-var-lib-course-containers"] == {
        "bind": "/var/lib/course-containers", "mode": "rw"}


def test_create_merges_the_host_config_the_sdk_cannot_say() -> None:
    """_create_container sends MaskedPaths/ReadonlyPaths in the API's HostConfig."""
    from unittest import mock

    client = mock.MagicMock()
    client.api._version = "1.41"
    client.api.create_container.return_value = {"Id": "abc"}
    client.volumes.get.side_effect = lab.docker.errors.NotFound("x")
    lab._create_container(client, "demo-lab", lab.NODES[1], "img:tag")
    kwargs = client.api.create_container.call_args.kwargs
    assert kwargs["host_config"]["MaskedPaths"] == []
    assert kwargs["host_config"]["ReadonlyPaths"] == []
    assert kwargs["host_config"]["NetworkMode"] == "demo-lab"
    assert "host_config_extra" not in kwargs
    client.containers.get.assert_called_with("abc")


def test_spec_boots_systemd(spec: dict) -> None:
    assert spec["command"] == ["/lib/systemd/systemd"]
    assert spec["cgroupns"] == "host"
    assert spec["volumes"]["/sys/fs/cgroup"] == {"bind": "/sys/fs/cgroup", "mode": "rw"}
    assert set(spec["tmpfs"]) == {"/run", "/run/lock"}
    assert spec["stop_signal"] == "SIGRTMIN+3"


def test_spec_names_labels_home_and_port(spec: dict) -> None:
    assert spec["name"] == "demo-lab-gpu1"
    assert spec["hostname"] == "gpu1"
    assert spec["labels"][lab.LABEL] == "demo-lab"
    assert spec["volumes"]["demo-lab-home"] == {"bind": "/home", "mode": "rw"}
    assert spec["ports"] == {"22/tcp": ("127.0.0.1", None)}


# ------------------------------------------------------------------------- key, files


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_key_made_once_with_private_modes(tmp_path: Path) -> None:
    key = lab.ensure_key(tmp_path, log=lambda _: None)
    assert key == tmp_path.resolve() / ".lab" / "id_ed25519"
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    public = (key.parent / "id_ed25519.pub").read_text()
    assert public.startswith("ssh-ed25519 ")
    assert lab.ensure_key(tmp_path, log=lambda _: None) == key
    assert (key.parent / "id_ed25519.pub").read_text() == public


def test_authorized_keys_replace_old_lab_keys_keep_others() -> None:
    current = "ssh-ed25519 AAAstaff alice@laptop\nssh-ed25519 AAAold course-ops-lab\n"
    new = lab.authorized_keys_with(current, "ssh-ed25519 AAAnew course-ops-lab")
    assert new == "ssh-ed25519 AAAstaff alice@laptop\nssh-ed25519 AAAnew course-ops-lab\n"


def test_authorized_keys_unchanged_when_the_key_is_there() -> None:
    current = "ssh-ed25519 AAAnew course-ops-lab\n"
    assert lab.authorized_keys_with(current, "ssh-ed25519 AAAnew course-ops-lab") is None
    assert lab.authorized_keys_with("", "k course-ops-lab") == "k course-ops-lab\n"


def test_local_files_removed_but_a_foreign_hosts_yml_kept(tmp_path: Path) -> None:
    (tmp_path / ".lab").mkdir()
    (tmp_path / ".lab" / "id_ed25519").write_text("k")
    (tmp_path / "hosts.yml").write_text("all:\n  hosts: {}\n")
    lab._remove_local_files(tmp_path, log=lambda _: None)
    assert not (tmp_path / ".lab").exists()
    assert (tmp_path / "hosts.yml").exists()
    (tmp_path / "hosts.yml").write_text(lab.render_hosts("x", tmp_path / "k", PORTS))
    lab._remove_local_files(tmp_path, log=lambda _: None)
    assert not (tmp_path / "hosts.yml").exists()


# ------------------------------------------------------------------------- no engine


@pytest.mark.parametrize("call", [lab.up, lab.down, lab.status])
def test_no_engine_is_an_engine_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    with pytest.raises(EngineError) as caught:
        call(tmp_path)
    assert "no Docker engine answers at unix:///nonexistent.sock" in str(caught.value)
    assert "apt-get install docker.io" in caught.value.hint
    assert caught.value.code == ExitCode.NO_ENGINE
    assert not (tmp_path / ".lab").exists()
    assert not (tmp_path / "hosts.yml").exists()


def test_socket_permission_is_not_reported_as_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**_: object) -> None:
        try:
            raise PermissionError(13, "Permission denied")
        except PermissionError as exc:
            raise docker.errors.DockerException("Error while fetching server API version") from exc

    monkeypatch.setattr(docker, "from_env", refuse)
    with pytest.raises(EngineError, match="refuses this user") as caught:
        engine.client()
    assert "docker group" in caught.value.hint
