"""Deterministic, ASCII, POSIX-valid names for students and pair groups.

A name once given is kept (the state file remembers it), so reordering the roster or adding a
row never renames anyone. New names are given in student_id (or pair key) order, so the
result does not depend on the roster's row order either.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping

from anyascii import anyascii

POSIX_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
BASE_LEN = 24  # leaves room for a numeric suffix

#: Names no student or pair may take: system accounts and groups on Debian/Ubuntu GPU
#: servers, and the ones the course's own services create.
RESERVED = frozenset(
    [
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "gnats",
        "nobody",
        "nogroup",
        "_apt",
        "systemd-network",
        "systemd-resolve",
        "systemd-timesync",
        "systemd-journal",
        "systemd-coredump",
        "messagebus",
        "sshd",
        "syslog",
        "uuidd",
        "tcpdump",
        "tss",
        "landscape",
        "pollinate",
        "fwupd-refresh",
        "usbmux",
        "dnsmasq",
        "avahi",
        "polkitd",
        "rtkit",
        "colord",
        "geoclue",
        "lxd",
        "ubuntu",
        "debian",
        "admin",
        "administrator",
        "adm",
        "sudo",
        "wheel",
        "docker",
        "staff",
        "users",
        "operator",
        "shadow",
        "utmp",
        "tty",
        "disk",
        "kmem",
        "dialout",
        "fax",
        "voice",
        "cdrom",
        "floppy",
        "tape",
        "audio",
        "dip",
        "video",
        "plugdev",
        "netdev",
        "lpadmin",
        "sambashare",
        "input",
        "render",
        "kvm",
        "sgx",
        "crontab",
        "ssh",
        "ssl-cert",
        "munge",
        "slurm",
        "mysql",
        "mariadb",
        "postgres",
        "nginx",
        "registry",
        "docker-registry",
        "nvidia-persistenced",
        "_chrony",
        "chrony",
        "ntp",
        "systemd-oom",
        "lightdm",
        "gdm",
        "jupyter",
        "guest",
        "test",
        "course",
    ]
)


def why_invalid(name: object) -> str | None:
    """Why ``name`` may not be a student's username or a pair's group (None: it may).

    The rules every name given by :func:`assign` meets; names read back from the state file
    are held to them too, since they become paths and arguments of root commands."""
    if not isinstance(name, str) or not POSIX_NAME.match(name):
        return f"{name!r} is not a valid POSIX name (a-z, 0-9, _ and -, at most 32)"
    if name in RESERVED:
        return f"{name!r} is a reserved system name"
    return None


def control_character(text: str) -> str | None:
    """The first control character in ``text`` as ``U+XXXX`` (None when there is none)."""
    for ch in text:
        if unicodedata.category(ch) == "Cc" or ch in "\u2028\u2029":
            return f"U+{ord(ch):04X}"
    return None


def slug(text: str) -> str:
    """ASCII lowercase letters and digits only (any script is transliterated first)."""
    return re.sub(r"[^a-z0-9]", "", anyascii(text).lower())


def base_username(first_name: str, last_name: str, student_id: str) -> str:
    """``Dana Cohen`` -> ``dcohen``; falls back to the student id when names give nothing."""
    first, last = slug(first_name), slug(last_name)
    base = (first[:1] + last) if last else first
    if not base:
        base = "s" + slug(student_id)
    if not base[0].isalpha():
        base = "u" + base
    if base.startswith("pair"):  # the pair groups' namespace
        base = "u" + base
    return base[:BASE_LEN]


def pair_group_base(key: str) -> str:
    """Pair key ``17`` -> ``pair017``; ``team a`` -> ``pair-teama``."""
    if key.isascii() and key.isdigit():
        return f"pair{int(key):03d}"
    s = slug(key) or "x"
    return f"pair-{s}"[:BASE_LEN]


def assign(
    bases: Mapping[str, str], previous: Mapping[str, str], taken: Iterable[str] = ()
) -> dict[str, str]:
    """Give each key a unique name.

    ``bases`` maps key -> wanted name, ``previous`` key -> name given earlier (kept as is);
    new keys are served in sorted key order; a taken name gets the first free numeric suffix.
    """
    used = set(RESERVED) | set(taken) | set(previous.values())
    out: dict[str, str] = {k: previous[k] for k in bases if k in previous}
    for key in sorted(k for k in bases if k not in previous):
        base = bases[key]
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}{n}"
        used.add(name)
        out[key] = name
    return out
