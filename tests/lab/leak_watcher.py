"""Run as a student on a lab node while another student is offboarded: report every file
this student could read that held archive bytes (a gzip stream or a sha256 manifest).

Watches the world-writable and shared places (inotify, plus a fast rescan for what inotify
misses) until ``STOP`` exists or ``--timeout`` passes, then prints one JSON object:
``{"watched": [...], "readable": [{"path": ..., "head": ...}], "events": N}``.
Plain Python 3 (Debian's), no third-party module: copied into the node by the test.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import select
import struct
import sys
import time

STOP = "/tmp/.course-ops-leak-watcher-stop"
DIRS = ["/tmp", "/var/tmp", "/dev/shm", "/run/user", "/var/lib/course-ops",
        "/var/lib/course-ops/offboard", *sys.argv[2:]]
MASK = 0x100 | 0x8 | 0x2 | 0x80 | 0x4  # CREATE, CLOSE_WRITE, MODIFY, MOVED_TO, ATTRIB
MANIFEST = re.compile(rb"^[0-9a-f]{64}  ")


def archive_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(80)
    except OSError:
        return None
    return head if head[:2] == b"\x1f\x8b" or MANIFEST.match(head) else None


def main() -> None:
    timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 300
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    watched = {}
    for d in DIRS:
        wd = libc.inotify_add_watch(fd, d.encode(), MASK)
        if wd >= 0:
            watched[wd] = d
    found: dict[str, str] = {}
    events = 0
    deadline = time.monotonic() + timeout

    def look(path: str) -> None:
        if path not in found and os.path.isfile(path) and not path.startswith(STOP):
            head = archive_bytes(path)
            if head is not None:
                found[path] = head[:16].hex()

    while time.monotonic() < deadline and not os.path.exists(STOP):
        ready, _, _ = select.select([fd], [], [], 0.01)
        if ready:
            data = os.read(fd, 1 << 16)
            i = 0
            while i < len(data):
                wd, _mask, _cookie, size = struct.unpack_from("iIII", data, i)
                name = data[i + 16:i + 16 + size].rstrip(b"\0").decode(errors="replace")
                i += 16 + size
                events += 1
                if wd in watched and name:
                    look(os.path.join(watched[wd], name))
        for d in watched.values():  # a rescan catches what came and went between events
            try:
                for entry in os.scandir(d):
                    look(entry.path)
            except OSError:
                pass
    print(json.dumps({"watched": sorted(watched.values()), "events": events,
                      "readable": [{"path": p, "head": h} for p, h in sorted(found.items())]}))


if __name__ == "__main__":
    main()
