"""The course registry: where images are pushed, what it holds, what the servers pulled.

The inventory says where the registry is (the first host of group ``registry``, port
``registry_port``). The GPU servers reach it by that name over TLS; this machine pushes
to it over the same TLS, or, in the lab, through the port published on 127.0.0.1.

What was pushed last, per variant, is recorded in ``<inventory>/state/images.json``: that
is the tag ``ops provision`` makes every GPU server pull.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import string
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from ops import Log, ssh
from ops import inventory as inv_mod
from ops.errors import InputError, OpsError, RemoteError

_LOG = logging.getLogger(__name__)
DEFAULT_PORT = 5000
#: What a manifest may be: Docker's or OCI's, a single image or an index of them.
MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
))


def _templated_path(value: str, inventory_dir: Path) -> Path:
    """The few inventory paths ops reads itself: ``{{ inventory_dir }}`` is all they use."""
    text = value.replace("{{ inventory_dir }}", str(inventory_dir.resolve()))
    if "{{" in text:
        raise InputError(inventory_dir / "group_vars" / "all.yml", None,
                         f"cannot resolve {value!r} outside Ansible",
                         hint="use an absolute path or one under {{ inventory_dir }}")
    path = Path(text)
    return path if path.is_absolute() else inventory_dir / path


def ensure_password(path: Path, *, create: bool = True) -> str | None:
    """The registry password, made on first use: 32 letters and digits, file 0600.

    The same file and format as Ansible's ``password`` lookup in role ``registry``, so
    whichever runs first makes it and both agree. ``create=False`` only reads (None when
    there is no file), so a read-only command never makes a password the registry lacks.
    """
    try:
        return path.read_text(encoding="utf-8").split()[0]
    except FileNotFoundError:
        if not create:
            return None
    except (OSError, IndexError) as exc:
        raise InputError(path, None, f"cannot read the registry password: {exc}",
                         hint="delete the file; the next `ops provision` makes a new one"
                         ) from None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


@dataclass(frozen=True)
class Registry:
    address: str  # how the GPU servers reach it: host:port
    push_address: str  # how this machine reaches it
    ca: Path | None  # the CA that signed its certificate (None: the system's)
    repository: str
    user: str = ""
    password_file: Path | None = None

    def auth(self) -> tuple[str, str] | None:
        """(user, password) from the password file `ops provision` made; None without."""
        if self.password_file is None:
            return None
        password = ensure_password(self.password_file, create=False)
        return (self.user, password) if password else None

    def require_auth(self) -> tuple[str, str]:
        auth = self.auth()
        if auth is None:
            raise OpsError(f"no registry password in {self.password_file}",
                           hint="`ops provision` makes it (with the registry)")
        return auth

    def url(self, path: str) -> str:
        return f"https://{self.push_address}/v2/{path}"

    def server_ref(self, tag: str) -> str:
        return f"{self.address}/{self.repository}:{tag}"

    def push_ref(self) -> str:
        return f"{self.push_address}/{self.repository}"

    def tags(self) -> list[str]:
        """The repository's tags in the registry ([] when it has none yet)."""
        try:
            r = requests.get(self.url(f"{self.repository}/tags/list"), timeout=10,
                             verify=str(self.ca) if self.ca else True, auth=self.auth())
        except requests.RequestException as exc:
            raise RemoteError(f"registry {self.push_address} does not answer: "
                              f"{type(exc).__name__}",
                              hint="is it provisioned? `ops provision`") from None
        if r.status_code == 401:
            raise RemoteError(f"registry {self.push_address} refused our password",
                              hint="is the password file the one `ops provision` used?")
        if r.status_code == 404:
            return []
        if r.status_code != 200:
            raise RemoteError(f"registry {self.push_address}: HTTP {r.status_code} "
                              "listing tags")
        return sorted(r.json().get("tags") or [])

    def digest(self, tag: str) -> str | None:
        """The manifest digest of ``tag`` in the registry, or None when it is not there."""
        try:
            r = requests.head(
                self.url(f"{self.repository}/manifests/{tag}"), timeout=10,
                verify=str(self.ca) if self.ca else True, auth=self.auth(),
                headers={"Accept": MANIFEST_TYPES},
            )
        except requests.RequestException:
            return None
        return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None

    def has(self, tag: str) -> bool:
        return self.digest(tag) is not None


def from_inventory(inv: inv_mod.Inventory, repository: str) -> Registry:
    hosts = inv.hosts_in("registry")
    if not hosts:
        raise InputError(inv.hosts_file, None, "no host in group registry",
                         hint="add the registry host to the inventory's registry group")
    host = hosts[0]
    port = int(host.vars.get("registry_port", DEFAULT_PORT))
    address = str(host.vars.get("registry_address", f"{host.name}:{port}"))
    published = (host.vars.get("lab_ports") or {}).get(port)
    push = str(host.vars.get("registry_push_address")
               or (f"127.0.0.1:{published}" if published else address))
    ca_value = host.vars.get("tls_ca_certificate")
    ca = _templated_path(str(ca_value), inv.dir) if ca_value else None
    password_file = _templated_path(
        str(host.vars.get("registry_password_file",
                          "{{ inventory_dir }}/.secrets/registry-password")), inv.dir)
    user = str(host.vars.get("registry_user", "course-ops"))
    return Registry(address, push, ca, repository, user, password_file)


# --------------------------------------------------------------------------- pushing


def push(client: Any, registry: Registry, local_ref: str, tag: str, log: Log) -> str:
    """Push ``local_ref`` as ``<registry>/<repository>:tag``; return the manifest digest."""
    user, password = registry.require_auth()
    target = registry.push_ref()
    client.images.get(local_ref).tag(target, tag)
    log(f"pushing {target}:{tag}")
    last: dict[str, Any] = {}
    layers: dict[str, str] = {}
    started = time.monotonic()
    try:
        for chunk in client.api.push(target, tag=tag, stream=True, decode=True,
                                     auth_config={"username": user, "password": password}):
            if "error" in chunk:
                raise RemoteError(f"push to {registry.push_address} failed: "
                                  f"{str(chunk['error']).strip()}",
                                  hint="is the registry up? `ops verify images`")
            if chunk.get("id") and chunk.get("status"):
                before = layers.get(chunk["id"])
                layers[chunk["id"]] = chunk["status"]
                if chunk["status"] != before and chunk["status"] in (
                        "Pushed", "Layer already exists", "Mounted from"):
                    _LOG.info("  %s: %s", chunk["id"], chunk["status"])
            last = chunk
    finally:
        client.api.remove_image(f"{target}:{tag}")  # the local alias only; the image stays
    digest = str((last.get("aux") or {}).get("Digest", "")) or registry.digest(tag) or ""
    done = sum(1 for s in layers.values() if s == "Pushed")
    log(f"pushed {target}:{tag} in {time.monotonic() - started:.0f} s "
        f"({done} layer(s) sent, {len(layers) - done} already there)")
    return digest


# --------------------------------------------------------------------------- state


def state_path(inventory_dir: Path) -> Path:
    return Path(inventory_dir) / "state" / "images.json"


def load_state(inventory_dir: Path) -> dict[str, dict[str, str]]:
    path = state_path(inventory_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(path, getattr(exc, "lineno", None), f"not valid JSON: {exc}",
                         hint="fix it, or delete it and push again") from None
    variants = data.get("variants") if isinstance(data, dict) else None
    if not isinstance(variants, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("tag"), str) for v in variants.values()):
        raise InputError(path, None, "expected {\"variants\": {NAME: {\"tag\": ...}}}",
                         hint="delete it and push again")
    return variants


def save_state(inventory_dir: Path, variants: dict[str, dict[str, str]],
               history: list[dict[str, str]] | None = None) -> None:
    """Write the state file; ``history`` None keeps the one it has."""
    if history is None:
        history = load_history(inventory_dir)
    path = state_path(inventory_dir)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".images-")
    with os.fdopen(fd, "w") as f:
        json.dump({"version": 1, "variants": variants, "history": history}, f, indent=1,
                  sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def load_history(inventory_dir: Path) -> list[dict[str, str]]:
    """Every tag pushed and not pruned, oldest first: ``{variant, tag, digest, pushed_at}``.

    A state file from before the history existed gives its current tags.
    """
    variants = load_state(inventory_dir)
    try:
        data = json.loads(state_path(inventory_dir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    history = data.get("history")
    if history is None:
        return [{"variant": v, "tag": s["tag"], "digest": s.get("digest", ""),
                 "pushed_at": s.get("pushed_at", "")} for v, s in sorted(variants.items())]
    if not isinstance(history, list) or not all(
            isinstance(h, dict) and isinstance(h.get("tag"), str)
            and isinstance(h.get("variant"), str) for h in history):
        raise InputError(state_path(inventory_dir), None,
                         'expected "history": [{"variant": ..., "tag": ...}, ...]',
                         hint="fix it, or delete it and push again")
    return history


def record_push(history: list[dict[str, str]], variant: str, tag: str, digest: str,
                pushed_at: str) -> list[dict[str, str]]:
    """``history`` with this push last (a tag pushed again moves to the end)."""
    kept = [h for h in history if not (h["variant"] == variant and h["tag"] == tag)]
    return [*kept, {"variant": variant, "tag": tag, "digest": digest, "pushed_at": pushed_at}]


def default_image(variants: dict[str, dict[str, str]], cuda_variants: set[str],
                  gpus: bool) -> dict[str, str] | None:
    """The tag jobs run by default: the one pushed last, of a CUDA variant where the GPU
    servers have GPUs (of a CPU one where they have none), else of any variant."""
    def newest(names: list[str]) -> dict[str, str] | None:
        pushed = [(variants[v].get("pushed_at", ""), v) for v in names if variants[v].get("digest")]
        if not pushed:
            return None
        _, v = max(pushed)
        return {"variant": v, "tag": variants[v]["tag"], "digest": variants[v]["digest"]}

    suited = [v for v in sorted(variants) if (v in cuda_variants) == gpus]
    return newest(suited) or newest(sorted(variants))


def store_images(inv: inv_mod.Inventory) -> tuple[list[dict[str, str]], dict[str, str]]:
    """What every GPU server's shared store holds (each tag pushed and not pruned, as
    ``{variant, tag, digest}``) and the default tag jobs run (``{}`` before any push)."""
    from ops.images import spec as spec_mod

    state = load_state(inv.dir)
    current = [{"variant": v, "tag": s["tag"], "digest": s["digest"]}
               for v, s in sorted(state.items()) if s.get("digest")]
    kept = [{"variant": h["variant"], "tag": h["tag"], "digest": h["digest"]}
            for h in load_history(inv.dir) if h.get("digest")]
    kept += [t for t in current if t not in kept]
    try:
        cuda = {name for name, v in spec_mod.load().variants.items() if v.cuda}
    except OpsError:
        cuda = {"cuda"}
    gpus = int(inv.vars.get("gpu_count") or 0) > 0
    return kept, default_image(state, cuda, gpus) or {}


# --------------------------------------------------------------------------- servers


def server_images(inv: inv_mod.Inventory, repository_ref: str) -> dict[str, list[str]]:
    """GPU server -> the tags of ``repository_ref`` its Docker engine holds (one ssh each,
    with the inventory's SSH settings, as Ansible connects)."""
    out: dict[str, list[str]] = {}
    for host in inv.hosts_in("gpu_servers"):
        said = ssh.run(host.reach, "docker image ls --format '{{.Repository}}:{{.Tag}}' \"$1\"",
                       repository_ref, timeout=60, what="listing its images",
                       hint="is the host up and Docker installed? `ops provision`")
        out[host.name] = sorted(line.rsplit(":", 1)[1] for line in said.splitlines()
                                if ":" in line)
    return out
