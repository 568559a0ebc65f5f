"""ops.images.spec without an engine: image.yml, lock files, layers, rendering, tags."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from ops.errors import ExitCode, InputError, OpsError
from ops.images import spec as spec_mod
from ops.images import wheelhouse as wh
from ops.images.spec import Lock
from ops.inventory import load

H1 = "sha256:" + "1" * 64
H2 = "sha256:" + "2" * 64
BASE_ID = "sha256:" + "b" * 64


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A copy of images/course to change freely."""
    copy = tmp_path / "course"
    shutil.copytree(spec_mod.COURSE_DIR, copy, ignore=shutil.ignore_patterns("build"))
    return copy


def _prepared(course: Path, variant: str = "cpu", **kw: object) -> tuple[dict, str, str]:
    spec = spec_mod.load(course)
    v = spec.variant(variant)
    lock = spec_mod.parse_lock(spec.lock_path(variant))
    files = spec_mod.render(spec, v, lock, base="course-ops/course-base:x", **kw)  # type: ignore[arg-type]
    digest = spec_mod.content_hash(files, BASE_ID)
    return files, digest, spec_mod.tag_name(spec, v, lock, digest)


# ------------------------------------------------------------------ the real files


def test_the_repository_image_yml_loads() -> None:
    spec = spec_mod.load()
    assert set(spec.variants) == {"cpu", "cuda"}
    assert spec.variants["cuda"].cuda and not spec.variants["cpu"].cuda
    assert spec.uid != 0


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_the_committed_locks_satisfy_their_variant(variant: str) -> None:
    spec = spec_mod.load()
    v = spec.variant(variant)
    lock = spec_mod.parse_lock(spec.lock_path(variant))
    cuda = "13.0"  # inventory/lab's course_image_cuda, checked in the next test
    spec_mod.check_lock(spec, v, lock, cuda)


def test_the_lab_inventory_and_the_cuda_lock_agree() -> None:
    from ops import REPO_ROOT
    from ops.inventory import load_vars_only

    wanted = str(load_vars_only(REPO_ROOT / "inventory" / "lab")["course_image_cuda"])
    lock = spec_mod.parse_lock(spec_mod.load().lock_path("cuda"))
    assert spec_mod.lock_cuda(lock) == wanted


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_the_cuda_dockerfile_renders_with_gpu_env_only_for_cuda(course: Path,
                                                               variant: str) -> None:
    files, _, tag = _prepared(course, variant)
    dockerfile = files["Dockerfile"].decode()
    assert dockerfile.startswith("# The course image.")
    assert "FROM course-ops/course-base:x" in dockerfile
    has_gpu_env = "ENV NVIDIA_VISIBLE_DEVICES=all" in dockerfile
    assert has_gpu_env == (variant == "cuda")
    assert ("NVIDIA_DRIVER_CAPABILITIES=compute,utility" in dockerfile) == (variant == "cuda")
    assert re.search(r"^USER 1000:100$", dockerfile, re.M)
    assert "{{" not in dockerfile and "{%" not in dockerfile
    build = "cu13.0" if variant == "cuda" else "cpu"
    assert re.fullmatch(rf"torch2\.1[34]\.[0-9]+-{build}-py3\.11-[0-9a-f]{{12}}", tag)


# ------------------------------------------------------------------ hash and tag


def test_same_inputs_same_tag(course: Path) -> None:
    assert _prepared(course)[2] == _prepared(course)[2]


def test_tag_is_independent_of_where_the_wheels_come_from(course: Path) -> None:
    """Wheelhouse or PyPI is a build argument, not part of the Dockerfile."""
    dockerfile = _prepared(course)[0]["Dockerfile"].decode()
    assert "127.0.0.1" not in dockerfile
    assert "ARG PIP_FIND_LINKS" in dockerfile


@pytest.mark.parametrize(
    "change",
    ["template", "lock", "uid", "base", "test file", "ca bundle", "image.yml env"],
)
def test_any_input_change_gives_a_new_tag(course: Path, change: str) -> None:
    before = _prepared(course)[2]
    kw: dict[str, object] = {}
    if change == "template":
        p = course / "Dockerfile.j2"
        p.write_text(p.read_text() + "\nLABEL x=y\n")
    elif change == "lock":
        p = course / "lock" / "cpu.txt"
        text = p.read_text()
        m = re.search(r"^tqdm==(\S+) ", text, re.M)
        assert m
        p.write_text(text.replace(f"tqdm=={m.group(1)} ", "tqdm==0.0.1 "))
    elif change == "uid":
        kw["uid"] = 20001
    elif change == "base":
        files, _, _ = _prepared(course)
        spec = spec_mod.load(course)
        lock = spec_mod.parse_lock(spec.lock_path("cpu"))
        digest = spec_mod.content_hash(files, "sha256:" + "c" * 64)
        assert spec_mod.tag_name(spec, spec.variant("cpu"), lock, digest) != before
        return
    elif change == "test file":
        p = course / "tests" / "test_image.py"
        p.write_text(p.read_text() + "\n# changed\n")
    elif change == "ca bundle":
        kw["ca_bundle"] = b"-----BEGIN CERTIFICATE-----\n"
    elif change == "image.yml env":
        p = course / "image.yml"
        p.write_text(p.read_text().replace("    env: {}", "    env: {OMP_NUM_THREADS: '2'}"))
    assert _prepared(course, **kw)[2] != before


def test_tag_name_reads_torch_and_cuda_from_the_lock(course: Path) -> None:
    spec = spec_mod.load(course)
    lock = spec_mod.parse_lock(Path("x.txt"), f"torch==2.9.1 \\\n    --hash={H1}\n"
                               f"cuda-toolkit==12.8.1 \\\n    --hash={H2}\n")
    assert spec_mod.tag_name(spec, spec.variant("cuda"), lock, "ab" * 32) == \
        "torch2.9.1-cu12.8-py3.11-abababababab"
    cpu = spec_mod.parse_lock(Path("x.txt"), f"torch==2.13.0+cpu \\\n    --hash={H1}\n")
    assert spec_mod.tag_name(spec, spec.variant("cpu"), cpu, "cd" * 32) == \
        "torch2.13.0-cpu-py3.11-cdcdcdcdcdcd"


# ------------------------------------------------------------------ layers


def test_each_package_lands_in_one_layer_and_torch_before_the_rest(course: Path) -> None:
    spec = spec_mod.load(course)
    lock = spec_mod.parse_lock(spec.lock_path("cuda"))
    layers = spec_mod.split_layers(spec, lock)
    names = [[p.name for p in members] for _, members in layers]
    flat = [n for group in names for n in group]
    assert sorted(flat) == sorted(lock.packages)
    assert len(flat) == len(set(flat))
    by_layer = {layer.name: [p.name for p in m] for layer, m in layers}
    assert "torch" in by_layer["torch"] and "nvidia-cublas" in by_layer["torch"]
    assert "jupyterlab" in by_layer["rest"]
    assert "tqdm" in by_layer["rest"]


def test_one_pin_changes_only_its_own_layer_file(course: Path) -> None:
    before = _prepared(course)[0]
    p = course / "lock" / "cpu.txt"
    text = p.read_text()
    m = re.search(r"^tqdm==(\S+) ", text, re.M)
    assert m
    p.write_text(text.replace(f"tqdm=={m.group(1)} ", "tqdm==0.0.1 "))
    after = _prepared(course)[0]
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert changed == ["requirements/4-rest.txt"]


# ------------------------------------------------------------------ lock parsing


def test_parse_lock_reads_names_versions_hashes() -> None:
    lock = spec_mod.parse_lock(Path("l.txt"), (
        "# header\n"
        f"Scikit_Learn==1.5.0 \\\n    --hash={H1} \\\n    --hash={H2}\n"
        "    # via -r requirements.in\n"
        f"torch==2.13.0+cpu \\\n    --hash={H1}\n"
    ))
    assert lock.version("scikit-learn") == "1.5.0"
    assert lock.packages["scikit-learn"].hashes == (H1, H2)
    assert lock.packages["scikit-learn"].line == 2
    assert lock.version("torch") == "2.13.0+cpu"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("numpy>=1.0\n", 1, "expected name==version"),
        (f"numpy==1.0 \\\n    --hash={H1}\nnumpy==1.1 \\\n    --hash={H2}\n", 3, "pinned twice"),
        ("numpy==1.0\n", 1, "has no --hash"),
        ("numpy==1.0 \\\n    --hash=md5:abc\n", 2, "expected --hash=sha256"),
    ],
)
def test_bad_lock_names_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(InputError) as exc:
        spec_mod.parse_lock(Path("lock/cpu.txt"), text)
    assert exc.value.code == ExitCode.BAD_INPUT
    assert str(exc.value).startswith(f"lock/cpu.txt:{line}: ")
    assert message in str(exc.value)
    assert "ops images lock" in str(exc.value)


def test_a_lock_whose_cuda_disagrees_with_the_inventory_is_refused(course: Path) -> None:
    spec = spec_mod.load(course)
    lock = spec_mod.parse_lock(spec.lock_path("cuda"))
    wants = r"CUDA 13\.0, the inventory wants course_image_cuda 12\.8"
    with pytest.raises(InputError, match=wants):
        spec_mod.check_lock(spec, spec.variant("cuda"), lock, "12.8")


def test_a_lock_missing_a_requirement_is_refused(course: Path) -> None:
    spec = spec_mod.load(course)
    (course / "requirements.in").write_text(
        (course / "requirements.in").read_text() + "not-a-real-project\n")
    lock = spec_mod.parse_lock(spec.lock_path("cpu"))
    missing = r"not-a-real-project \(requirements.in:\d+\) is not in the lock"
    with pytest.raises(InputError, match=missing):
        spec_mod.check_lock(spec, spec.variant("cpu"), lock, None)


def test_resolver_input_applies_pins_and_omissions(course: Path) -> None:
    spec = spec_mod.load(course)
    cpu = spec_mod.resolver_input(spec, spec.variant("cpu")).split()
    cuda = spec_mod.resolver_input(spec, spec.variant("cuda")).split()
    assert "torch==2.13.0+cpu" in cpu and "torchvision" not in " ".join(cpu)
    assert "torch==2.14.1" in cuda and "torchvision==0.29.1" in cuda
    assert "jupyterlab" in cpu and "jupyterlab" in cuda


# ------------------------------------------------------------------ image.yml errors


@pytest.mark.parametrize(
    ("edit", "line_of", "message"),
    [
        (("  uid: 1000", "  uid: 0"), "  uid: 0", "not a user's UID"),
        (("  uid: 1000", "  uid: many"), "  uid: many", "user.uid: expected a number"),
        (("    cuda: true", "    cuda: maybe"), "  cuda:", "needs cuda: true or false"),
        (("  debootstrap: base", "  debootstrap: base\n  image: x"), "base:", "exactly one"),
    ],
)
def test_bad_image_yml_names_the_line(course: Path, edit: tuple[str, str], line_of: str,
                                      message: str) -> None:
    path = course / "image.yml"
    text = path.read_text().replace(*edit, 1)
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        spec_mod.load(course)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(line_of))
    assert f"image.yml:{line}: " in str(exc.value)
    assert message in str(exc.value)


def test_unknown_variant_is_an_input_error(course: Path) -> None:
    with pytest.raises(InputError, match="no variant 'rocm'.*cpu, cuda"):
        spec_mod.load(course).variant("rocm")


# ------------------------------------------------------------------ the wheelhouse


def test_wheelhouse_missing_matches_by_hash(tmp_path: Path) -> None:
    wheel = tmp_path / "tqdm-4.0.0-py3-none-any.whl"
    wheel.write_bytes(b"a wheel")
    digest = wh._sha256(wheel)
    ok = spec_mod.parse_lock(Path("l"), f"tqdm==4.0.0 \\\n    --hash={digest}\n")
    bad = spec_mod.parse_lock(Path("l"), f"tqdm==4.0.0 \\\n    --hash={H1}\n")
    target = ("3.11", "x86_64-manylinux_2_28")
    assert wh.missing(tmp_path, ok, *target) == []
    assert [p.name for p in wh.missing(tmp_path, bad, *target)] == ["tqdm"]
    wheel.write_bytes(b"another wheel")  # the cached hash must not be trusted
    assert [p.name for p in wh.missing(tmp_path, ok, *target)] == ["tqdm"]


@pytest.mark.parametrize(
    ("wheel", "usable"),
    [
        ("numpy-2.1.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
        ("numpy-2.1.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", False),
        ("numpy-2.1.3-cp311-cp311-manylinux_2_39_x86_64.whl", False),
        ("numpy-2.1.3-cp311-cp311-macosx_14_0_arm64.whl", False),
        ("numpy-2.1.3-cp39-abi3-manylinux_2_28_x86_64.whl", True),
    ],
)
def test_wheelhouse_counts_only_wheels_the_image_installs(tmp_path: Path, wheel: str,
                                                          usable: bool) -> None:
    """A wheel with a locked hash but for another Python or platform does not count."""
    path = tmp_path / wheel
    path.write_bytes(wheel.encode())
    lock = spec_mod.parse_lock(Path("l"), f"numpy==2.1.3 \\\n    --hash={wh._sha256(path)}\n")
    assert (wh.missing(tmp_path, lock, "3.11", "x86_64-manylinux_2_28") == []) == usable


# ------------------------------------------------------------------ the registry


def test_registry_password_is_made_once_private(tmp_path: Path) -> None:
    import stat

    from ops.images import registry as reg

    path = tmp_path / ".secrets" / "registry-password"
    first = reg.ensure_password(path)
    assert re.fullmatch(r"[A-Za-z0-9]{32}", first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert reg.ensure_password(path) == first


def test_registry_from_the_lab_inventory_pushes_through_loopback(tmp_path: Path) -> None:
    from ops.images import registry as reg

    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "group_vars" / "all.yml").write_text(
        'tls_ca_certificate: "{{ inventory_dir }}/.lab/tls/ca.crt"\n'
        'registry_password_file: "{{ inventory_dir }}/.lab/registry-password"\n')
    (inv / "hosts.yml").write_text(
        "all:\n  children:\n    registry:\n      hosts:\n"
        "        ctl: {ansible_host: 127.0.0.1, ansible_port: 2222, "
        "lab_ports: {80: 1, 443: 2, 5000: 40005}}\n")
    r = reg.from_inventory(load(inv), "course-ops/course")
    assert r.address == "ctl:5000"
    assert r.push_address == "127.0.0.1:40005"
    assert r.ca == inv.resolve() / ".lab" / "tls" / "ca.crt"
    assert r.password_file == inv.resolve() / ".lab" / "registry-password"
    assert r.server_ref("t1") == "ctl:5000/course-ops/course:t1"


def test_a_missing_top_level_key_is_an_input_error(course: Path) -> None:
    path = course / "image.yml"
    path.write_text(re.sub(r"^repository:.*$", "", path.read_text(), flags=re.M))
    with pytest.raises(InputError, match="repository: expected a repository name"):
        spec_mod.load(course)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("    env: {}", "    env: {OMP: 'a b'}"), "env OMP='a b'"),
        (("  name: student", "  name: 'Stu Dent'"), "not a POSIX user name"),
        (("  - name: rest\n", "  - name: rest\n    match: [x]\n"), "the last layer takes"),
    ],
)
def test_values_that_would_break_the_dockerfile_are_refused(course: Path,
                                                            edit: tuple[str, str],
                                                            message: str) -> None:
    path = course / "image.yml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(*edit, 1))
    with pytest.raises(InputError, match=re.escape(message)):
        spec_mod.load(course)


class FakeClient:
    """Just enough of docker.DockerClient for `ops images test`: records each run."""

    def __init__(self, runtimes: dict) -> None:
        self.runtimes = runtimes
        self.runs: list[dict] = []

    def info(self) -> dict:
        return {"Runtimes": self.runtimes}


@pytest.mark.parametrize(("variant", "runtimes", "gpu"), [
    ("cpu", {"nvidia": {}}, False),
    ("cuda", {"nvidia": {}}, True),
    ("cuda", {"runc": {}}, False),
])
def test_only_a_cuda_variant_gets_the_gpu(monkeypatch: pytest.MonkeyPatch, variant: str,
                                          runtimes: dict, gpu: bool) -> None:
    from click.testing import CliRunner

    from ops.cli import cli
    from ops.images import commands, smoke

    client = FakeClient(runtimes)
    seen: list[bool] = []
    monkeypatch.setattr(commands, "_client", lambda: client)
    monkeypatch.setattr(commands, "_prepared", lambda *a, **k: type("P", (), {"ref": "x"}))
    monkeypatch.setattr(smoke, "run",
                        lambda c, ref, *, port, gpu, log, **kw: seen.append(gpu) or [])
    result = CliRunner().invoke(cli, ["images", "test", "--variant", variant])
    assert result.exit_code == 0, result.output
    assert seen == [gpu]


# ------------------------------------------------------------------ the image's own tag


def test_the_tag_does_not_depend_on_the_tag_image_json_holds(course: Path) -> None:
    """image.json records the tag, yet the tag is hashed from image.json without it."""
    spec = spec_mod.load(course)
    v = spec.variant("cpu")
    lock = spec_mod.parse_lock(spec.lock_path("cpu"))
    ctx = spec_mod.context(spec, v, lock, base="course-ops/course-base:x", base_id=BASE_ID)
    recorded = json.loads(ctx.files["image.json"])
    assert recorded["tag"] == ctx.tag
    assert ctx.tag.endswith(ctx.content_hash[:12])
    untagged = spec_mod.render(spec, v, lock, base="course-ops/course-base:x")
    assert "tag" not in json.loads(untagged["image.json"])
    hashes = {spec_mod.content_hash(files, BASE_ID) for files in (
        untagged, ctx.files, spec_mod.stamp(untagged, "anything"),
        spec_mod.stamp(untagged, "torch0-cpu-py3.11-000000000000"))}
    assert hashes == {ctx.content_hash}
    # every other key of image.json still counts
    other = json.loads(untagged["image.json"]) | {"port": 9999}
    changed = {**untagged, "image.json": json.dumps(other).encode()}
    assert spec_mod.content_hash(changed, BASE_ID) != ctx.content_hash


def test_the_build_context_holds_the_tagged_image_json(course: Path) -> None:
    from ops.images import build as build_mod

    class Images:
        def get(self, name: str) -> object:
            return type("Image", (), {"id": BASE_ID})()

    client = type("Client", (), {"images": Images()})()
    spec = spec_mod.load(course)
    spec = dataclasses.replace(spec, base_debootstrap=None, base_image="some/base:1")
    p = build_mod.prepare(client, spec, spec.variant("cpu"), cuda=None, make_base=False)
    assert json.loads(p.files["image.json"])["tag"] == p.tag
    with tarfile.open(fileobj=build_mod._context_tar(p.files)) as tar:
        member = tar.extractfile("image.json")
        assert member is not None
        assert json.loads(member.read())["tag"] == p.tag
    assert "COPY image.json /opt/course-ops/image.json" in p.files["Dockerfile"].decode()


# ------------------------------------------------------------------ image.yml: shared pins


def test_shared_pins_reach_every_variant_and_a_variant_pin_wins(course: Path) -> None:
    spec = spec_mod.load(course)
    assert spec.pins["jupyterhub"].startswith("4.")
    for v in spec.variants.values():
        assert v.pins["jupyterhub"] == spec.pins["jupyterhub"]
        assert f"jupyterhub=={spec.pins['jupyterhub']}" in spec_mod.resolver_input(spec, v)
    path = course / "image.yml"
    path.write_text(path.read_text().replace('      torch: "2.14.1"\n',
                                             '      torch: "2.14.1"\n      jupyterhub: "4.1.5"\n'))
    spec = spec_mod.load(course)
    assert spec.variant("cuda").pins["jupyterhub"] == "4.1.5"
    assert spec.variant("cpu").pins["jupyterhub"] == spec.pins["jupyterhub"]


def test_the_locks_hold_the_pinned_jupyterhub_for_the_hub() -> None:
    """The hub role reads pins.jupyterhub from image.yml: the image must have that one."""
    spec = spec_mod.load()
    for variant in spec.variants:
        lock = spec_mod.parse_lock(spec.lock_path(variant))
        assert lock.version("jupyterhub") == spec.pins["jupyterhub"]
        assert lock.version("batchspawner") == spec.pins["batchspawner"]


def test_a_variant_requirement_is_resolved_and_checked(course: Path) -> None:
    spec = spec_mod.load(course)
    cuda = spec.variant("cuda")
    assert "numba-cuda[cu13]" in spec_mod.resolver_input(spec, cuda).split()
    assert "numba-cuda" not in spec_mod.resolver_input(spec, spec.variant("cpu"))
    assert {"numba", "numba.cuda", "triton"} <= set(spec.imports_of(cuda))
    assert "numba" not in spec.imports_of(spec.variant("cpu"))
    text = (course / "lock" / "cuda.txt").read_text()
    text = re.sub(r"^numba-cuda==\S+ \\\n(    --hash=\S+ ?\\?\n)+", "", text, flags=re.M)
    (course / "lock" / "cuda.txt").write_text(text)
    lock = spec_mod.parse_lock(course / "lock" / "cuda.txt")
    with pytest.raises(InputError, match=r"numba-cuda \(image.yml, variant cuda's requires\)"):
        spec_mod.check_lock(spec, cuda, lock, "13.0")


def test_a_bad_variant_requirement_names_its_line(course: Path) -> None:
    path = course / "image.yml"
    text = path.read_text().replace("      - numba-cuda[cu13]", "      - numba-cuda[cu13")
    path.write_text(text)
    with pytest.raises(InputError, match=r"requires 'numba-cuda\[cu13': not a requirement") as e:
        spec_mod.load(course)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "numba-cuda[cu13" in ln)
    assert f"image.yml:{line}:" in str(e.value)


# ------------------------------------------------------------------ projects built from source


def test_a_source_built_project_without_its_sdist_in_sources_is_refused(course: Path) -> None:
    spec = spec_mod.load(course)
    assert "nbmerge" in spec.from_source
    sources = course / "lock" / "sources.txt"
    text = re.sub(r"^nbmerge==\S+ \\\n(    --hash=\S+ ?\\?\n)+", "", sources.read_text(),
                  flags=re.M)
    sources.write_text(text)
    lock = spec_mod.parse_lock(spec.lock_path("cpu"))
    line = lock.packages["nbmerge"].line
    with pytest.raises(InputError, match=rf"cpu.txt:{line}: nbmerge==\S+ is built from source, "
                                         r"but .*sources.txt has no sdist of it"):
        spec_mod.check_lock(spec, spec.variant("cpu"), lock, None)


def test_the_locked_nbmerge_is_a_wheel_hash_not_the_sdist_hash() -> None:
    spec = spec_mod.load()
    sources = spec.source_builds()
    assert sources is not None
    sdist = sources.sdist("nbmerge")
    assert sdist is not None and [t.name for t in sources.tools()] == ["setuptools"]
    for variant in spec.variants:
        locked = spec_mod.parse_lock(spec.lock_path(variant)).packages["nbmerge"]
        assert locked.version == sdist.version
        assert len(locked.hashes) == 1 and locked.hashes[0] not in sdist.hashes


def test_with_wheel_hash_swaps_uvs_sdist_hashes_for_the_wheels() -> None:
    from ops.images import lock as lock_mod

    text = (f"jinja2==3.1.6 \\\n    --hash={H1}\n"
            f"nbmerge==0.0.4 \\\n    --hash={H1} \\\n    --hash={H2}\n"
            "    # via -r requirements.in\n"
            f"tqdm==4.0.0 \\\n    --hash={H2}\n")
    package = spec_mod.parse_lock(Path("l"), text).packages["nbmerge"]
    wheel = "sha256:" + "3" * 64
    out = spec_mod.parse_lock(Path("l"), lock_mod.with_wheel_hash(text, package, wheel))
    assert out.packages["nbmerge"].hashes == (wheel,)
    assert out.packages["jinja2"].hashes == (H1,) and out.packages["tqdm"].hashes == (H2,)


def test_preferences_give_uv_the_sdist_hash_back(course: Path) -> None:
    """uv keeps the hashes of its preference file: it must see the sdist's, not the wheel's."""
    from ops.images import lock as lock_mod

    spec = spec_mod.load(course)
    path = spec.lock_path("cpu")
    prefs = spec_mod.parse_lock(path, lock_mod.preferences(spec, path, path.read_text()))
    sources = spec.source_builds()
    assert sources is not None and (sdist := sources.sdist("nbmerge")) is not None
    assert prefs.packages["nbmerge"].hashes == sdist.hashes
    assert prefs.version("tqdm") == spec_mod.parse_lock(path).version("tqdm")
    spec.sources_path.unlink()  # no sdist known: nbmerge is left to uv
    prefs = spec_mod.parse_lock(path, lock_mod.preferences(spec, path, path.read_text()))
    assert "nbmerge" not in prefs.packages


_BACKEND = '''
import os, zipfile, time

def build_wheel(out, config_settings=None, metadata_directory=None):
    name = "probe-1.0-py3-none-any.whl"
    with open("made.txt", "w") as f:  # a file made by the build: its mode follows the umask
        f.write("hash seed %s, sys.flags.no_site %s" % (os.environ.get("PYTHONHASHSEED"),
                                                         __import__("sys").flags.no_site))
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())
    with zipfile.ZipFile(os.path.join(out, name), "w") as z:
        for path in sorted(["probe.py", "made.txt"]):
            info = zipfile.ZipInfo(path, time.gmtime(max(epoch, 315532800))[:6])
            info.external_attr = (os.stat(path).st_mode & 0xFFFF) << 16
            with open(path, "rb") as f:
                z.writestr(info, f.read())
    return name
'''


def _sdist(tmp: Path, mtime: float, backend: str = "probe_backend") -> Path:
    path = tmp / f"probe-1.0-{int(mtime)}.tar.gz"
    files = {"probe-1.0/pyproject.toml":
             f'[build-system]\nrequires = []\nbuild-backend = "{backend}"\n'.encode(),
             "probe-1.0/probe.py": b"VALUE = 1\n"}
    with tarfile.open(path, "w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(body), int(mtime), 0o664
            tar.addfile(info, io.BytesIO(body))
    return path


def test_a_wheel_built_from_source_is_the_same_bytes_every_time(tmp_path: Path) -> None:
    """Another sdist mtime, another umask, another caller environment: the same wheel."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "probe_backend.py").write_text(_BACKEND)
    first = wh.build_wheel(_sdist(tmp_path, 1_700_000_000), tools, tmp_path / "a")
    old = os.umask(0o002)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SOURCE_DATE_EPOCH", "1800000000")
            mp.setenv("PYTHONHASHSEED", "123")
            second = wh.build_wheel(_sdist(tmp_path, 1_750_000_000), tools, tmp_path / "b")
    finally:
        os.umask(old)
    assert first.name == second.name == "probe-1.0-py3-none-any.whl"
    assert wh.sha256(first) == wh.sha256(second)
    with zipfile.ZipFile(first) as z:
        for info in z.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert (info.external_attr >> 16) & 0o777 == 0o644, info.filename
        assert z.read("made.txt") == b"hash seed 0, sys.flags.no_site 1"


def test_a_source_build_that_makes_a_platform_wheel_is_refused(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "probe_backend.py").write_text(
        _BACKEND.replace("py3-none-any", "cp311-cp311-linux_x86_64"))
    with pytest.raises(OpsError, match="a platform wheel"):
        wh.build_wheel(_sdist(tmp_path, 1_700_000_000), tools, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _source_lock(tmp_path: Path, wheel_hash: str) -> tuple[Lock, spec_mod.SourceBuilds]:
    lock = spec_mod.parse_lock(tmp_path / "cpu.txt", f"probe==1.0 \\\n    --hash={wheel_hash}\n")
    sources = spec_mod.SourceBuilds(spec_mod.parse_lock(
        tmp_path / "sources.txt",
        f"probe==1.0 \\\n    --hash={H1}\nsetuptools==80.0.0 \\\n    --hash={H2}\n"),
        frozenset({"probe"}))
    return lock, sources


@pytest.mark.parametrize("same", [True, False])
def test_fetch_keeps_a_wheel_built_from_source_only_with_the_locked_hash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same: bool) -> None:
    house = tmp_path / "wheelhouse"
    made = tmp_path / "made" / "probe-1.0-py3-none-any.whl"
    made.parent.mkdir()
    made.write_bytes(b"the built wheel")
    lock, sources = _source_lock(tmp_path, wh.sha256(made) if same else H2)
    calls: list[tuple[str, str]] = []

    def build(name: str, version: str, src: object, out: Path, log: object,
              **kw: object) -> Path:
        calls.append((name, version))
        out.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(made, out))

    monkeypatch.setattr(wh, "build_from_source", build)
    monkeypatch.setattr(wh, "_pip", lambda argv, what: pytest.fail("nothing to download"))
    target = ("3.11", "x86_64-manylinux_2_28")
    if same:
        wh.fill(house, lock, lambda _: None, python=target[0], platform=target[1],
                sources=sources)
        assert wh.missing(house, lock, *target) == []
    else:
        with pytest.raises(OpsError, match=r"probe==1.0: the wheel built here .* records"):
            wh.fill(house, lock, lambda _: None, python=target[0], platform=target[1],
                    sources=sources)
        assert not list(house.glob("*.whl"))
    assert calls == [("probe", "1.0")]
