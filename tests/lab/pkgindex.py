"""A package index on 127.0.0.1 for the image update tests: pypiserver (from PyPI) serving a
directory the test fills with wheels, some made here (small pure-Python packages, the same
bytes every time), some copied from the course image's wheelhouse."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import requests

_DATE = (1980, 1, 1, 0, 0, 0)


def make_wheel(directory: Path, name: str, version: str) -> Path:
    """A pure-Python wheel of ``name`` whose module records its version; reproducible."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f'"""A test package of course-ops."""\n__version__ = "{version}"\n',
        f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                             "Summary: a test package of course-ops\n"),
        f"{info}/WHEEL": ("Wheel-Version: 1.0\nGenerator: course-ops-tests\n"
                          "Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for path, text in files.items():
            entry = zipfile.ZipInfo(path, _DATE)
            entry.external_attr = 0o644 << 16
            z.writestr(entry, text)
    return wheel


def copy_wheels(source: Path, names: list[str], into: Path) -> list[Path]:
    """The newest wheel of each project ``names`` lists, from a wheelhouse (py3 wheels)."""
    into.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        found = sorted(source.glob(f"{name.replace('-', '_')}-*-py3-none-any.whl"))
        if not found:
            raise FileNotFoundError(f"no wheel of {name} in {source}")
        out.append(Path(shutil.copy(found[-1], into)))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(directory: Path, *, timeout: float = 30) -> Iterator[str]:
    """pypiserver on 127.0.0.1 serving ``directory`` (no fallback to PyPI); its simple URL."""
    port = _free_port()
    log = (directory.parent / "pypiserver.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pypiserver", "run", "-p", str(port), "-i", "127.0.0.1",
         "-a", ".", "-P", ".", "--disable-fallback", str(directory)],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/simple/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pypiserver did not answer on {url}: see {log.name}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
