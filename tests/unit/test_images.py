"""ops.images.spec without an engine: image.yml, lock files, layers, rendering, tags."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ops.errors import ExitCode, InputError
from ops.images import spec as spec_mod
from ops.images import wheelhouse as wh

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
    r = reg.from_inventory(inv, "course-ops/course")
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
    monkeypatch.setattr(smoke, "run", lambda c, ref, *, port, gpu, log: seen.append(gpu) or [])
    result = CliRunner().invoke(cli, ["images", "test", "--variant", variant])
    assert result.exit_code == 0, result.output
    assert seen == [gpu]
