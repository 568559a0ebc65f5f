"""Role student_containers' node-side code: the GPU selection (course_gpus.py) and the
runner (course-run), both installed on the GPU servers; no host, no Podman.

The nvidia-smi samples: ``nvidia-smi-q-h200.txt`` is the real H200's ``nvidia-smi -q``
(/work/shared/reference/gpu-server-facts.txt, whose UUID and serial number were left out);
``nvidia-smi-q-4xh200.txt`` is four H200s in the same format, with the UUID lines where
nvidia-smi prints them and minor numbers (/dev/nvidiaN, what Slurm's gres.conf names) that
differ from NVML's PCI order, as on servers whose kernel probed the GPUs in another order.
``cdi-nvidia-uuid.yaml`` is the shape of ``nvidia-ctk cdi generate
--device-name-strategy=uuid`` for them.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ops import REPO_ROOT

FILES = REPO_ROOT / "roles" / "student_containers" / "files"
DATA = Path(__file__).parent / "data"


def _load(name: str, path: Path) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


gpus_mod = _load("course_gpus", FILES / "course_gpus.py")
run_mod = _load("course_run", FILES / "course-run")

H200 = (DATA / "nvidia-smi-q-h200.txt").read_text()
FOUR = (DATA / "nvidia-smi-q-4xh200.txt").read_text()
CDI = (DATA / "cdi-nvidia-uuid.yaml").read_text()
UUID = {2: "GPU-5f0e8a4c-2b1d-4e7a-9c3f-1a2b3c4d5e01",  # minor -> UUID in FOUR
        3: "GPU-0c9d8e7f-6a5b-4c3d-8e2f-1a2b3c4d5e02",
        0: "GPU-a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c03",
        1: "GPU-f0e1d2c3-b4a5-4968-8776-655443322104"}


# ------------------------------------------------------------------------- nvidia-smi -q


def test_the_real_h200_parses_its_bus_and_minor_number() -> None:
    (gpu,) = gpus_mod.parse_nvidia_smi_q(H200)
    assert (gpu.bus_id, gpu.minor, gpu.index) == ("00000000:00:06.0", 0, 0)
    assert gpu.uuid is None  # the reference left it out


def test_four_gpus_keep_nvml_order_and_their_own_minor_numbers() -> None:
    gpus = gpus_mod.parse_nvidia_smi_q(FOUR)
    assert [(g.index, g.minor) for g in gpus] == [(0, 2), (1, 3), (2, 0), (3, 1)]
    assert {g.minor: g.uuid for g in gpus} == UUID  # not the nested PCI "Minor Number: 99"


def test_no_gpu_output_parses_to_nothing() -> None:
    assert gpus_mod.parse_nvidia_smi_q("No devices were found\n") == []


# ------------------------------------------------------------------------- Slurm's GPUs


@pytest.mark.parametrize(("env", "numbers"), [
    ({"SLURM_JOB_GPUS": "0"}, [0]),
    ({"SLURM_JOB_GPUS": "3,1"}, [1, 3]),
    ({"SLURM_JOB_GPUS": "0-2"}, [0, 1, 2]),
    ({"SLURM_JOB_GPUS": "1,3", "SLURM_STEP_GPUS": "3"}, [3]),  # the step's own first
    ({"SLURM_JOB_GPUS": ""}, []),
    ({"CUDA_VISIBLE_DEVICES": "0"}, []),  # local to the job's cgroup: never used
    ({}, []),
])
def test_job_gpu_numbers(env: dict[str, str], numbers: list[int]) -> None:
    assert gpus_mod.job_gpu_numbers(env) == numbers


def test_a_malformed_gpu_list_is_an_error() -> None:
    with pytest.raises(gpus_mod.SelectionError, match="SLURM_JOB_GPUS='gpu:1'"):
        gpus_mod.job_gpu_numbers({"SLURM_JOB_GPUS": "gpu:1"})


# ------------------------------------------------------------------------- the CDI spec


def test_cdi_names_from_nvidia_ctk_yaml() -> None:
    assert gpus_mod.cdi_device_names(CDI) == {*UUID.values(), "all"}


def test_cdi_names_from_json() -> None:
    spec = {"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu",
            "devices": [{"name": UUID[0], "containerEdits": {}}, {"name": "all"}]}
    assert gpus_mod.cdi_device_names(json.dumps(spec)) == {UUID[0], "all"}


def test_a_spec_of_another_kind_names_no_gpu() -> None:
    assert gpus_mod.cdi_device_names(CDI.replace("kind: nvidia.com/gpu", "kind: x.com/y")) \
        == set()


# ------------------------------------------------------------------------- selection


def select(numbers: list[int], smi: str = FOUR, **kw: object) -> list[str]:
    kw.setdefault("node_has_gpus", True)
    kw.setdefault("cdi_names", gpus_mod.cdi_device_names(CDI))
    return gpus_mod.select(numbers, gpus_mod.parse_nvidia_smi_q(smi), **kw)


def test_slurm_gpu_0_is_the_gpu_with_minor_0_not_nvml_index_0() -> None:
    assert select([0]) == [f"nvidia.com/gpu={UUID[0]}"]
    assert UUID[0] != gpus_mod.parse_nvidia_smi_q(FOUR)[0].uuid


def test_two_gpus_by_uuid() -> None:
    assert select([3, 1]) == [f"nvidia.com/gpu={UUID[1]}", f"nvidia.com/gpu={UUID[3]}"]


def test_every_gpu_is_still_named_one_by_one_never_all() -> None:
    devices = select([0, 1, 2, 3])
    assert len(devices) == 4
    assert not any(d.endswith("=all") for d in devices)


def test_a_job_without_gpus_gets_none() -> None:
    assert select([]) == []


def test_a_node_without_gpus_passes_none_for_placeholder_files() -> None:
    """The lab: Slurm schedules two placeholder /dev/nvidiaN files; no CDI, no nvidia-smi."""
    assert gpus_mod.select([0, 1], [], node_has_gpus=False, cdi_names=None) == []


def test_a_gpu_node_without_a_cdi_spec_is_an_error() -> None:
    with pytest.raises(gpus_mod.SelectionError, match="no CDI spec"):
        select([0], cdi_names=None)


def test_a_gpu_missing_from_the_cdi_spec_is_an_error() -> None:
    names = gpus_mod.cdi_device_names(CDI) - {UUID[2]}
    with pytest.raises(gpus_mod.SelectionError, match=f"no device {UUID[2]}"):
        select([2], cdi_names=names)


def test_an_index_named_spec_is_refused() -> None:
    """A spec generated with the default index names: a GPU must never be chosen by index."""
    with pytest.raises(gpus_mod.SelectionError, match="regenerate"):
        select([0], cdi_names={"0", "1", "2", "3", "all"})


def test_a_gpu_nvidia_smi_does_not_show_is_an_error() -> None:
    with pytest.raises(gpus_mod.SelectionError, match="no GPU with that minor number"):
        select([5])


def test_the_real_h200_without_its_uuid_is_an_error_not_a_guess() -> None:
    with pytest.raises(gpus_mod.SelectionError, match="no UUID"):
        select([0], smi=H200)


# ------------------------------------------------------------------------- course-run


@pytest.mark.parametrize(("argv", "expected"), [
    (["python", "x.py"], (None, False, ["python", "x.py"], None)),
    (["--image", "t1", "--", "ls", "-l"], ("t1", False, ["ls", "-l"], None)),
    (["--image=t1", "ls"], ("t1", False, ["ls"], None)),
    (["--no-image", "--", "hostname"], (None, True, ["hostname"], None)),
    (["--banner", "job 'x'", "--", "-weird"], (None, False, ["-weird"], "job 'x'")),
])
def test_run_arguments(argv: list[str], expected: tuple) -> None:
    a = run_mod.parse_args(argv)
    assert (a.tag, a.no_image, a.command, a.banner) == expected


def test_the_banner_names_the_tag_of_the_images_own_image_json(tmp_path: Path) -> None:
    """BANNER runs in the container; here with a stand-in image.json at the same path."""
    import subprocess

    image_json = Path("/opt/course-ops/image.json")
    if not image_json.exists():
        script = run_mod.BANNER.replace("/opt/course-ops/image.json", str(tmp_path / "i.json"))
        (tmp_path / "i.json").write_text(json.dumps({"cuda": False, "tag": "torch-abc"},
                                                    indent=2))
    else:
        pytest.skip("this machine has a real /opt/course-ops/image.json")
    out = subprocess.run(["/bin/sh", "-c", script, "course job 'x' starting", "echo", "hi"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("*** course job 'x' starting in image torch-abc on ")
    assert out[1] == "hi"


@pytest.mark.parametrize(("argv", "message"), [
    ([], "usage"),
    (["--image"], "needs a TAG"),
    (["--image", "t", "--no-image", "ls"], "contradict"),
    (["--image", "../etc", "ls"], "not an image tag"),
    (["--bogus", "ls"], "unknown option"),
])
def test_run_argument_errors(argv: list[str], message: str) -> None:
    with pytest.raises(run_mod.RunError, match=message):
        run_mod.parse_args(argv)


def test_run_refuses_outside_a_job() -> None:
    with pytest.raises(run_mod.RunError, match="only inside a Slurm job"):
        run_mod.Job.current({})


def test_run_outside_a_job_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_mod.main(["--no-image", "true"], env={}) == 2
    err = capsys.readouterr().err
    assert err.startswith("course-run: runs only inside a Slurm job") and err.count("\n") == 1


def test_a_refusal_inside_a_job_goes_to_the_jobs_comment_too() -> None:
    calls: list[list[str]] = []
    run_mod.tell_slurm({"SLURM_JOB_ID": "77"}, "torch0-cpu-dead",
                       "this node has no image torch0-cpu-dead:\n not found",
                       run=lambda argv, **kw: calls.append(argv))
    assert calls == [["scontrol", "update", "JobId=77",
                      "Comment=course-image=torch0-cpu-dead course-run: this node has no "
                      "image torch0-cpu-dead: not found"]]
    run_mod.tell_slurm({}, "t", "x", run=lambda argv, **kw: calls.append(argv))
    run_mod.tell_slurm({"SLURM_JOB_ID": "1;rm"}, "t", "x",
                       run=lambda argv, **kw: calls.append(argv))
    assert len(calls) == 1  # outside a job, or a job id that is no number: nothing
    assert len(run_mod.failure_comment("t", "x" * 1000)) == run_mod.COMMENT_MAX


def config(tmp_path: Path, **kw: object) -> object:
    values = dict(store=str(tmp_path / "store"), jobs_dir=str(tmp_path / "jobs"),
                  runtime_dir=str(tmp_path / "run"), repository="ctl:5000/course-ops/course",
                  image_file=str(tmp_path / "course-image"), pairs_dir=str(tmp_path / "pairs"),
                  node_has_gpus=False, cdi_spec="/etc/cdi/nvidia.yaml")
    values.update(kw)
    return run_mod.Config(**values)


def job(tmp_path: Path, cwd: str | None = None, groups: tuple[str, ...] = ("s1", "pair001",
                                                                             "course")) -> object:
    home = tmp_path / "home" / "s1"
    home.mkdir(parents=True, exist_ok=True)
    return run_mod.Job("42", "batch", os.getuid() or 20001, os.getgid() or 20001, "s1",
                       str(home), list(groups), cwd or str(home / "hw1"))


def test_the_container_gets_home_pair_dir_and_cwd_at_the_same_paths(tmp_path: Path) -> None:
    (tmp_path / "pairs" / "pair001").mkdir(parents=True)
    (tmp_path / "pairs" / "course").mkdir()  # the course group has no dir of its own...
    cfg, j = config(tmp_path), job(tmp_path, cwd="/scratch/s1/run")
    binds, workdir = run_mod.mounts(cfg, j)
    home, pair = j.home, str(tmp_path / "pairs" / "pair001")
    assert binds == [f"{home}:{home}", f"{pair}:{pair}",
                     str(tmp_path / "pairs" / "course") + ":" +
                     str(tmp_path / "pairs" / "course"), "/scratch/s1/run:/scratch/s1/run"]
    assert workdir == "/scratch/s1/run"


def test_a_cwd_inside_the_home_is_not_mounted_twice(tmp_path: Path) -> None:
    cfg, j = config(tmp_path), job(tmp_path)
    binds, workdir = run_mod.mounts(cfg, j)
    assert binds == [f"{j.home}:{j.home}"] and workdir == f"{j.home}/hw1"


def test_a_system_cwd_is_never_mounted_over_the_image(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg, j = config(tmp_path), job(tmp_path, cwd="/etc/ssh")
    binds, workdir = run_mod.mounts(cfg, j)
    assert binds == [f"{j.home}:{j.home}"] and workdir == j.home
    assert "system directory" in capsys.readouterr().err


def podman(tmp_path: Path, **kw: object) -> list[str]:
    cfg, j = config(tmp_path), job(tmp_path)
    return run_mod.podman_argv(cfg, j, "ctl:5000/course-ops/course:t1", ["python", "x.py"],
                               storage=tmp_path / "jobs" / "42", runtime=tmp_path / "run" / "42",
                               devices=kw.pop("devices", []), tty=kw.pop("tty", False))


def test_podman_keeps_the_container_inside_the_job(tmp_path: Path) -> None:
    argv = podman(tmp_path)
    assert argv[0] == "/usr/bin/podman"
    assert argv[argv.index("--root") + 1] == str(tmp_path / "jobs" / "42" / "storage")
    assert argv[argv.index("--runroot") + 1] == str(tmp_path / "run" / "42" / "storage")
    assert argv[argv.index("--cgroup-manager") + 1] == "cgroupfs"
    run = argv[argv.index("run"):]
    for flag in ("--cgroups=disabled", "--userns=keep-id", "--network=host", "--rm",
                 "--pull=never", "--cap-drop=all"):
        assert flag in run, flag
    assert run[run.index("--group-add") + 1] == "keep-groups"
    assert run[run.index("--security-opt") + 1] == "no-new-privileges"
    assert "--cap-add" not in run and "--privileged" not in run
    assert run[-3:] == ["ctl:5000/course-ops/course:t1", "python", "x.py"]


def test_podman_passes_the_job_environment(tmp_path: Path) -> None:
    argv = podman(tmp_path)
    envs = [argv[i + 1] for i, a in enumerate(argv) if a == "--env"]
    assert {"SLURM_*", "CUDA_VISIBLE_DEVICES", "JUPYTERHUB_*"} <= set(envs)
    assert f"HOME={tmp_path / 'home' / 's1'}" in envs


def test_podman_batch_output_goes_straight_to_the_job_output(tmp_path: Path) -> None:
    argv = podman(tmp_path)
    assert argv[argv.index("--log-driver") + 1] == "passthrough"
    assert "--tty" not in argv


def test_podman_with_a_terminal(tmp_path: Path) -> None:
    argv = podman(tmp_path, tty=True)
    assert "--tty" in argv and "--interactive" in argv
    assert argv[argv.index("--log-driver") + 1] == "none"


def test_podman_gets_the_selected_gpus_only(tmp_path: Path) -> None:
    argv = podman(tmp_path, devices=[f"nvidia.com/gpu={UUID[0]}"])
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--device"] == \
        [f"nvidia.com/gpu={UUID[0]}"]


def test_job_directories_must_be_the_students_alone(tmp_path: Path) -> None:
    cfg, j = config(tmp_path), job(tmp_path)
    with pytest.raises(run_mod.RunError, match="the Slurm prolog did not prepare"):
        run_mod.job_paths(cfg, j)
    for d in (tmp_path / "jobs" / "42", tmp_path / "run" / "42"):
        d.mkdir(parents=True)
        d.chmod(0o755)
    with pytest.raises(run_mod.RunError, match="not yours alone"):
        run_mod.job_paths(cfg, j)
    for d in (tmp_path / "jobs" / "42", tmp_path / "run" / "42"):
        d.chmod(0o700)
    if os.getuid() == j.uid:
        assert run_mod.job_paths(cfg, j) == (tmp_path / "jobs" / "42", tmp_path / "run" / "42")


def test_the_default_image_file(tmp_path: Path) -> None:
    f = tmp_path / "course-image"
    f.write_text("# comment\ntag=torch2.13.0-cpu-py3.11-abc\nvariant=cpu\ndigest=sha256:1\n")
    assert run_mod.read_image_file(str(f)) == {"tag": "torch2.13.0-cpu-py3.11-abc",
                                               "variant": "cpu", "digest": "sha256:1"}
    assert run_mod.read_image_file(str(tmp_path / "none")) == {}
