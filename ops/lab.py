"""The local lab: a replica of the course cluster on one machine, with Docker.

Three containers boot systemd with sshd: ``ctl`` (slurm_controller, web, registry) and
``gpu1``, ``gpu2`` (gpu_servers). They share a user-defined bridge network (each resolves
the others by node name) and a Docker volume mounted at /home on every node (the NFS
homes of the real cluster). Ansible, pyinfra and testinfra reach them over SSH on ports
published on 127.0.0.1, with a key pair the lab generates into ``<inventory>/.lab/``,
checking each node's host key against ``.lab/known_hosts`` (read from the container
itself); :func:`up` writes ``<inventory>/hosts.yml`` so every tool reads the same inventory.

It owns the lab (inventory, keys, TLS, containers up/down/status) and nothing else: the
base image the nodes boot comes from ops/rootfs.py (debootstrap, no registry), the
Docker engine is reached through ops/engine.py.

Everything the lab creates in Docker carries the label ``course-ops.lab=<lab name>``;
:func:`down` removes exactly that and checks nothing of it is left.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shlex
import shutil
import socket
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import yaml
from docker.models.containers import _create_container_args

from ops import Log, engine, rootfs, tls
from ops.errors import InputError, OpsError, RemoteError
from ops.run import TimedOut, capture, last_line, output, tool

_LOG = logging.getLogger(__name__)


DEFAULT_LAB_NAME = "course-ops-lab"

#: The label on every container, network and volume of a lab; its value is the lab name.
LABEL = "course-ops.lab"
NODE_LABEL = "course-ops.lab.node"

#: How long :func:`up` waits for every node's systemd and sshd, in seconds.
READY_TIMEOUT = 120.0
_POLL_INTERVAL = 0.5
_SSH_TIMEOUT = 20

HOSTS_HEADER = "# Written by `ops lab up`"
_KEY_COMMENT = "course-ops-lab"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,49}")


@dataclass(frozen=True)
class LabNode:
    name: str
    groups: tuple[str, ...]
    #: Service ports published on 127.0.0.1 besides SSH (recorded as ``lab_ports``).
    publish: tuple[int, ...] = ()
    #: Paths that get a Docker volume of their own. /var/lib/docker on a volume (the host's
    #: file system, not the container's overlay) lets the nested engine use overlay2
    #: instead of vfs, which copies every layer in full.
    volumes: tuple[str, ...] = ()


#: Rootless Podman's storage on the GPU servers (the shared image store and each job's
#: own): on a volume for the same reason, and never on the shared /home.
_GPU_VOLUMES = ("/var/lib/docker", "/var/lib/course-containers")

NODES: tuple[LabNode, ...] = (
    # 80/443: the website (nginx); 5000: the course image registry.
    LabNode("ctl", ("slurm_controller", "web", "registry"), publish=(80, 443, 5000)),
    LabNode("gpu1", ("gpu_servers",), volumes=_GPU_VOLUMES),
    LabNode("gpu2", ("gpu_servers",), volumes=_GPU_VOLUMES),
)

#: Host devices the nodes get when the host has them: fuse-overlayfs, the storage driver
#: of the students' rootless containers, needs /dev/fuse. (/dev/net/tun is not passed:
#: the students' containers use the host network, never slirp4netns.)
HOST_DEVICES = ("/dev/fuse",)
#: The key of :func:`container_spec` that is no SDK keyword but raw HostConfig fields.
HOST_CONFIG_EXTRA = "host_config_extra"


@dataclass
class NodeStatus:
    name: str
    container: str
    port: int | None
    state: str  # Docker's container state, or "missing"
    systemd: str  # `systemctl is-system-running`, or "-" when the container is not running
    ssh: bool  # 127.0.0.1:port answers with an SSH banner

    @property
    def healthy(self) -> bool:
        """Running, systemd fully up (not degraded) and sshd answering."""
        return self.state == "running" and self.systemd == "running" and self.ssh


# --------------------------------------------------------------------------- inventory


def lab_name(inventory_dir: Path) -> str:
    """The lab's name: ``lab_name`` in ``group_vars/all.yml``, else ``course-ops-lab``."""
    from ops.inventory import compose_yaml, node_value

    path = Path(inventory_dir) / "group_vars" / "all.yml"
    try:
        root = compose_yaml(path, problem="not valid YAML")
    except FileNotFoundError:
        return DEFAULT_LAB_NAME
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror}") from exc
    if root is None or getattr(root, "tag", "").endswith(":null"):
        return DEFAULT_LAB_NAME
    if not isinstance(root, yaml.MappingNode):
        raise InputError(path, None, "expected a mapping of variables")
    node = next((v for k, v in root.value if getattr(k, "value", None) == "lab_name"), None)
    value = node_value(node, path) if node is not None else None
    if value is None:
        return DEFAULT_LAB_NAME
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise InputError(
            path,
            node.start_mark.line + 1 if node is not None else None,
            f"lab_name {value!r} cannot name containers",
            hint="use 1-50 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return value


def key_path(inventory_dir: Path) -> Path:
    """The lab's private SSH key (its public half is beside it, with ``.pub``)."""
    return Path(inventory_dir).resolve() / ".lab" / "id_ed25519"


def known_hosts_path(key: Path) -> Path:
    """The lab's own known_hosts (beside its key): its nodes' host keys, read from the
    containers themselves by :func:`up`; every tool checks the nodes against it."""
    return Path(key).resolve().with_name("known_hosts")


def ssh_options(key: Path) -> str:
    """The lab's ssh arguments (``ansible_ssh_common_args``): host keys checked against the
    lab's known_hosts, only the lab's key offered."""
    known = shlex.quote(str(known_hosts_path(key)))
    return (f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={known} -o LogLevel=ERROR"
            " -o IdentitiesOnly=yes")


def hosts_path(inventory_dir: Path) -> Path:
    return Path(inventory_dir) / "hosts.yml"


def render_hosts(
    lab: str,
    key: Path,
    ports: Mapping[str, int],
    published: Mapping[str, Mapping[int, int]] | None = None,
) -> str:
    """The Ansible YAML inventory of the lab; each host's vars given in its first group.

    ``published`` maps a node to its service ports (container port -> 127.0.0.1 port),
    written as the host var ``lab_ports``.
    """
    lines = [
        f"{HOSTS_HEADER} for lab {lab}; regenerated on every run, do not edit.",
        "all:",
        "  vars:",
        "    ansible_user: root",
        f"    ansible_ssh_private_key_file: {_quote(str(Path(key).resolve()))}",
        f"    ansible_ssh_common_args: {_quote(ssh_options(key))}",
        "    ansible_python_interpreter: /usr/bin/python3",
        "  children:",
    ]
    described: set[str] = set()
    for group in _groups():
        lines += [f"    {group}:", "      hosts:"]
        for node in NODES:
            if group not in node.groups:
                continue
            if node.name in described:
                lines.append(f"        {node.name}: {{}}")
            else:
                described.add(node.name)
                port = int(ports[node.name])
                extra = (published or {}).get(node.name)
                lab_ports = (
                    ", lab_ports: {"
                    + ", ".join(f"{k}: {int(v)}" for k, v in sorted(extra.items()))
                    + "}"
                    if extra
                    else ""
                )
                lines.append(
                    f"        {node.name}: {{ansible_host: 127.0.0.1, ansible_port: {port}"
                    f"{lab_ports}}}"
                )
    return "\n".join(lines) + "\n"


def _groups() -> list[str]:
    """Every group of :data:`NODES`, in order of first appearance."""
    return list(dict.fromkeys(group for node in NODES for group in node.groups))


def _quote(value: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is a subset of it)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


# --------------------------------------------------------------------------- the key


def ensure_key(inventory_dir: Path, log: Log = _LOG.info) -> Path:
    """Generate the lab's ed25519 key pair once; return the private key's path."""
    key = key_path(inventory_dir)
    pub = _pub(key)
    key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key.parent.chmod(0o700)
    keygen = tool("ssh-keygen", "openssh-client")
    if not key.exists():
        log(f"generating the lab's SSH key ({key})")
        pub.unlink(missing_ok=True)
        output([keygen, "-q", "-t", "ed25519", "-N", "", "-C", _KEY_COMMENT, "-f", str(key)])
    elif not pub.exists():
        public = output([keygen, "-y", "-f", str(key)])
        pub.write_text(f"{' '.join(public.split()[:2])} {_KEY_COMMENT}\n", encoding="utf-8")
    key.chmod(0o600)
    return key


def tls_dir(inventory_dir: Path) -> Path:
    """Where the lab's CA and server certificate live (see :mod:`ops.tls`)."""
    return key_path(inventory_dir).parent / "tls"


def ensure_tls(inventory_dir: Path, lab: str, log: Log = _LOG.info) -> tls.TlsFiles:
    """The lab CA and the certificate of the node that serves the website and registry."""
    served = next(n for n in NODES if n.publish)
    names = [served.name, f"{lab}-{served.name}", "localhost", "127.0.0.1"]
    return tls.ensure(tls_dir(inventory_dir), names, label=f"course-ops lab {lab}", log=log)


def _pub(key: Path) -> Path:
    return key.with_name(key.name + ".pub")


# --------------------------------------------------------------------------- Docker


def _container_name(lab: str, node: LabNode) -> str:
    return f"{lab}-{node.name}"


def _volume_name(lab: str) -> str:
    return f"{lab}-home"


def _node_volume_name(lab: str, node: LabNode, path: str) -> str:
    return f"{lab}-{node.name}-{path.strip('/').replace('/', '-')}"


def _check_owned(obj: Any, kind: str, lab: str) -> None:
    labels = obj.attrs.get("Labels") or obj.attrs.get("Config", {}).get("Labels") or {}
    if labels.get(LABEL) != lab:
        raise OpsError(
            f"a Docker {kind} named {obj.name} exists but is not part of lab {lab}",
            hint="remove it, or set another `lab_name` in group_vars/all.yml",
        )


def container_spec(
    lab: str, node: LabNode, image: str, host_devices: Sequence[str] | None = None
) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for one node (all but networking).

    systemd boots without ``--privileged`` (refused on hosts that lack some capabilities):
    a few capabilities, no seccomp/AppArmor filter, the host's cgroup namespace and
    hierarchy, and tmpfs on /run.

    Students' rootless containers run inside the nodes: ``systempaths=unconfined`` (the
    lab only: it unmasks /proc, without which the inner container cannot mount its /proc)
    and the host's ``/dev/fuse`` where it has one (``host_devices``: default, those of
    :data:`HOST_DEVICES` that exist here).
    """
    if host_devices is None:
        host_devices = [d for d in HOST_DEVICES if Path(d).exists()]
    return {
        "image": image,
        "name": _container_name(lab, node),
        "hostname": node.name,
        "labels": {LABEL: lab, NODE_LABEL: node.name},
        "command": ["/lib/systemd/systemd"],
        "environment": {"container": "docker"},
        "stop_signal": "SIGRTMIN+3",
        "cap_add": ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"],
        "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
        "devices": [f"{d}:{d}:rwm" for d in host_devices],
        # `--security-opt systempaths=unconfined`: the docker CLI turns it into these two
        # (the engine refuses it in SecurityOpt); the SDK has no keyword for them, so
        # _create_container merges this into the API's HostConfig.
        HOST_CONFIG_EXTRA: {"MaskedPaths": [], "ReadonlyPaths": []},
        "cgroupns": "host",
        "volumes": {
            "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
            _volume_name(lab): {"bind": "/home", "mode": "rw"},
            **{
                _node_volume_name(lab, node, path): {"bind": path, "mode": "rw"}
                for path in node.volumes
            },
        },
        "tmpfs": {
            "/run": "rw,nosuid,nodev,exec,mode=755,size=64m",
            "/run/lock": "rw,nosuid,nodev,noexec,size=5m",
        },
        "ports": {
            f"{port}/tcp": ("127.0.0.1", None) for port in (22, *node.publish)
        },
        "detach": True,
    }


def _ensure_network(client: Any, lab: str, log: Log) -> None:
    with engine.errors(f"creating network {lab}"):
        network = engine.get(client.networks, lab)
        if network is None:
            log(f"creating network {lab}")
            client.networks.create(lab, driver="bridge", labels={LABEL: lab})
        else:
            _check_owned(network, "network", lab)


def _ensure_volume(client: Any, lab: str, log: Log) -> None:
    name = _volume_name(lab)
    with engine.errors(f"creating volume {name}"):
        volume = engine.get(client.volumes, name)
        if volume is None:
            log(f"creating volume {name} (the shared /home)")
            client.volumes.create(name, labels={LABEL: lab})
        else:
            _check_owned(volume, "volume", lab)


def _create_container(client: Any, lab: str, node: LabNode, image: str) -> Any:
    spec = container_spec(lab, node, image)
    with engine.errors(f"creating container {spec['name']}"):
        for path in node.volumes:  # labelled, so `lab down` removes them too
            name = _node_volume_name(lab, node, path)
            volume = engine.get(client.volumes, name)
            if volume is None:
                client.volumes.create(name, labels={LABEL: lab})
            else:
                _check_owned(volume, "volume", lab)
        endpoint = client.api.create_endpoint_config(aliases=[node.name])
        kwargs = dict(spec)
        extra = kwargs.pop(HOST_CONFIG_EXTRA, {})
        # what containers.create does, plus the HostConfig fields the SDK cannot say
        create = _create_container_args({
            **kwargs, "version": client.api._version, "network": lab,
            "networking_config": {lab: endpoint},
        })
        create["host_config"].update(extra)
        created = client.api.create_container(**create)
        return client.containers.get(created["Id"])


def _authorized_keys(container: Any) -> str:
    try:
        chunks, _ = container.get_archive("/root/.ssh/authorized_keys")
    except docker.errors.NotFound:
        return ""
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        member = tar.next()
        data = tar.extractfile(member) if member else None
        return data.read().decode("utf-8", "replace") if data else ""


def _install_key(container: Any, public_key: str) -> None:
    """Make sure root's authorized_keys on ``container`` holds ``public_key``."""
    with engine.errors(f"installing the lab's key in {container.name}"):
        text = authorized_keys_with(_authorized_keys(container), public_key)
        if text is None:
            return
        buffer, now = io.BytesIO(), time.time()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            directory = tarfile.TarInfo(".ssh")
            directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, 0o700, now
            tar.addfile(directory)
            data = text.encode("utf-8")
            entry = tarfile.TarInfo(".ssh/authorized_keys")
            entry.size, entry.mode, entry.mtime = len(data), 0o600, now
            tar.addfile(entry, io.BytesIO(data))
        container.put_archive("/root", buffer.getvalue())


def authorized_keys_with(current: str, public_key: str) -> str | None:
    """``current`` with ``public_key`` in place of older lab keys; None if already so.

    Other keys (a staff member's, one a role added) are kept.
    """
    lines = current.splitlines()
    if public_key in lines:
        return None
    kept = [line for line in lines if line.split()[-1:] != [_KEY_COMMENT]]
    return "\n".join([*kept, public_key]) + "\n"


def _port(container: Any, port: int = 22) -> int | None:
    """The 127.0.0.1 port that ``port`` of the container is published on."""
    bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(
        f"{port}/tcp"
    )
    for binding in bindings or []:
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def _systemd_state(container: Any) -> str:
    if container.status != "running":
        return "-"
    try:
        _, output = container.exec_run(["systemctl", "is-system-running"])
    except docker.errors.APIError as exc:
        _LOG.debug("systemctl in %s: %s", container.name, exc)
        return "unknown"
    state = last_line(output.decode("utf-8", "replace"))
    return state if re.fullmatch(r"[a-z-]+", state) else "unknown"


def _failed_units(container: Any) -> str:
    _, output = container.exec_run(
        ["systemctl", "list-units", "--failed", "--plain", "--no-legend", "--no-pager"]
    )
    units = [line.split()[0] for line in output.decode("utf-8", "replace").splitlines() if line]
    return ", ".join(units) or "none listed"


def ssh_banner(port: int | None, *, timeout: float = 2.0) -> bool:
    """Whether 127.0.0.1:``port`` answers with an SSH banner."""
    if port is None:
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def ssh_argv(key: Path, port: int, *command: str) -> list[str]:
    """``ssh`` as root into a lab node, non-interactively, its host key checked."""
    return [
        tool("ssh", "openssh-client"),
        "-i", str(key),
        "-p", str(port),
        *shlex.split(ssh_options(key)),
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=5",
        "root@127.0.0.1",
        *command,
    ]  # fmt: skip


def _ssh_error(key: Path, port: int) -> str | None:
    """None when ``ssh ... true`` works, else why not."""
    argv = ssh_argv(key, port, "true")  # no ssh client here: an error now, not "not ready"
    try:
        done = capture(argv, what="ssh", timeout=_SSH_TIMEOUT, error=TimedOut,
                       level=logging.DEBUG)
    except TimedOut as exc:
        return exc.message
    return None if done.returncode == 0 else last_line(done.stderr)


def _node_status(client: Any, lab: str, node: LabNode) -> NodeStatus:
    name = _container_name(lab, node)
    container = engine.get(client.containers, name)
    if container is None:
        return NodeStatus(node.name, name, None, "missing", "-", False)
    port = _port(container)
    running = container.status == "running"
    return NodeStatus(
        node.name,
        name,
        port,
        container.status,
        _systemd_state(container),
        running and ssh_banner(port),
    )


# --------------------------------------------------------------------------- up, down, status


def up(inventory_dir: Path, *, log: Log = _LOG.info) -> list[NodeStatus]:
    """Bring the lab up (idempotent); write hosts.yml; return each node's status."""
    inventory_dir = Path(inventory_dir).resolve()
    lab = lab_name(inventory_dir)
    client = engine.client()
    key = ensure_key(inventory_dir, log)
    public_key = _pub(key).read_text(encoding="utf-8").strip()
    with engine.errors(f"bringing up lab {lab}"):
        containers = {
            node.name: engine.get(client.containers, _container_name(lab, node)) for node in NODES
        }
        already = all(c is not None and c.status == "running" for c in containers.values())
        if already:
            log(f"lab {lab} is already up")
        _ensure_network(client, lab, log)
        _ensure_volume(client, lab, log)
        for node in NODES:
            _ensure_node(client, lab, node, containers[node.name], public_key, log)
        statuses = _wait_ready(client, lab, key, log, quiet=already)
    ports = {s.name: s.port for s in statuses if s.port is not None}
    published = _published(client, lab)
    ensure_tls(inventory_dir, lab, log)
    if _write_if_changed(hosts_path(inventory_dir), render_hosts(lab, key, ports, published)):
        log(f"wrote {hosts_path(inventory_dir)}")
    return statuses


def _published(client: Any, lab: str) -> dict[str, dict[int, int]]:
    """Each node's published service ports: container port -> 127.0.0.1 port."""
    published: dict[str, dict[int, int]] = {}
    with engine.errors(f"reading the published ports of lab {lab}"):
        for node in NODES:
            if not node.publish:
                continue
            container = client.containers.get(_container_name(lab, node))
            found = {p: _port(container, p) for p in node.publish}
            missing = [str(p) for p, host_port in found.items() if host_port is None]
            if missing:
                raise RemoteError(
                    f"{container.name} does not publish port(s) {', '.join(missing)}",
                    hint="it was made by an older course-ops: `ops lab down`, then `ops lab up`",
                )
            published[node.name] = {p: int(h) for p, h in found.items() if h is not None}
    return published


def _ensure_node(
    client: Any, lab: str, node: LabNode, container: Any | None, public_key: str, log: Log
) -> None:
    """Create (from the base image, built if need be) or start one node's container."""
    if container is None:
        image = rootfs.ensure_base_image(client, log=log)
        log(f"creating {node.name}")
        container = _create_container(client, lab, node, image)
    else:
        _check_owned(container, "container", lab)
        if container.attrs["Config"]["Image"] != rootfs.base_image_tag():
            log(f"{node.name} runs an older base image; `ops lab down`, then up, renews it")
    _install_key(container, public_key)
    if container.status == "paused":
        log(f"unpausing {node.name}")
        with engine.errors(f"unpausing {container.name}"):
            container.unpause()
    elif container.status != "running":
        log(f"starting {node.name}")
        with engine.errors(f"starting {container.name}"):
            container.start()


def _wait_ready(
    client: Any,
    lab: str,
    key: Path,
    log: Log,
    *,
    quiet: bool = False,
) -> list[NodeStatus]:
    """Wait until every node's systemd is up and ``ssh root@... true`` works."""
    timeout = READY_TIMEOUT
    deadline = time.monotonic() + timeout
    ready: dict[str, NodeStatus] = {}
    why: dict[str, str] = {}
    while True:
        for node in NODES:
            if node.name in ready:
                continue
            status = _node_status(client, lab, node)
            if status.state != "running":
                raise RemoteError(
                    f"{status.container} is {status.state} instead of booting",
                    hint=f"see `docker logs {status.container}`",
                )
            reason = _not_ready(client, lab, node, status, key)
            if reason is None:
                ready[node.name] = status
                _report_ready(client, status, _LOG.debug if quiet else log, log)
            else:
                why[node.name] = reason
        if len(ready) == len(NODES):
            return [ready[node.name] for node in NODES]
        if time.monotonic() > deadline:
            late = next(n.name for n in NODES if n.name not in ready)
            raise RemoteError(
                f"{late} was not ready after {timeout:.0f} s: {why[late]}",
                hint=f"see `docker exec {lab}-{late} journalctl -b --no-pager`",
            )
        time.sleep(_POLL_INTERVAL)


def _report_ready(client: Any, status: NodeStatus, progress: Log, log: Log) -> None:
    if status.systemd == "degraded":
        container = client.containers.get(status.container)
        log(f"{status.name} is up but degraded; failed units: {_failed_units(container)}")
    else:
        progress(f"{status.name} is up (ssh on 127.0.0.1:{status.port})")


def _not_ready(client: Any, lab: str, node: LabNode, status: NodeStatus,
               key: Path) -> str | None:
    if status.systemd not in ("running", "degraded"):
        return f"systemd is {status.systemd}"
    if status.port is None:
        return "port 22 is not published"
    if not status.ssh:
        return f"sshd does not answer on 127.0.0.1:{status.port}"
    if not record_host_keys(client, lab, node, status.port, known_hosts_path(key)):
        return "its sshd has no host key yet"
    error = _ssh_error(key, status.port)
    return f"ssh root@127.0.0.1 -p {status.port} failed: {error}" if error else None


def known_hosts_lines(node: str, container: str, port: int, keys: list[str]) -> list[str]:
    """A node's known_hosts lines: as the control machine reaches it (127.0.0.1:port) and
    by its names on the lab network (how a jump host through ctl reaches it)."""
    names = f"[127.0.0.1]:{port},{node},{container}"
    return [f"{names} {k}" for k in keys]


def record_host_keys(client: Any, lab: str, node: LabNode, port: int, path: Path) -> bool:
    """Read ``node``'s public host keys from the container itself (not over the network:
    nothing to trust on first use) into the lab's known_hosts, replacing what it had for
    that node; False while sshd has made none yet."""
    name = _container_name(lab, node)
    with engine.errors(f"reading the host keys of {name}"):
        code, out = client.containers.get(name).exec_run(
            ["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"])
    keys = [" ".join(line.split()[:2]) for line in out.decode("utf-8", "replace").splitlines()
            if line.startswith(("ssh-", "ecdsa-"))]
    if code != 0 or not keys:
        return False
    ours = f",{node.name},"
    kept = [line for line in (path.read_text(encoding="utf-8").splitlines()
                              if path.exists() else [])
            if ours not in "," + line.split(" ", 1)[0] + ","]
    _write_if_changed(path, "\n".join([*kept, *known_hosts_lines(node.name, name, port, keys)])
                      + "\n")
    return True


def status(inventory_dir: Path) -> list[NodeStatus]:
    """One :class:`NodeStatus` per node; missing containers are reported, not raised."""
    lab = lab_name(inventory_dir)
    client = engine.client()
    with engine.errors(f"reading the status of lab {lab}"):
        return [_node_status(client, lab, node) for node in NODES]


def down(inventory_dir: Path, *, remove_image: bool = False, log: Log = _LOG.info) -> None:
    """Remove the lab's containers, network, volume, key and hosts.yml (idempotent)."""
    inventory_dir = Path(inventory_dir).resolve()
    lab = lab_name(inventory_dir)
    client = engine.client()
    selector = {"label": f"{LABEL}={lab}"}
    removed = 0
    with engine.errors(f"removing lab {lab}"):
        containers = client.containers.list(all=True, filters=selector)
        for container in containers:
            log(f"removing {container.name}")
        removed += _at_once(lambda c: c.remove(force=True, v=True), containers)
        for network in client.networks.list(filters=selector):
            log(f"removing network {network.name}")
            network.remove()
            removed += 1
        volumes = client.volumes.list(filters=selector)
        for volume in volumes:
            log(f"removing volume {volume.name}"
                + (" (the shared /home)" if volume.name == _volume_name(lab) else ""))
        removed += _at_once(lambda v: v.remove(force=True), volumes)
        if remove_image:
            _remove_base_images(client, log)
        left = _leftovers(client, selector)
    if left:
        raise OpsError(
            f"lab {lab} is not fully removed: {', '.join(left)} remain",
            hint="remove them with `docker rm -f` / `docker network rm` / `docker volume rm`",
        )
    removed += _remove_local_files(inventory_dir, log)
    if not removed:
        log(f"lab {lab} is already down")


def _at_once(remove: Callable[[Any], object], things: list[Any]) -> int:
    """``remove`` each of ``things`` at once; how many. Most of a lab's removal is the
    engine deleting files (a GPU node holds the course image in its Docker's volume), and
    the nodes' deletions need not wait for one another."""
    if things:
        with ThreadPoolExecutor(len(things)) as pool:
            list(pool.map(remove, things))
    return len(things)


def _leftovers(client: Any, selector: dict[str, str]) -> list[str]:
    return [
        *(f"container {c.name}" for c in client.containers.list(all=True, filters=selector)),
        *(f"network {n.name}" for n in client.networks.list(filters=selector)),
        *(f"volume {v.name}" for v in client.volumes.list(filters=selector)),
    ]


def _remove_base_images(client: Any, log: Log) -> None:
    for image in client.images.list(name=rootfs.IMAGE_REPOSITORY):
        for tag in image.tags:
            try:
                client.images.remove(tag)
                log(f"removed image {tag}")
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                log(f"kept image {tag}: another lab's containers use it")


def _remove_local_files(inventory_dir: Path, log: Log) -> int:
    removed = 0
    lab_dir = key_path(inventory_dir).parent
    if lab_dir.exists():
        shutil.rmtree(lab_dir)
        log(f"removed {lab_dir}")
        removed += 1
    hosts = hosts_path(inventory_dir)
    if hosts.exists():
        if hosts.read_text(encoding="utf-8").startswith(HOSTS_HEADER):
            hosts.unlink()
            log(f"removed {hosts}")
            removed += 1
        else:
            log(f"kept {hosts}: `ops lab up` did not write it")
    return removed
