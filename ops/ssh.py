"""The one host model: how to reach each inventory host over SSH, for every tool.

It owns turning a host's Ansible connection variables (``ansible_host``/``_port``/``_user``,
the private key, ``ansible_ssh_common_args`` and ``ansible_ssh_extra_args``: ProxyJump,
ProxyCommand, the host-key policy...) into an :class:`Access`, and rendering one
``ssh_config`` from them that every tool which speaks SSH is handed: ``ssh``/``rsync``
(the site deploy, the registry, the hub and usage readers), pyinfra (the accounts sync;
its client follows a jump host only from an ssh_config file, never from Ansible's argument
strings), testinfra (``ops verify``) and ansible-playbook itself. Every tool then reaches a
host by its inventory name, with the same address, key, jump host and host-key policy. It
builds argvs; the one command it runs itself is :func:`run` (a short script's output).

A ProxyJump may name another inventory host (``-o ProxyJump=login``): its own block (its
address, port, user and key) is written too, so the hop is reached as that host is. Host
keys are always checked: ``StrictHostKeyChecking`` is ``yes`` unless the inventory says
``accept-new``; an inventory that turns checking off is refused.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops import run as run_mod
from ops.errors import RemoteError

#: ssh's one-letter flags that ops understands in the inventory's ssh arguments, as the
#: ssh_config keyword and value they stand for (the value None: the flag takes one).
_FLAGS: dict[str, tuple[str, str | None]] = {
    "-J": ("ProxyJump", None),
    "-i": ("IdentityFile", None),
    "-p": ("Port", None),
    "-l": ("User", None),
    "-F": ("Include", None),
    "-C": ("Compression", "yes"),
    "-4": ("AddressFamily", "inet"),
    "-6": ("AddressFamily", "inet6"),
    "-A": ("ForwardAgent", "yes"),
    "-a": ("ForwardAgent", "no"),
    "-q": ("LogLevel", "QUIET"),
    "-x": ("ForwardX11", "no"),
    "-T": ("RequestTTY", "no"),
}
#: what a host block may not say: ops writes these itself, or they would defeat the model
_REFUSED = {"hostname", "controlmaster", "controlpath", "controlpersist"}
#: the host-key policies ops accepts (``ask`` is ``yes`` for a tool that cannot ask)
_STRICT = {"yes": "yes", "ask": "yes", "accept-new": "accept-new"}
#: ``ssh`` options every run of ops' own ssh commands gets (never a prompt; a dead host
#: fails in seconds, not minutes)
BATCH = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=15")


@dataclass(frozen=True)
class Access:
    """How to reach one host: what Ansible would use, as ssh_config keywords."""

    alias: str  # the inventory name: what every tool connects to
    hostname: str
    port: int
    user: str
    identity: str | None = None
    #: the other ssh_config keywords, in the inventory's order (first one wins, as in ssh)
    options: tuple[tuple[str, str], ...] = ()
    #: the inventory hosts its ProxyJump goes through (their blocks are written too)
    hops: tuple[Access, ...] = ()

    @property
    def become(self) -> bool:
        """Whether commands there need sudo (a user other than root)."""
        return self.user != "root"

    def option(self, keyword: str) -> str | None:
        return next((v for k, v in self.options if k.lower() == keyword.lower()), None)


def parse_args(text: str, where: str) -> list[tuple[str, str]]:
    """``ansible_ssh_common_args``-style text as ``(keyword, value)`` pairs.

    ``where`` names the file, line and variable for the one-line error an argument ops
    cannot carry into an ssh_config gets."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"{where}: cannot be split as a shell would: {exc}") from None
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word.startswith("-o"):
            option = word[2:]
            if not option:
                if i == len(words):
                    raise ValueError(f"{where}: -o without an option")
                option, i = words[i], i + 1
            key, sep, value = option.partition("=")
            if not sep:
                key, _, value = option.strip().partition(" ")
            key, value = key.strip(), value.strip()
            if not key or not value:
                raise ValueError(f"{where}: -o {option!r} is not Keyword=value")
            out.append((key, value))
            continue
        flag = word[:2]
        if flag not in _FLAGS:
            raise ValueError(f"{where}: ssh flag {word!r} is not one ops can carry to every "
                             "tool; write it as -o Keyword=value")
        keyword, fixed = _FLAGS[flag]
        if fixed is not None:
            if len(word) > 2:  # clustered flags such as -4C
                raise ValueError(f"{where}: write the flags of {word!r} one by one")
            out.append((keyword, fixed))
            continue
        value = word[2:]
        if not value:
            if i == len(words):
                raise ValueError(f"{where}: {flag} without its value")
            value, i = words[i], i + 1
        out.append((keyword, value))
    return out


def access(name: str, hostvars: Mapping[str, Any], where: str) -> Access:
    """One host's :class:`Access` from its merged variables (hops not resolved yet)."""
    options: list[tuple[str, str, str]] = []  # keyword, value, where it was said
    for var in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        if hostvars.get(var):
            options += [(k, v, f"{where}: {var}")
                        for k, v in parse_args(str(hostvars[var]), f"{where}: {var}")]
    fields: dict[str, Any] = {
        "hostname": str(hostvars.get("ansible_host", name)),
        "port": int(hostvars.get("ansible_port", 22)),
        "user": str(hostvars.get("ansible_user", "root")),
    }
    key = hostvars.get("ansible_ssh_private_key_file") or hostvars.get(
        "ansible_private_key_file")
    fields["identity"] = os.path.expanduser(str(key)) if key else None
    kept: list[tuple[str, str]] = []
    for keyword, value, said in options:
        low = keyword.lower()
        if low in _REFUSED:
            raise ValueError(f"{said}: {keyword} is set by ops itself (from ansible_host "
                             "and the run's own connection sharing); remove it")
        if low == "stricthostkeychecking":
            if value.lower() not in _STRICT:
                raise ValueError(
                    f"{said}: StrictHostKeyChecking={value} turns host-key checking off; "
                    "ops checks every host's key: record the keys in a known_hosts file "
                    "(UserKnownHostsFile) or use accept-new")
            value = _STRICT[value.lower()]
        # -p/-l/-i in the arguments win over ansible_port/_user/_key, as on ssh's command
        # line; anything else is carried as it is
        if low == "port":
            if not value.isdigit():
                raise ValueError(f"{said}: Port {value!r} is not a port number")
            fields["port"] = int(value)
        elif low == "user":
            fields["user"] = value
        elif low == "identityfile":
            fields["identity"] = os.path.expanduser(value)
        else:
            kept.append((keyword, value))
    return Access(name, options=tuple(kept), **fields)


def _hop_names(value: str, by_address: Mapping[tuple[str, int], str],
               names: Iterable[str]) -> list[str | None]:
    """Each hop of a ProxyJump value: the inventory host it is (by name, or by address
    and port), else None."""
    known = set(names)
    out: list[str | None] = []
    for hop in value.split(","):
        hop = hop.strip().removeprefix("ssh://")
        _user, _, rest = hop.rpartition("@")
        host, _, port = rest.partition(":")
        if host in known and not port:
            out.append(host)
        else:
            out.append(by_address.get((host, int(port) if port.isdigit() else 22)))
    return out


def resolve(accesses: Mapping[str, Access]) -> dict[str, Access]:
    """Every :class:`Access` with its ProxyJump hops that are inventory hosts attached
    (and the jump value rewritten to their names, so their blocks apply to the hop)."""
    by_address = {(a.hostname, a.port): n for n, a in accesses.items()}
    done: dict[str, Access] = {}

    def one(name: str, trail: tuple[str, ...]) -> Access:
        if name in done:
            return done[name]
        a = accesses[name]
        jump = a.option("ProxyJump")
        if not jump or jump.lower() == "none":
            done[name] = a
            return a
        found = _hop_names(jump, by_address, accesses)
        if name in found or any(h in trail for h in found if h):
            raise ValueError(f"host {name!r}: its ProxyJump goes through itself")
        hops = tuple(one(h, (*trail, name)) for h in found if h)
        value = ",".join(h if h else part.strip()
                         for h, part in zip(found, jump.split(","), strict=True))
        options = tuple((k, value if k.lower() == "proxyjump" else v) for k, v in a.options)
        done[name] = Access(a.alias, a.hostname, a.port, a.user, a.identity, options, hops)
        return done[name]

    return {n: one(n, ()) for n in accesses}


def _with_hops(accesses: Iterable[Access]) -> list[Access]:
    seen: dict[str, Access] = {}

    def add(a: Access) -> None:
        for hop in a.hops:
            add(hop)
        seen.setdefault(a.alias, a)

    for a in accesses:
        add(a)
    return sorted(seen.values(), key=lambda a: a.alias)


def config_text(accesses: Iterable[Access], control_dir: Path | None = None) -> str:
    """The ssh_config: one block per host (and per inventory host it jumps through), then
    the defaults every host gets; with ``control_dir`` one shared connection per host."""
    lines = ["# Written by course-ops from the inventory for this run; do not edit."]
    includes: list[str] = []
    for a in _with_hops(accesses):
        lines += [f"Host {a.alias}", f"  HostName {a.hostname}", f"  Port {a.port}",
                  f"  User {a.user}"]
        if a.identity:
            lines.append(f"  IdentityFile {_quote(a.identity)}")
        for keyword, value in a.options:
            if keyword.lower() == "include":
                includes.append(value)
            else:
                lines.append(f"  {keyword} {value}")
    lines += ["Host *", "  StrictHostKeyChecking yes", "  ServerAliveInterval 15"]
    if control_dir is not None:
        lines += ["  ControlMaster auto", f"  ControlPath {_quote(str(control_dir))}/cm-%C",
                  "  ControlPersist 60s"]
    lines += [f"Include {_quote(os.path.expanduser(p))}" for p in dict.fromkeys(includes)]
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    return f'"{value}"' if any(c.isspace() for c in value) else value


_DIR: list[Path] = []


def config_file(accesses: Iterable[Access]) -> Path:
    """The ssh_config of ``accesses`` as a file (0600, in a 0700 directory of this process,
    removed when it exits); the same text is written once."""
    text = config_text(accesses)
    if not _DIR:
        _DIR.append(Path(tempfile.mkdtemp(prefix="ops-ssh-")))
        atexit.register(shutil.rmtree, _DIR[0], True)
    path = _DIR[0] / f"config-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    return path


def command(a: Access) -> list[str]:
    """``ssh`` to ``a`` with the run's ssh_config, never prompting (no destination)."""
    return ["ssh", "-F", str(config_file([a])), *BATCH]


def argv(a: Access, script: str, *args: str) -> list[str]:
    """``ssh`` to ``a``, running ``sh -c SCRIPT sh ARGS...`` there (with ``sudo -n`` for a
    user other than root)."""
    remote = ["sh", "-c", script, "sh", *args]
    if a.become:
        remote = ["sudo", "-n", *remote]
    return [*command(a), a.alias, "--", shlex.join(remote)]


def run(a: Access, script: str, *args: str, timeout: int, what: str, hint: str = "") -> str:
    """What ``sh -c SCRIPT sh ARGS...`` prints on ``a``; no answer in ``timeout`` seconds or
    a failure is a RemoteError: "HOST: WHAT failed: (ssh's or the script's last line)"."""
    full = argv(a, script, *args)
    done = run_mod.capture(full, what=f"{a.alias}: {what}", timeout=timeout, error=RemoteError,
                           shown=[*full[:-1], "<script>", *args],
                           level=logging.DEBUG)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise RemoteError(f"{a.alias}: {what} failed: {last}", hint=hint)
    return done.stdout


def pyinfra_data(a: Access, config: Path) -> dict[str, Any]:
    """pyinfra's host data for ``a``: the alias looked up in the run's ssh_config (its
    client reads HostName, Port, IdentityFile, ProxyJump/ProxyCommand and the host-key
    policy from there); the user said here too, where pyinfra's sudo and ops' own
    operations read it (the config's User is the same)."""
    return {
        "ssh_hostname": a.alias,
        "ssh_user": a.user,
        "ssh_config_file": str(config),
        "ssh_connect_retries": 2,
        "ssh_connect_retry_min_delay": 0.5,
        "ssh_connect_retry_max_delay": 2,
    }


