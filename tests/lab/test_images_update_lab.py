"""`ops images outdated` and `ops images update` end to end, on the engine alone (no lab):
a package index on 127.0.0.1 (pypiserver) serves the tiny test image's packages
(tests/images/tiny); a newer release of courseops-demo appears, `outdated` reports it,
`update` re-locks it, rebuilds only its slice's layer and those after it, passes the image's
tests and makes a new tag; a second `update` changes nothing.

The image is the course image's recipe at a few MB (its own debootstrap base, locked like
the course's), so the whole module costs about a minute once the base is cached."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from ops import REPO_ROOT
from ops.errors import ExitCode
from ops.images import build as build_mod
from ops.images import outdated as od
from ops.images import spec as spec_mod
from tests.lab import pkgindex

pytestmark = pytest.mark.lab
TINY = REPO_ROOT / "tests" / "images" / "tiny"
WHEELHOUSE = Path(os.environ.get("OPS_WHEELHOUSE")
                  or Path.home() / ".cache" / "course-ops" / "wheelhouse")
TOOLS = ["pytest", "pluggy", "iniconfig", "packaging", "pygments"]


def ops(env: dict[str, str], *args: str, check: bool = True,
        timeout: int = 900) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "ops", "images", *args], capture_output=True,
                       text=True, timeout=timeout, cwd=REPO_ROOT, env=env, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"ops images {' '.join(args)} exited {p.returncode}\n"
                             f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}")
    return p


def _tools(into: Path) -> None:
    """pytest and its requirements: from the course image's wheelhouse, else PyPI."""
    try:
        pkgindex.copy_wheels(WHEELHOUSE, TOOLS, into)
    except FileNotFoundError:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                        "--python-version", "3.11", "--dest", str(into), "pytest"], check=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A copy of the tiny image, its Debian and Python locks made now, served by an index
    holding courseops-demo 1.0 and courseops-extra 1.0; built once."""
    root = tmp_path_factory.mktemp("tiny")
    packages = root / "packages"
    pkgindex.make_wheel(packages, "courseops-demo", "1.0")
    pkgindex.make_wheel(packages, "courseops-extra", "1.0")
    _tools(packages)
    image = root / "image"
    shutil.copytree(TINY, image, ignore=shutil.ignore_patterns("build", "lock"))
    # a repository of this run's own: every tag in it is this run's (Docker's layer cache is
    # shared all the same), so nothing a run left behind makes a build "up to date"
    yml = image / "image.yml"
    yml.write_text(yml.read_text().replace("repository: course-ops/course-tiny",
                                           f"repository: course-ops/course-tiny-{os.getpid()}"))
    client = docker.from_env()
    spec = spec_mod.load(image)
    with pkgindex.serve(packages) as url:
        env = {**os.environ, "OPS_INDEX_URL": url}
        try:
            ops(env, "lock", "--debian", "--image", str(image))
            ops(env, "lock", "--image", str(image))
            ops(env, "build", "--image", str(image), "--wheelhouse", str(packages))
            p = build_mod.prepare(client, spec, spec.variant("test"), cuda=None,
                                  make_base=False, log=lambda _: None)
            yield {"image": image, "packages": packages, "env": env, "tag": p.tag,
                   "ref": p.ref, "spec": spec, "client": client}
        finally:
            for i in client.images.list(spec.repository):
                for t in i.tags:
                    with contextlib.suppress(docker.errors.APIError):
                        client.images.remove(t)


def _layers(client: docker.DockerClient, ref: str) -> list[str]:
    return list(client.images.get(ref).attrs["RootFS"]["Layers"])


def test_outdated_reports_the_newer_release(tiny: dict) -> None:
    pkgindex.make_wheel(tiny["packages"], "courseops-demo", "2.0")
    p = ops(tiny["env"], "outdated", "--image", str(tiny["image"]), "--format", "json",
            check=False)
    assert p.returncode == ExitCode.OUTDATED == 9, p.stderr
    doc = json.loads(p.stdout)
    import jsonschema

    jsonschema.validate(doc, json.loads(od.SCHEMA.read_text()))
    rows = {r["name"]: r for r in doc["python"][0]["packages"]}
    assert rows["courseops-demo"] == {
        "name": "courseops-demo", "layer": "demo", "locked": "1.0", "wanted": "2.0",
        "latest": "2.0", "pinned": None, "outdated": True}
    assert [n for n, r in rows.items() if r["outdated"]] == ["courseops-demo"]
    assert doc["outdated"] is True and doc["debian"]["status"] == "checked"
    table = ops(tiny["env"], "outdated", "--image", str(tiny["image"]), check=False)
    assert table.returncode == 9 and "courseops-demo" in table.stdout


def test_update_relocks_rebuilds_one_slice_and_passes_the_tests(tiny: dict) -> None:
    client, spec = tiny["client"], tiny["spec"]
    old_layers = _layers(client, tiny["ref"])
    p = ops(tiny["env"], "update", "--image", str(tiny["image"]), "--wheelhouse",
            str(tiny["packages"]))
    lock = spec_mod.parse_lock(spec.lock_path("test"))
    assert lock.version("courseops-demo") == "2.0"
    assert lock.version("courseops-extra") == "1.0"
    new = build_mod.prepare(client, spec, spec.variant("test"), cuda=None, make_base=False,
                            log=lambda _: None)
    assert new.tag != tiny["tag"]
    summary = p.stdout
    assert "| test | courseops-demo | 1.0 | 2.0 | update |" in summary
    assert f"`{tiny['tag']}` -> `{new.tag}`" in summary
    assert "tests: passed" in summary
    assert "rebuilt from `COPY requirements/2-demo.txt" in summary
    # every layer before courseops-demo's slice is the old image's; it and all after are new
    base_layers = len(_layers(client, new.base))
    kept = base_layers + 1 + 2  # the base, the venv, the tools slice (COPY + pip install)
    new_layers = _layers(client, new.ref)
    assert new_layers[:kept] == old_layers[:kept]
    assert all(a != b for a, b in zip(new_layers[kept:], old_layers[kept:], strict=True))
    version = client.containers.run(new.ref, ["python", "-c",
                                              "import courseops_demo as d; print(d.__version__)"],
                                    remove=True).decode().strip()
    assert version == "2.0"


def test_a_second_update_says_nothing_is_outdated_and_changes_nothing(tiny: dict) -> None:
    spec, client = tiny["spec"], tiny["client"]
    files = [spec.lock_path("test"), spec.debian_lock_path]
    before = [f.read_bytes() for f in files if f is not None]
    images = sorted(t for i in client.images.list(spec.repository) for t in i.tags)
    p = ops(tiny["env"], "update", "--image", str(tiny["image"]), "--wheelhouse",
            str(tiny["packages"]))
    assert "Nothing is outdated" in p.stdout
    assert [f.read_bytes() for f in files if f is not None] == before
    assert sorted(t for i in client.images.list(spec.repository) for t in i.tags) == images
    assert ops(tiny["env"], "outdated", "--image", str(tiny["image"])).returncode == 0


def test_security_only_says_the_advisory_data_is_unreachable_and_goes_on(tiny: dict) -> None:
    # a proxy on loopback that nothing answers: pip-audit cannot reach PyPI's advisory data
    env = {**tiny["env"], "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    p = ops(env, "update", "--image", str(tiny["image"]), "--wheelhouse",
            str(tiny["packages"]), "--security-only")
    assert "Python security fixes not checked" in p.stdout
    assert "advisory data" in p.stderr
    assert "No security fix" in p.stdout
