"""What an image is made of: image.yml, the lock files, the rendered Dockerfile, the tag.

Everything here is pure (no engine, no network), so it is unit-tested directly:
rendering, lock parsing, the split of a lock into layers, and the content-hash tag.

The tag is a hash of the build context *less the tag itself*: the context's image.json
records the tag (so a job can read which image it runs), and :func:`content_hash` hashes
image.json without its ``tag`` key, so the tag never depends on its own value.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml
from packaging.requirements import InvalidRequirement, Requirement

from ops import REPO_ROOT
from ops import inventory as inv_mod
from ops.errors import InputError, InputErrors

COURSE_DIR = REPO_ROOT / "images" / "course"
#: Bump when the way a build context is made changes in a way its files do not show.
RECIPE_VERSION = "1"

_NAME_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)\s*(\\)?\s*$")
_HASH_RE = re.compile(r"^\s*--hash=(sha256:[0-9a-f]{64})\s*(\\)?\s*$")
_VARIANT_RE = re.compile(r"[a-z][a-z0-9]{0,15}")
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_VALUE_RE = re.compile(r"[A-Za-z0-9_.,:/@+=-]*")


def normalize(name: str) -> str:
    """PEP 503: ``Scikit_Learn`` and ``scikit-learn`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --------------------------------------------------------------------------- image.yml


@dataclass(frozen=True)
class Layer:
    name: str
    match: tuple[str, ...]  # fnmatch patterns of normalized names; () = everything left


@dataclass(frozen=True)
class Variant:
    name: str
    cuda: bool
    pins: dict[str, str]  # image.yml's shared pins, then the variant's own (which win)
    omit: dict[str, str]  # normalized package -> why
    env: dict[str, str]
    requires: tuple[str, ...] = ()  # requirements only this variant has (numba-cuda[cu13])
    imports: tuple[str, ...] = ()  # modules only this variant has, for the smoke tests


@dataclass(frozen=True)
class ImageSpec:
    dir: Path
    repository: str
    python: str
    platform: str
    user: str
    uid: int
    gid: int
    port: int
    base_debootstrap: Path | None
    base_image: str | None
    imports: tuple[str, ...]
    layers: tuple[Layer, ...]
    variants: dict[str, Variant]
    pins: dict[str, str] = field(default_factory=dict)  # shared by every variant
    #: Projects published only as source: normalized name -> what builds their wheel.
    from_source: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The image runs Jupyter Lab (its smoke tests check it); image.yml's ``jupyter``.
    jupyter: bool = True

    @property
    def debian_lock_path(self) -> Path | None:
        """base/packages.lock: the base's Debian packages at exact versions (debootstrap)."""
        return self.base_debootstrap / "packages.lock" if self.base_debootstrap else None

    @property
    def file(self) -> Path:
        return self.dir / "image.yml"

    def lock_path(self, variant: str) -> Path:
        return self.dir / "lock" / f"{variant}.txt"

    @property
    def sources_path(self) -> Path:
        """The sdists of ``from_source`` and the build tools that make their wheels."""
        return self.dir / "lock" / "sources.txt"

    def source_builds(self) -> SourceBuilds | None:
        """lock/sources.txt, read, when image.yml has ``from_source`` projects."""
        if not self.from_source:
            return None
        return SourceBuilds(parse_lock(self.sources_path), frozenset(self.from_source))

    def variant(self, name: str) -> Variant:
        try:
            return self.variants[name]
        except KeyError:
            raise InputError(
                self.file, None, f"no variant {name!r}",
                hint=f"choose one of: {', '.join(self.variants)}",
            ) from None

    def imports_of(self, variant: Variant) -> list[str]:
        shared = [m for m in self.imports if normalize(m) not in variant.omit]
        return shared + [m for m in variant.imports if m not in shared]


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def _key(node: yaml.Node | None, *keys: str) -> yaml.Node | None:
    """The node of the last key (its line is where the user wrote ``key:``)."""
    if not keys:
        return None
    parent = _find(node, *keys[:-1])
    if not isinstance(parent, yaml.MappingNode):
        return None
    return next((k for k, _ in parent.value if k.value == keys[-1]), None)


def _find(node: yaml.Node | None, *keys: str) -> yaml.Node | None:
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if k.value == key), None)
    return node


def load(directory: Path = COURSE_DIR) -> ImageSpec:
    """Read ``image.yml``; every problem is reported with its line."""
    path = Path(directory) / "image.yml"
    try:
        root = inv_mod.compose_yaml(path, problem="not valid YAML")
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror}") from exc
    data = inv_mod.node_value(root, path) if root is not None else None
    if not isinstance(data, dict):
        raise InputError(path, 1, "expected a mapping (repository, python, variants, ...)")
    problems: list[tuple[int | None, str]] = []

    def want(keys: tuple[str, ...], kind: type | tuple[type, ...], what: str) -> Any:
        value: Any = data
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            node = _find(root, *keys) or _key(root, *keys[:-1])
            problems.append((_line(node), f"{'.'.join(keys)}: expected {what}"))
            return None
        return value

    repository = want(("repository",), str, "a repository name like course-ops/course")
    python = want(("python",), str, 'a quoted Python version like "3.11"')
    platform = want(("platform",), str, "a platform like x86_64-manylinux_2_28")
    user = want(("user", "name"), str, "a user name")
    uid = want(("user", "uid"), int, "a number")
    gid = want(("user", "gid"), int, "a number")
    port = want(("port",), int, "a port number")
    imports = want(("imports",), list, "a list of module names") or []
    jupyter = data.get("jupyter", True)
    if not isinstance(jupyter, bool):
        problems.append((_line(_find(root, "jupyter")), "jupyter: true or false"))
    shared_pins = data.get("pins") or {}
    if not isinstance(shared_pins, dict):
        problems.append((_line(_key(root, "pins")), "pins: a mapping of package: version"))
        shared_pins = {}
    from_source: dict[str, tuple[str, ...]] = {}
    raw_sources = data.get("from_source") or {}
    if not isinstance(raw_sources, dict) or not all(
            isinstance(v, list) and v and all(isinstance(x, str) for x in v)
            for v in raw_sources.values()):
        problems.append((_line(_key(root, "from_source")),
                         "from_source: a mapping of project: [its build requirements]"))
    else:
        for project, tools in raw_sources.items():
            bad = [t for t in tools if not _valid_requirement(t)]
            if bad:
                problems.append((_line(_find(root, "from_source", str(project))),
                                 f"from_source.{project}: {bad[0]!r} is not a requirement"))
                continue
            from_source[normalize(str(project))] = tuple(tools)
    base = want(("base",), dict, "a mapping with debootstrap: DIR or image: NAME") or {}
    deboot = base.get("debootstrap")
    image = base.get("image")
    if base and (deboot is None) == (image is None):
        problems.append((_line(_key(root, "base")),
                         "base: give exactly one of debootstrap, image"))
    if isinstance(user, str) and not _USER_RE.fullmatch(user):
        problems.append((_line(_find(root, "user", "name")),
                         f"user.name {user!r}: not a POSIX user name"))
    if isinstance(uid, int) and not 1 <= uid < 65534:
        problems.append((_line(_find(root, "user", "uid")), f"user.uid {uid}: not a user's UID"))

    layers: list[Layer] = []
    for i, item in enumerate(want(("layers",), list, "a list of layers") or []):
        node = _find(root, "layers")
        item_node = node.value[i] if isinstance(node, yaml.SequenceNode) else None
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            problems.append((_line(item_node), "layers: each needs a name"))
            continue
        match = item.get("match", [])
        if not isinstance(match, list) or not all(isinstance(m, str) for m in match):
            problems.append((_line(item_node), f"layer {item['name']}: match is a list of names"))
            continue
        layers.append(Layer(item["name"], tuple(normalize(m) for m in match)))
    if not layers:
        problems.append((_line(_key(root, "layers")), "layers: at least one layer"))
    elif layers[-1].match:
        problems.append((_line(_key(root, "layers")), "layers: the last layer takes the rest "
                         "and has no match list"))
    elif any(not layer.match for layer in layers[:-1]):
        problems.append((_line(_key(root, "layers")), "layers: only the last layer may "
                         "have no match list (it takes the rest)"))

    variants: dict[str, Variant] = {}
    for name, body in (want(("variants",), dict, "a mapping of variants") or {}).items():
        node = _key(root, "variants", str(name))
        if not isinstance(name, str) or not _VARIANT_RE.fullmatch(name):
            problems.append((_line(node), f"variant {name!r}: use 1-16 lowercase letters/digits"))
            continue
        if not isinstance(body, dict) or not isinstance(body.get("cuda"), bool):
            problems.append((_line(node), f"variant {name}: needs cuda: true or false"))
            continue
        pins, omit, env = (body.get(k) or {} for k in ("pins", "omit", "env"))
        if not all(isinstance(x, dict) for x in (pins, omit, env)):
            problems.append((_line(node), f"variant {name}: pins, omit and env are mappings"))
            continue
        requires, extra_imports = (body.get(k) or [] for k in ("requires", "imports"))
        if not all(isinstance(x, list) and all(isinstance(i, str) for i in x)
                   for x in (requires, extra_imports)):
            problems.append((_line(node), f"variant {name}: requires and imports are lists"))
            continue
        bad_req = [i for i, r in enumerate(requires) if not _valid_requirement(r)]
        if bad_req:
            seq = _find(root, "variants", name, "requires")
            item = seq.value[bad_req[0]] if isinstance(seq, yaml.SequenceNode) else seq
            problems.append((_line(item), f"variant {name}: requires "
                             f"{requires[bad_req[0]]!r}: not a requirement "
                             "(name, [extras], version range)"))
            continue
        bad_env = [f"{k}={v!r}" for k, v in env.items()
                   if not _ENV_KEY_RE.fullmatch(str(k)) or not _ENV_VALUE_RE.fullmatch(str(v))]
        if bad_env:
            problems.append((_line(_find(root, "variants", name, "env")),
                             f"variant {name}: env {bad_env[0]}: use NAME: value with no "
                             "spaces, quotes or newlines"))
            continue
        omitted = {normalize(k): str(v) for k, v in omit.items()}
        variants[name] = Variant(
            name,
            body["cuda"],
            {**{normalize(k): str(v) for k, v in shared_pins.items()
                if normalize(k) not in omitted},
             **{normalize(k): str(v) for k, v in pins.items()}},
            omitted,
            {str(k): str(v) for k, v in env.items()},
            tuple(requires),
            tuple(str(m) for m in extra_imports),
        )
    if problems:
        raise InputErrors(path, problems)
    directory = Path(directory)
    return ImageSpec(
        dir=directory,
        repository=repository,
        python=python,
        platform=platform,
        user=user,
        uid=uid,
        gid=gid,
        port=port,
        base_debootstrap=directory / deboot if deboot else None,
        base_image=image,
        imports=tuple(str(m) for m in imports),
        layers=tuple(layers),
        variants=variants,
        pins={normalize(k): str(v) for k, v in shared_pins.items()},
        from_source=from_source,
        jupyter=jupyter is not False,
    )


def _valid_requirement(text: str) -> bool:
    try:
        Requirement(text)
    except InvalidRequirement:
        return False
    return True


def requirement_name(text: str) -> str:
    """``numba-cuda[cu13]>=0.30`` -> ``numba-cuda``."""
    return normalize(Requirement(text).name)


# --------------------------------------------------------------------------- requirements


def read_requirements(path: Path) -> list[tuple[int, str]]:
    """``requirements.in``: (line, normalized project name) of each requirement."""
    out = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if not m:
            raise InputError(path, number, f"cannot read requirement {line!r}",
                             hint="one project name (with an optional version range) per line")
        out.append((number, normalize(m.group(1))))
    return out


def resolver_input(spec: ImageSpec, variant: Variant) -> str:
    """What the resolver gets for a variant: requirements.in, less omissions, plus pins."""
    source = spec.dir / "requirements.in"
    lines = []
    names = set()
    for _, name in read_requirements(source):
        names.add(name)
        if name in variant.omit:
            continue
        lines.append(f"{name}=={variant.pins[name]}" if name in variant.pins else name)
    for name, version in variant.pins.items():
        if name not in names:
            lines.append(f"{name}=={version}")
    for requirement in variant.requires:
        lines.append(requirement)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- lock files


@dataclass(frozen=True)
class Locked:
    name: str  # normalized
    version: str
    hashes: tuple[str, ...]
    line: int

    def requirement(self) -> str:
        hashes = "".join(f" \\\n    --hash={h}" for h in self.hashes)
        return f"{self.name}=={self.version}{hashes}\n"


@dataclass
class Lock:
    path: Path
    packages: dict[str, Locked] = field(default_factory=dict)

    def version(self, name: str) -> str | None:
        p = self.packages.get(normalize(name))
        return p.version if p else None


def parse_lock(path: Path, text: str | None = None) -> Lock:
    """A pip/uv lock (``name==version`` + ``--hash`` lines); exact pins with hashes only."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(path, None, f"cannot read: {exc.strerror}",
                             hint="make it with `ops images lock`") from exc
    lock = Lock(path)
    problems: list[tuple[int | None, str]] = []
    current: tuple[str, str, int] | None = None
    hashes: list[str] = []
    continued = False

    def close() -> None:
        nonlocal current, hashes
        if current is not None:
            name, version, line = current
            if not hashes:
                problems.append((line, f"{name}=={version} has no --hash"))
            elif name in lock.packages:
                problems.append((line, f"{name} is pinned twice"))
            else:
                lock.packages[name] = Locked(name, version, tuple(hashes), line)
        current, hashes = None, []

    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            if not continued:
                close()
            continue
        if continued:
            m = _HASH_RE.match(raw)
            if not m:
                problems.append((number, "expected --hash=sha256:<64 hex> after a '\\'"))
                continued = False
                continue
            hashes.append(m.group(1))
            continued = bool(m.group(2))
            continue
        close()
        m = _NAME_RE.match(stripped)
        if not m:
            problems.append((number, f"expected name==version, found {stripped[:60]!r}"))
            continue
        current = (normalize(m.group(1)), m.group(2), number)
        continued = bool(m.group(3))
    close()
    if problems:
        raise InputErrors(path, [(ln, f"{msg}; re-make it with `ops images lock`")
                                 for ln, msg in problems])
    if not lock.packages:
        raise InputError(path, None, "no pinned package", hint="make it with `ops images lock`")
    return lock


@dataclass(frozen=True)
class SourceBuilds:
    """lock/sources.txt: for each project PyPI has only as source, its sdist (by hash), and
    the build tools (wheels, by hash) that turn it into the wheel the variant locks pin."""

    lock: Lock
    projects: frozenset[str]

    def sdist(self, name: str) -> Locked | None:
        return self.lock.packages.get(normalize(name))

    def tools(self) -> list[Locked]:
        return [p for n, p in sorted(self.lock.packages.items()) if n not in self.projects]


def check_lock(spec: ImageSpec, variant: Variant, lock: Lock, cuda: str | None,
               sources: SourceBuilds | None = None) -> None:
    """The lock has every requirement and pin of the variant, and the wanted CUDA build;
    every project built from source has its sdist, at the locked version, in ``sources``
    (default: lock/sources.txt)."""
    for name, version in variant.pins.items():
        got = lock.version(name)
        if got != version:
            raise InputError(lock.path, lock.packages[name].line if got else None,
                             f"{name} is {got or 'missing'}, image.yml pins {version}",
                             hint=f"re-lock: `ops images lock --variant {variant.name}`")
    for line, name in read_requirements(spec.dir / "requirements.in"):
        if name not in variant.omit and name not in lock.packages:
            raise InputError(lock.path, None,
                             f"{name} (requirements.in:{line}) is not in the lock",
                             hint=f"re-lock: `ops images lock --variant {variant.name}`")
    for requirement in variant.requires:
        if requirement_name(requirement) not in lock.packages:
            raise InputError(lock.path, None,
                             f"{requirement_name(requirement)} (image.yml, variant "
                             f"{variant.name}'s requires) is not in the lock",
                             hint=f"re-lock: `ops images lock --variant {variant.name}`")
    for name in sorted(spec.from_source):
        locked = lock.packages.get(name)
        if locked is None:
            continue
        sources = sources or spec.source_builds()
        sdist = sources.sdist(name) if sources else None
        if sdist is None or sdist.version != locked.version:
            where = sources.lock.path if sources else spec.sources_path
            raise InputError(lock.path, locked.line,
                             f"{name}=={locked.version} is built from source, but {where} "
                             f"has {f'{name}=={sdist.version}' if sdist else 'no sdist of it'}",
                             hint=f"re-lock: `ops images lock --variant {variant.name}`")
    for name in variant.omit:
        if name in lock.packages:
            raise InputError(lock.path, lock.packages[name].line,
                             f"{name} is locked but variant {variant.name} omits it",
                             hint=f"re-lock: `ops images lock --variant {variant.name}`")
    found = lock_cuda(lock)
    if variant.cuda and not cuda:
        raise InputError("group_vars/all.yml", None, "course_image_cuda is not set",
                         hint='set it to the CUDA of the course image, e.g. "13.0"')
    if variant.cuda and found != cuda:
        raise InputError(
            lock.path, None,
            f"the locked CUDA wheels are CUDA {found or 'none'}, the inventory wants "
            f"course_image_cuda {cuda}",
            hint="pin a torch built for that CUDA in image.yml, then `ops images lock`",
        )
    if not variant.cuda and found:
        raise InputError(lock.path, None, f"variant {variant.name} is CPU-only but locks "
                         f"CUDA {found} wheels", hint="pin torch's CPU build in image.yml")


def lock_cuda(lock: Lock) -> str | None:
    """The CUDA major.minor of the locked CUDA runtime wheels, if any."""
    for name in ("cuda-toolkit", "nvidia-cuda-runtime", "nvidia-cuda-runtime-cu12"):
        version = lock.version(name)
        if version:
            return ".".join(version.split(".")[:2])
    return None


def split_layers(spec: ImageSpec, lock: Lock) -> list[tuple[Layer, list[Locked]]]:
    """Each package in the first layer whose patterns match it; the rest in the last."""
    slices: list[tuple[Layer, list[Locked]]] = [(layer, []) for layer in spec.layers]
    for package in sorted(lock.packages.values(), key=lambda p: p.name):
        for layer, members in slices:
            if not layer.match or any(fnmatch.fnmatchcase(package.name, m) for m in layer.match):
                members.append(package)
                break
    return [(layer, members) for layer, members in slices if members]


# --------------------------------------------------------------------------- the Dockerfile


IMAGE_JSON = "image.json"


@dataclass(frozen=True)
class Context:
    """A build context: file name -> bytes (image.json holding the tag), and its hash."""

    files: dict[str, bytes]
    content_hash: str  # hex sha256 of the files (less the tag), the recipe, the base id
    tag: str


def render(
    spec: ImageSpec, variant: Variant, lock: Lock, *, base: str, uid: int | None = None,
    ca_bundle: bytes | None = None,
) -> dict[str, bytes]:
    """The build context's files, image.json without its tag (see :func:`context`)."""
    uid = spec.uid if uid is None else uid
    layers = split_layers(spec, lock)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(spec.dir),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    layer_files = {
        f"requirements/{i}-{layer.name}.txt": "".join(p.requirement() for p in members)
        for i, (layer, members) in enumerate(layers, start=1)
    }
    image_json = {
        "variant": variant.name,
        "cuda": variant.cuda,
        "imports": spec.imports_of(variant),
        "uid": uid,
        "user": spec.user,
        "port": spec.port,
        "torch": lock.version("torch"),
        "cuda_version": lock_cuda(lock),
        "jupyterhub": lock.version("jupyterhub"),
    }
    dockerfile = env.get_template("Dockerfile.j2").render(
        base=base,
        user=spec.user,
        uid=uid,
        gid=spec.gid,
        port=spec.port,
        layer_files=list(layer_files),
        env=dict(sorted(variant.env.items())),
        ca_bundle=ca_bundle is not None,
    )
    files = {
        "Dockerfile": dockerfile.encode(),
        IMAGE_JSON: _json_bytes(image_json),
        **{name: text.encode() for name, text in layer_files.items()},
    }
    for test in sorted((spec.dir / "tests").glob("*.py")):
        files[f"tests/{test.name}"] = test.read_bytes()
    if ca_bundle is not None:
        files["ca-bundle.crt"] = ca_bundle
    return files


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _untagged(body: bytes) -> bytes:
    """image.json as hashed: without its ``tag`` (the hash's own output)."""
    data = json.loads(body)
    data.pop("tag", None)
    return _json_bytes(data)


def content_hash(files: dict[str, bytes], base_id: str) -> str:
    """sha256 of the recipe version, the base image id and every file, image.json less its
    ``tag``: whatever tag a context's image.json holds, its hash is the same."""
    digest = hashlib.sha256()
    for part in (RECIPE_VERSION, base_id):
        digest.update(part.encode() + b"\0")
    for name in sorted(files):
        body = _untagged(files[name]) if name == IMAGE_JSON else files[name]
        digest.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
    return digest.hexdigest()


def stamp(files: dict[str, bytes], tag: str) -> dict[str, bytes]:
    """The files with ``tag`` recorded in image.json (the hash does not change)."""
    data = json.loads(files[IMAGE_JSON])
    data["tag"] = tag
    return {**files, IMAGE_JSON: _json_bytes(data)}


def context(
    spec: ImageSpec, variant: Variant, lock: Lock, *, base: str, base_id: str,
    uid: int | None = None, ca_bundle: bytes | None = None,
) -> Context:
    """The files to build, their content hash, and the tag, which image.json records."""
    files = render(spec, variant, lock, base=base, uid=uid, ca_bundle=ca_bundle)
    digest = content_hash(files, base_id)
    tag = tag_name(spec, variant, lock, digest)
    return Context(stamp(files, tag), digest, tag)


def tag_name(spec: ImageSpec, variant: Variant, lock: Lock, digest: str) -> str:
    """A readable alias and the hash: ``torch2.13.0-cpu-py3.11-<hash12>`` (an image without
    torch: ``<variant>-py3.11-<hash12>``)."""
    build = f"cu{lock_cuda(lock)}" if variant.cuda else "cpu"
    torch = lock.version("torch")
    if torch is None:
        return f"{variant.name}-py{spec.python}-{digest[:12]}"
    return f"torch{torch.split('+')[0]}-{build}-py{spec.python}-{digest[:12]}"
