"""The course image's Debian side: the base's packages locked at exact versions.

The base is made in two steps. debootstrap makes the *bootstrap* image from
``base/packages.txt`` (ops.lab's ``ensure_base_image``, tagged by the package list). The
*locked base* is that image with every package at the version ``base/packages.lock``
records, and its tag is the bootstrap's tag plus a hash of those versions:

    course-ops/course-base:bookworm-36d9e3ede037               the package list
    course-ops/course-base:bookworm-36d9e3ede037-5c1f0e9a2b47  ... at these versions

So a security update (a new version in packages.lock) makes a new base and, since the course
image's tag hashes the base's id, a new course image tag. Nothing outside the lock moves:
where the mirror has moved past a locked version, the build fails and says to re-lock.

What Debian would install now is read from the image's own apt, in a throwaway container
from the bootstrap (always removed) with the suite's main, updates and security archives:
``apt-get -s dist-upgrade``, whose ``Inst`` lines name each new version and its archive, so
security updates are told apart from regular ones. The parsing and planning are pure
functions, unit-tested on recorded apt output.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import requests.exceptions

from ops import Log, rootfs
from ops.errors import InputError, InputErrors, OpsError

_LOG = logging.getLogger(__name__)

LOCK_NAME = "packages.lock"
#: Where the throwaway containers keep apt's package lists between runs (a warm check).
APT_LISTS = Path.home() / ".cache" / "course-ops" / "apt-lists"
#: The label of every throwaway container made here (none outlives its function).
THROWAWAY_LABEL = "course-ops.throwaway"
_TIMEOUT = 900
_PKG_RE = re.compile(r"^([a-z0-9][a-z0-9+.-]+)=(\S+)$")
_INST_RE = re.compile(
    r"^Inst (?P<name>\S+) (?:\[(?P<old>[^\]]*)\] )?\((?P<new>\S+) (?P<origins>[^\[]*?)\s*"
    r"\[(?P<arch>[^\]]+)\]\)")
_REMV_RE = re.compile(r"^Remv (?P<name>\S+)(?: \[(?P<old>[^\]]*)\])?")
_MARK = "@@course-ops"

LOCK_HEADER = (
    "# The Debian packages of the base image at the versions it is built with: every package\n"
    "# debootstrap installs from packages.txt, brought to these versions from the suite's main,\n"
    "# updates and security archives. The base image's tag hashes these lines (so a security\n"
    "# update makes a new base and a new course image tag). Made by `ops images lock --debian`\n"
    "# and `ops images update`; do not edit.\n"
)


# --------------------------------------------------------------------------- the lock


@dataclass(frozen=True)
class DebianLock:
    path: Path
    bootstrap: str | None  # the bootstrap image (package list) the versions were resolved on
    packages: dict[str, str]  # name -> version

    def entries(self) -> str:
        return "".join(f"{n}={v}\n" for n, v in sorted(self.packages.items()))


def parse_lock(path: Path, text: str | None = None) -> DebianLock:
    """``name=version`` lines and a ``# bootstrap: TAG`` line; every problem with its line."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(path, None, "missing: the base's Debian packages are not locked",
                             hint="make it with `ops images lock --debian`") from None
        except OSError as exc:
            raise InputError(path, None, f"cannot read: {exc.strerror}") from exc
    bootstrap = None
    packages: dict[str, str] = {}
    problems: list[tuple[int | None, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("# bootstrap:"):
            bootstrap = line.split(":", 1)[1].strip() or None
            continue
        if not line or line.startswith("#"):
            continue
        m = _PKG_RE.match(line)
        if not m:
            problems.append((number, f"expected package=version, found {line[:60]!r}"))
        elif m.group(1) in packages:
            problems.append((number, f"{m.group(1)} is locked twice"))
        else:
            packages[m.group(1)] = m.group(2)
    if problems:
        raise InputErrors(path, [(ln, f"{msg}; re-make it with `ops images lock --debian`")
                                 for ln, msg in problems])
    if not packages:
        raise InputError(path, None, "no package locked",
                         hint="make it with `ops images lock --debian`")
    return DebianLock(path, bootstrap, packages)


def format_lock(bootstrap: str, packages: Mapping[str, str]) -> str:
    return (LOCK_HEADER + f"# bootstrap: {bootstrap}\n"
            + "".join(f"{n}={v}\n" for n, v in sorted(packages.items())))


def locked_tag(bootstrap: str, lock: DebianLock) -> str:
    """The locked base's tag: the bootstrap's (the package list) and a hash of the versions.

    Only the ``name=version`` lines count: comments and order do not change it."""
    digest = hashlib.sha256(lock.entries().encode()).hexdigest()[:12]
    return f"{bootstrap}-{digest}"


def check_bootstrap(lock: DebianLock, bootstrap: str) -> None:
    """The lock was resolved on this package list (packages.txt has not changed since)."""
    if lock.bootstrap != bootstrap:
        raise InputError(lock.path, None,
                         f"made for {lock.bootstrap or 'an unknown package list'}, but "
                         f"packages.txt now makes {bootstrap}",
                         hint="re-lock: `ops images lock --debian` (or `ops images update`)")


# --------------------------------------------------------------------------- apt's output


@dataclass(frozen=True)
class Change:
    """One line of ``apt-get -s``: a package installed at ``new`` (None: removed)."""

    name: str
    old: str | None
    new: str | None
    origins: tuple[str, ...] = ()

    @property
    def security(self) -> bool:
        return any(is_security(o) for o in self.origins)


def is_security(origin: str) -> bool:
    """``Debian-Security:12/oldstable-security`` (origin label : version / suite)."""
    label, _, rest = origin.partition(":")
    suite = rest.rpartition("/")[2]
    return "security" in label.lower() or suite.endswith("-security")


def parse_simulation(text: str) -> dict[str, Change]:
    """``Inst`` and ``Remv`` lines of ``apt-get -s dist-upgrade`` (or ``install``)."""
    out: dict[str, Change] = {}
    for line in text.splitlines():
        m = _INST_RE.match(line)
        if m:
            name = m.group("name").split(":", 1)[0]
            origins = tuple(o.strip() for o in m.group("origins").split(",") if o.strip())
            out[name] = Change(name, m.group("old"), m.group("new"), origins)
            continue
        m = _REMV_RE.match(line)
        if m:
            name = m.group("name").split(":", 1)[0]
            out[name] = Change(name, m.group("old"), None)
    return out


def parse_dpkg(text: str) -> dict[str, str]:
    """``${db:Status-Abbrev}${Package}=${Version}`` lines: the installed packages only."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        status, _, rest = line.partition(" ")
        if status.startswith("ii") and "=" in rest:
            name, _, version = rest.strip().partition("=")
            out[name.split(":", 1)[0]] = version
    return out


@dataclass(frozen=True)
class Resolution:
    """What the bootstrap has, and what Debian's archives would make of it now."""

    installed: dict[str, str]  # the bootstrap's packages
    changes: dict[str, Change]  # apt's simulated dist-upgrade of them

    @property
    def resolved(self) -> dict[str, str]:
        out = dict(self.installed)
        for name, change in self.changes.items():
            if change.new is None:
                out.pop(name, None)
            else:
                out[name] = change.new
        return out


@dataclass(frozen=True)
class Pending:
    """A package whose version in the lock is not the one Debian would install now."""

    name: str
    locked: str | None  # None: new (a new dependency)
    candidate: str | None  # None: Debian would remove it
    origin: str
    security: bool


def pending(lock: DebianLock | None, resolution: Resolution) -> list[Pending]:
    """The lock against the resolution, sorted: security updates, updates, new, removed."""
    locked = lock.packages if lock is not None else {}
    resolved = resolution.resolved
    out = []
    for name in sorted(set(locked) | set(resolved)):
        old, new = locked.get(name), resolved.get(name)
        if old == new:
            continue
        change = resolution.changes.get(name)
        origins = change.origins if change and change.new == new else ()
        out.append(Pending(name, old, new, ", ".join(origins) or
                           ("installed by debootstrap" if new else "removed"),
                           any(is_security(o) for o in origins)))
    return out


def relocked(lock: DebianLock | None, resolution: Resolution, *,
             security_only: bool) -> dict[str, str]:
    """The new lock's packages: what Debian would install now, or the old lock with only its
    security updates taken (a new lock takes everything)."""
    if lock is None or not security_only:
        return resolution.resolved
    out = dict(lock.packages)
    for p in pending(lock, resolution):
        if p.security and p.candidate is not None:
            out[p.name] = p.candidate
    return out


def apply_plan(installed: Mapping[str, str], wanted: Mapping[str, str]
               ) -> tuple[list[str], list[str]]:
    """``apt-get install`` arguments (``name=version``) and packages to purge that turn the
    bootstrap's ``installed`` into ``wanted``."""
    install = [f"{n}={v}" for n, v in sorted(wanted.items()) if installed.get(n) != v]
    purge = sorted(set(installed) - set(wanted))
    return install, purge


# --------------------------------------------------------------------------- the archives


@dataclass(frozen=True)
class Archives:
    mirror: str
    security: str
    suite: str = rootfs.SUITE

    def sources_list(self) -> str:
        return (f"deb {self.mirror} {self.suite} main\n"
                f"deb {self.mirror} {self.suite}-updates main\n"
                f"deb {self.security} {self.suite}-security main\n")


def archives(environ: Mapping[str, str] | None = None) -> Archives:
    """The mirror the base is made from (``OPS_LAB_MIRROR``, the host's, deb.debian.org) and
    its security archive: ``OPS_SECURITY_MIRROR``, else the mirror's ``debian-security``."""
    env = os.environ if environ is None else environ
    mirror = rootfs.debian_mirror(env).rstrip("/")
    security = env.get("OPS_SECURITY_MIRROR") or (
        mirror[: -len("/debian")] + "/debian-security" if mirror.endswith("/debian")
        else "http://deb.debian.org/debian-security")
    return Archives(mirror, security.rstrip("/"))


def _script(where: Archives, body: str) -> str:
    """A shell script run as root in a container of the bootstrap: the archives, then body."""
    return "\n".join([
        "set -eu",
        "export DEBIAN_FRONTEND=noninteractive LC_ALL=C",
        f"printf '%s' {shlex.quote(where.sources_list())} > /etc/apt/sources.list",
        "if ! apt-get update -qq -o Acquire::Retries=2 >/tmp/apt-update 2>&1; then",
        f"  echo '{_MARK} apt-get update failed'; tail -n 3 /tmp/apt-update; exit 100",
        "fi",
        body,
    ])


@dataclass
class _Run:
    code: int
    output: str
    container: Any = field(default=None, repr=False)


@contextlib.contextmanager
def _container(client: Any, image: str, script: str, *, keep: bool = False,
               **kwargs: Any) -> Iterator[_Run]:
    """Run ``script`` in a container of ``image`` and wait; the container is removed at the
    end whatever happens (``keep``: only after the caller's block, e.g. a commit)."""
    APT_LISTS.joinpath(rootfs.SUITE).mkdir(parents=True, exist_ok=True)
    container = client.containers.run(
        image, ["/bin/sh", "-c", script], detach=True,
        volumes={str(APT_LISTS / rootfs.SUITE): {"bind": "/var/lib/apt/lists", "mode": "rw"}},
        **kwargs)
    try:
        try:
            result = container.wait(timeout=_TIMEOUT)
        except requests.exceptions.RequestException:
            raise OpsError(f"apt in a container of {image} gave no answer in {_TIMEOUT} s",
                           hint="is the Debian mirror reachable from containers?") from None
        output = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        yield _Run(int(result.get("StatusCode", 1)), output, container if keep else None)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)


def _failed(run: _Run, image: str, where: Archives, what: str) -> OpsError:
    lines = [ln for ln in run.output.splitlines() if ln.strip()]
    if any(ln.startswith(f"{_MARK} apt-get update failed") for ln in lines):
        return OpsError(f"apt in {image} cannot read {where.mirror} or {where.security}: "
                        f"{lines[-1] if lines else 'no output'}",
                        hint="set OPS_LAB_MIRROR / OPS_SECURITY_MIRROR to reachable mirrors")
    return OpsError(f"{what} in {image} failed (exit {run.code}): "
                    f"{lines[-1] if lines else 'no output'}",
                    hint="run with -v to see apt's output")


def resolve(client: Any, image: str, *, where: Archives | None = None,
            log: Log = _LOG.info) -> Resolution:
    """The image's packages and apt's simulated dist-upgrade of them, from a throwaway
    container of ``image`` (removed afterwards); apt's lists are kept warm between runs."""
    where = where or archives()
    body = "\n".join([
        f"echo '{_MARK} installed'",
        "dpkg-query -W -f '${db:Status-Abbrev}${Package}=${Version}\\n'",
        f"echo '{_MARK} simulation'",
        "apt-get -s dist-upgrade",
    ])
    log(f"asking apt in a throwaway container of {image} what Debian has newer")
    with _container(client, image, _script(where, body), user="0", entrypoint=[],
                    labels={THROWAWAY_LABEL: "apt-resolve"}) as run:
        pass
    if run.code != 0:
        raise _failed(run, image, where, "apt-get -s dist-upgrade")
    for line in run.output.splitlines():
        _LOG.debug("apt: %s", line)
    _, _, rest = run.output.partition(f"{_MARK} installed\n")
    installed, _, simulation = rest.partition(f"{_MARK} simulation\n")
    return Resolution(parse_dpkg(installed), parse_simulation(simulation))


def installed(client: Any, image: str) -> dict[str, str]:
    """The packages ``image`` has (a throwaway container, no network)."""
    raw = client.containers.run(
        image, ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Package}=${Version}\\n"],
        entrypoint=[], user="0", remove=True, stdout=True, stderr=False,
        labels={THROWAWAY_LABEL: "dpkg"})
    return parse_dpkg(raw.decode("utf-8", "replace"))


def ensure_locked_base(client: Any, bootstrap: str, lock: DebianLock, *,
                       changes: list[str], where: Archives | None = None,
                       log: Log = _LOG.info) -> str:
    """The locked base's tag, made first unless it exists: the bootstrap itself when it
    already has exactly the locked versions, else the bootstrap with ``apt-get install
    name=version`` of each package that differs (from the suite's archives), committed and
    checked against the lock."""
    check_bootstrap(lock, bootstrap)
    tag = locked_tag(bootstrap, lock)
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(tag)
        return tag
    repository, _, version = tag.rpartition(":")
    have = installed(client, bootstrap)
    install, purge = apply_plan(have, lock.packages)
    if not install and not purge:
        client.images.get(bootstrap).tag(repository, version)
        log(f"{tag}: the bootstrap has exactly the locked versions")
        return tag
    where = where or archives()
    log(f"making {tag}: {len(install)} package(s) to their locked versions"
        + (f", {len(purge)} purged" if purge else ""))
    steps = []
    if install:
        steps.append("apt-get install -y -qq --no-install-recommends --allow-downgrades "
                     + " ".join(shlex.quote(a) for a in install))
    if purge:
        steps.append("apt-get purge -y -qq " + " ".join(shlex.quote(p) for p in purge))
    steps += [
        "apt-get clean",
        # debootstrap's own sources.list back: the image carries no mirror of this network
        f"printf 'deb %s %s main\\n' {shlex.quote(where.mirror)} {where.suite} "
        "> /etc/apt/sources.list",
        f"echo '{_MARK} installed'",
        "dpkg-query -W -f '${db:Status-Abbrev}${Package}=${Version}\\n'",
    ]
    with _container(client, bootstrap, _script(where, "\n".join(steps)), keep=True,
                    name=f"course-ops-base-{tag.rpartition('-')[2]}-{os.getpid()}") as run:
        if run.code != 0:
            gone = re.findall(r"Version '([^']+)' for '([^']+)' was not found", run.output)
            if gone:
                version, name = gone[0]
                raise OpsError(f"{lock.path}: {name}={version} is no longer in Debian's "
                               f"archives ({len(gone)} locked version(s) gone)",
                               hint="re-lock: `ops images update` (or `ops images lock "
                                    "--debian`), then build again")
            raise _failed(run, bootstrap, where, "installing the locked versions")
        got = parse_dpkg(run.output.partition(f"{_MARK} installed\n")[2])
        if got != lock.packages:
            extra, left = apply_plan(got, lock.packages)
            raise OpsError(f"{tag}: apt did not reach the locked versions "
                           f"({', '.join((extra + left)[:4])} differ)",
                           hint="re-lock: `ops images lock --debian`")
        run.container.commit(repository=repository, tag=version, changes=changes,
                             message=f"course-ops: {lock.path.name} applied")
    log(f"made {tag}")
    return tag
