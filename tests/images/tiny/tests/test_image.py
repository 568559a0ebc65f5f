"""The tiny test image's own tests (run inside it by `ops images test` / `update`)."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
from pathlib import Path

import pytest

SLICES = Path("/opt/course-ops/requirements")
IMAGE_JSON = json.loads(Path("/opt/course-ops/image.json").read_text())


def locked() -> dict[str, str]:
    out = {}
    for path in SLICES.glob("*.txt"):
        for m in re.finditer(r"^([A-Za-z0-9._-]+)==(\S+)", path.read_text(), re.M):
            out[m.group(1)] = m.group(2)
    return out


@pytest.mark.parametrize("name", ["courseops-demo", "courseops-extra", "pytest"])
def test_the_installed_version_is_the_locked_one(name: str) -> None:
    assert importlib.metadata.version(name) == locked()[name]


@pytest.mark.parametrize("module", IMAGE_JSON["imports"])
def test_the_modules_import(module: str) -> None:
    importlib.import_module(module)


def test_the_image_knows_its_tag() -> None:
    assert IMAGE_JSON["tag"] == os.environ["COURSE_IMAGE_TAG"]


def test_not_root() -> None:
    assert os.getuid() != 0
