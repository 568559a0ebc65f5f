"""The course image end to end on the lab, through the real CLI: fetch the wheels, build
the cpu variant offline, build again (up to date), smoke-test it, push it to the lab's
registry, pull it on gpu1/gpu2 by digest, and `ops verify images`.

Two tests need only the engine (and PyPI), no lab: a small build of the real Dockerfile
holds its own tag in image.json, and nbmerge's wheel rebuilds from its sdist to the
locked hash."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
from pathlib import Path

import docker
import pytest

from ops.images import build as build_mod
from ops.images import spec as spec_mod
from ops.images import wheelhouse as wh
from tests.lab.conftest import WHEELHOUSE, docker_exec, ops

pytestmark = pytest.mark.lab
SPEC = spec_mod.load()


def local_tags() -> set[str]:
    out = subprocess.run(["docker", "image", "ls", "--format", "{{.Tag}}", SPEC.repository],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.fixture(scope="module")
def built(built_image: str) -> str:
    """The cpu variant, fetched then built offline (conftest's built_image); its tag."""
    assert built_image in local_tags()
    return built_image


def test_the_build_is_tagged_by_content_with_labels(built: str) -> None:
    inspect = json.loads(subprocess.run(["docker", "image", "inspect",
                                         f"{SPEC.repository}:{built}"], capture_output=True,
                                        text=True, check=True).stdout)[0]
    labels = inspect["Config"]["Labels"]
    assert labels["course-ops.variant"] == "cpu"
    assert built.endswith(labels["course-ops.content-hash"][:12])
    assert labels["org.opencontainers.image.version"] == built
    assert labels["course-ops.torch"] == "2.13.0+cpu"
    recorded = subprocess.run(["docker", "run", "--rm", "--entrypoint", "cat",
                               f"{SPEC.repository}:{built}", "/opt/course-ops/image.json"],
                              capture_output=True, text=True, check=True).stdout
    assert json.loads(recorded)["tag"] == built
    assert inspect["Config"]["User"] == f"{SPEC.uid}:{SPEC.gid}"
    manifest = json.loads((SPEC.dir / "build" / "cpu" / f"{built}.json").read_text())
    assert any(line.startswith("torch==2.13.0") for line in manifest["pip"])
    assert any(line.startswith("python3=") for line in manifest["apt"])


def test_building_again_is_up_to_date(provisioned_lab: Path, built: str) -> None:
    p = ops(provisioned_lab, "images", "build", "--variant", "cpu", "--if-changed",
            "--wheelhouse", str(WHEELHOUSE), "--offline")
    assert "up to date" in p.stderr
    assert "building course-ops/course" not in p.stderr


def test_smoke_tests_pass_and_leave_no_container(provisioned_lab: Path, built: str) -> None:
    p = ops(provisioned_lab, "images", "test", "--variant", "cpu", timeout=900)
    assert "Jupyter wants the token" in p.stdout
    assert "the image records its own tag" in p.stdout
    assert "FAILED" not in p.stdout
    left = subprocess.run(["docker", "ps", "-aq", "--filter", "label=course-ops.smoke"],
                          capture_output=True, text=True, check=True).stdout
    assert left.strip() == ""


def test_push_then_every_gpu_server_pulls_it(provisioned_lab: Path, built: str) -> None:
    ops(provisioned_lab, "images", "push", "--variant", "cpu", timeout=1800)
    state = json.loads((provisioned_lab / "state" / "images.json").read_text())
    assert state["variants"]["cpu"]["tag"] == built
    assert state["variants"]["cpu"]["digest"].startswith("sha256:")
    ops(provisioned_lab, "images", "pull", timeout=1800)
    for node in ("gpu1", "gpu2"):
        tags = docker_exec(node, "docker", "image", "ls", "--format",
                           "{{.Repository}}:{{.Tag}}")
        assert f"ctl:5000/{SPEC.repository}:{built}" in tags.split()
    ops(provisioned_lab, "verify", "images")


def test_a_second_push_sends_nothing(provisioned_lab: Path, built: str) -> None:
    p = ops(provisioned_lab, "images", "push", "--variant", "cpu")
    assert "is already in the registry" in p.stderr


def test_status_shows_every_server_up_to_date(provisioned_lab: Path, built: str) -> None:
    rows = json.loads(ops(provisioned_lab, "images", "status", "--format", "json").stdout)
    cpu = next(r for r in rows if r["variant"] == "cpu")
    assert cpu["checkout"] == cpu["pushed"] == built
    assert cpu["built_here"] and cpu["in_registry"]
    assert cpu["servers"] == {"gpu1": True, "gpu2": True}


def test_a_server_missing_the_image_fails_verify(provisioned_lab: Path, built: str) -> None:
    """gpu2 loses the image's name (its layers are kept under a name of the test's, so the
    pull that repairs it fetches no layer again): verify fails, `ops images pull` mends it."""
    ref = f"ctl:5000/{SPEC.repository}:{built}"
    aside = f"course-ops-test/aside:{built}"
    docker_exec("gpu2", "docker", "image", "tag", ref, aside)
    try:
        docker_exec("gpu2", "docker", "image", "rm", ref)
        p = ops(provisioned_lab, "verify", "images", check=False)
        assert p.returncode == 1
        assert f"{ref} is not pulled" in p.stdout, p.stdout[-2000:]
        ops(provisioned_lab, "images", "pull")
        assert ref in docker_exec("gpu2", "docker", "image", "ls", "--format",
                                  "{{.Repository}}:{{.Tag}}").split()
    finally:
        docker_exec("gpu2", "docker", "image", "rm", aside)


# --------------------------------------------------------------------------- engine only


def test_a_built_image_holds_its_own_tag_in_image_json() -> None:
    """The real Dockerfile, base and build path, with a one-package lock (tqdm) and a
    repository of the test's own; the image's image.json names the tag it was built as,
    and that tag is the hash of the context without it."""
    client = docker.from_env()
    spec = dataclasses.replace(SPEC, repository="course-ops/course-tagtest")
    variant = spec.variant("cpu")
    full = spec_mod.parse_lock(spec.lock_path("cpu"))
    lock = spec_mod.Lock(full.path, {"tqdm": full.packages["tqdm"]})
    base, base_id = build_mod.ensure_base(client, spec, print)
    ctx = spec_mod.context(spec, variant, lock, base=base, base_id=base_id)
    p = build_mod.Prepared(spec, variant, lock, base, base_id, ctx.files, ctx.content_hash,
                           ctx.tag)
    assert spec_mod.content_hash(p.files, base_id) == p.digest
    try:
        built = build_mod.build(client, p, wheelhouse=WHEELHOUSE, force=True, log=print)
        raw = client.containers.run(p.ref, ["cat", "/opt/course-ops/image.json"],
                                    entrypoint=[], remove=True)
        recorded = json.loads(raw)
        assert recorded["tag"] == p.tag == p.ref.rpartition(":")[2]
        assert recorded["variant"] == "cpu"
        image = client.images.get(p.ref)
        assert image.id == built.image_id
        assert image.labels["course-ops.content-hash"] == p.digest
    finally:
        for ref in (p.ref, f"{spec.repository}:{variant.name}"):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(ref)


def test_the_nbmerge_wheel_rebuilds_from_its_sdist_to_the_locked_hash(tmp_path: Path) -> None:
    """What `ops images fetch` does on a fresh machine: the sdist from PyPI (hash-checked),
    the pinned build tools, a reproducible build, the hash the locks record."""
    sources = SPEC.source_builds()
    assert sources is not None and (sdist := sources.sdist("nbmerge")) is not None
    wheel = wh.build_from_source("nbmerge", sdist.version, sources, tmp_path, print)
    for variant in SPEC.variants:
        locked = spec_mod.parse_lock(SPEC.lock_path(variant)).packages["nbmerge"]
        assert wh.sha256(wheel) in locked.hashes, (variant, wheel.name)
