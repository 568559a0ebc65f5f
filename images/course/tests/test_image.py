"""The course image's smoke tests, run inside the image by `ops images test`.

They read what to expect from /opt/course-ops/image.json (written by the build). The
same file runs on any machine with its own Python and torch (a GPU server, say):
    COURSE_EXPECT_GPU=1 python -m pytest images/course/tests -k "torch or cuda or kernel"
Without image.json, the checks of the image's own contents are skipped, and a kernel
compiler that machine lacks (numba, Triton, ninja) skips its test; in the image, all
of them must be there.

COURSE_EXPECT_GPU=1 says a GPU was given to the container: torch.cuda, the Triton and
the numba CUDA kernels must then work; without it the GPU tests skip, saying so.
COURSE_IMAGE_TAG (set by `ops images test`) is the tag the container was started from.
"""

from __future__ import annotations

import http.server
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

IMAGE_JSON = Path(os.environ.get("COURSE_IMAGE_JSON", "/opt/course-ops/image.json"))
EXPECT = json.loads(IMAGE_JSON.read_text()) if IMAGE_JSON.exists() else None
EXPECT_GPU = os.environ.get("COURSE_EXPECT_GPU") == "1"
in_image = pytest.mark.skipif(EXPECT is None, reason=f"no {IMAGE_JSON}: not in the image")
TAG_RE = re.compile(r"torch[0-9.]+-(cpu|cu[0-9.]+)-py[0-9.]+-[0-9a-f]{12}")


def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool; a failure shows its output."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600,
                          **kw)
    assert done.returncode == 0, f"{argv[0]} exited {done.returncode}:\n" \
        f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


def needed(module: str) -> ModuleType:
    """A module the image must have (in the image), or may lack (elsewhere: skip)."""
    if EXPECT is not None:
        return importlib.import_module(module)
    return pytest.importorskip(module)


def gpu_torch() -> ModuleType:
    """torch with a usable GPU; skips only where no GPU is given, fails where one is."""
    torch = pytest.importorskip("torch")
    if not EXPECT_GPU:
        pytest.skip("no GPU given (COURSE_EXPECT_GPU is not 1)")
    assert torch.cuda.is_available(), "a GPU was given but torch.cuda is not available"
    return torch


@in_image
@pytest.mark.parametrize("module", (EXPECT or {}).get("imports", []))
def test_import(module: str) -> None:
    importlib.import_module(module)


def test_torch_matmul_matches_numpy() -> None:
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 32)), rng.standard_normal((32, 16))
    got = (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()
    assert np.allclose(got, a @ b, rtol=1e-10, atol=1e-10)


@in_image
def test_torch_is_the_locked_build() -> None:
    torch = pytest.importorskip("torch")
    got, want = torch.__version__, EXPECT["torch"]
    # PyPI's CUDA build says 2.14.1+cu130 of itself but is locked as 2.14.1; a locked
    # local label (2.13.0+cpu) must match exactly
    assert got.split("+")[0] == want.split("+")[0]
    if "+" in want:
        assert got == want
    if EXPECT["cuda"]:
        assert torch.version.cuda is not None
        assert torch.version.cuda.startswith(str(EXPECT["cuda_version"]))
    else:
        assert torch.version.cuda is None


def test_cuda_usable_when_a_gpu_is_given() -> None:
    torch = pytest.importorskip("torch")
    if not EXPECT_GPU:
        pytest.skip("no GPU given (COURSE_EXPECT_GPU is not 1)")
    assert torch.cuda.is_available(), "a GPU was given but torch.cuda is not available"
    assert torch.cuda.device_count() >= 1
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(512, 256, dtype=torch.float64, generator=gen)
    b = torch.randn(256, 128, dtype=torch.float64, generator=gen)
    on_gpu = (a.cuda() @ b.cuda()).cpu()
    assert torch.allclose(on_gpu, a @ b, rtol=1e-9, atol=1e-9)
    x = torch.ones(1 << 20, device="cuda")
    assert float(x.sum()) == float(1 << 20)
    print(f"cuda ok: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}")


@in_image
def test_pip_check_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@in_image
def test_default_user_is_not_root() -> None:
    assert os.getuid() != 0
    assert os.getuid() == EXPECT["uid"]


@in_image
def test_home_is_writable() -> None:
    probe = Path.home() / ".course-ops-probe"
    probe.write_text("ok")
    probe.unlink()


# --------------------------------------------------------------------------- identity


@in_image
def test_image_json_records_the_image_tag() -> None:
    """A job proves which image it runs by reading /opt/course-ops/image.json."""
    tag = EXPECT.get("tag")
    assert isinstance(tag, str) and TAG_RE.fullmatch(tag), f"image.json tag: {tag!r}"
    assert tag.split("-")[1] == ("cpu" if not EXPECT["cuda"] else f"cu{EXPECT['cuda_version']}")
    started_from = os.environ.get("COURSE_IMAGE_TAG")
    if started_from is not None:  # `ops images test` says which tag it started
        assert tag == started_from


# --------------------------------------------------------------------------- homework tools


@in_image
def test_nbmerge_merges_notebooks_in_order(tmp_path: Path) -> None:
    nbformat = importlib.import_module("nbformat")
    for i, text in enumerate(["# Part 1", "# Part 2"]):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text),
                                             nbformat.v4.new_code_cell(f"x = {i}")])
        nbformat.write(nb, tmp_path / f"part{i}.ipynb")
    run(["nbmerge", "part0.ipynb", "part1.ipynb", "-o", "merged.ipynb"], cwd=tmp_path)
    merged = nbformat.read(tmp_path / "merged.ipynb", as_version=4)
    nbformat.validate(merged)
    assert [c.source for c in merged.cells] == ["# Part 1", "x = 0", "# Part 2", "x = 1"]


@in_image
def test_pytest_xdist_runs_tests_in_worker_processes(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(
        "import os\n"
        "def test_a():\n    assert os.environ.get('PYTEST_XDIST_WORKER')\n"
        "def test_b():\n    assert os.environ.get('PYTEST_XDIST_WORKER')\n")
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
                str(tmp_path)], cwd=tmp_path)
    assert "2 passed" in done.stdout


@in_image
def test_xvfb_run_gives_a_display_that_answers() -> None:
    probe = ("import os, socket; d = os.environ['DISPLAY']; "
             "n = d.split(':')[1].split('.')[0]; s = socket.socket(socket.AF_UNIX); "
             "s.connect(f'/tmp/.X11-unix/X{n}'); print('display', d)")
    done = run(["xvfb-run", "-a", sys.executable, "-c", probe])
    assert re.search(r"^display :\d+", done.stdout, re.M), done.stdout


@in_image
def test_ffmpeg_encodes_an_h264_video(tmp_path: Path) -> None:
    clip = tmp_path / "episode.mp4"
    run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc=size=64x64:rate=10", "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         str(clip)])
    probe = run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                 "-show_entries", "stream=codec_name,nb_read_frames", "-of", "json",
                 str(clip)])
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream["codec_name"] == "h264"
    assert int(stream["nb_read_frames"]) == 10


@in_image
def test_swig_wraps_c_into_an_importable_module(tmp_path: Path) -> None:
    (tmp_path / "probe.i").write_text(
        "%module probe\n%inline %{\nint twice(int x) { return 2 * x; }\n%}\n")
    run(["swig", "-python", "probe.i"], cwd=tmp_path)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    run(["cc", "-shared", "-fPIC", "-O1", f"-I{sysconfig.get_paths()['include']}",
         "probe_wrap.c", "-o", f"_probe{suffix}"], cwd=tmp_path)
    done = run([sys.executable, "-c", "import probe; print(probe.twice(21))"], cwd=tmp_path)
    assert done.stdout.strip() == "42"


@in_image
def test_torchviz_draws_the_autograd_graph_with_dot() -> None:
    torch = importlib.import_module("torch")
    make_dot = importlib.import_module("torchviz").make_dot
    x = torch.randn(3, requires_grad=True)
    svg = make_dot((x * 2).sum(), params={"x": x}).pipe(format="svg").decode()
    assert "<svg" in svg and "MulBackward0" in svg and "SumBackward0" in svg


@in_image
def test_the_hub_side_is_the_pinned_jupyterhub_with_batchspawner() -> None:
    from importlib.metadata import version

    assert EXPECT["jupyterhub"], "image.json names no jupyterhub version"
    assert version("jupyterhub") == EXPECT["jupyterhub"]
    assert version("batchspawner")
    for tool in ("jupyterhub-singleuser", "batchspawner-singleuser"):
        assert shutil.which(tool), f"{tool} is not on PATH"
    done = run(["jupyterhub-singleuser", "--version"])
    assert done.stdout.strip() == EXPECT["jupyterhub"]


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """The two hub API calls a single-user server makes at start: batchspawner's port
    report and JupyterHub's version check."""

    ports: ClassVar[list[int]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or "{}")
        if self.path.rstrip("/").endswith("/hub/api/batchspawner"):
            assert self.headers["Authorization"] == "token course-ops-probe"
            self.ports.append(int(body["port"]))
        self._reply()

    def do_GET(self) -> None:  # noqa: N802
        self._reply()

    def _reply(self) -> None:
        payload = json.dumps({"version": EXPECT["jupyterhub"]}).encode()
        self.send_response(200)
        self.send_header("X-JupyterHub-Version", EXPECT["jupyterhub"])
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@in_image
def test_batchspawner_singleuser_reports_its_port_and_serves_there(tmp_path: Path) -> None:
    """What a Slurm job of the hub runs: batchspawner's wrapper picks a free port, tells
    the hub (its API), and starts the pinned jupyterhub-singleuser on that port."""
    hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    prefix = "/user/student/"
    env = {**os.environ, "JUPYTERHUB_API_TOKEN": "course-ops-probe",
           "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub.server_address[1]}/hub/api",
           "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-student", "JUPYTERHUB_USER": "student",
           "JUPYTERHUB_SERVICE_PREFIX": prefix, "JUPYTERHUB_BASE_URL": "/",
           "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:0{prefix}",
           "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback", "JUPYTERHUB_HOST": ""}
    log = (tmp_path / "singleuser.log").open("w")
    server = subprocess.Popen(["batchspawner-singleuser", "jupyterhub-singleuser"], env=env,
                              cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        answer = None
        while time.monotonic() < deadline and server.poll() is None and answer is None:
            time.sleep(1)
            if not _FakeHub.ports:
                continue
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{_FakeHub.ports[-1]}{prefix}api", timeout=5) as r:
                    answer = json.loads(r.read())
            except OSError:
                continue
        assert _FakeHub.ports, "batchspawner-singleuser reported no port to the hub"
        assert answer is not None, (tmp_path / "singleuser.log").read_text()[-3000:]
        assert "version" in answer  # jupyter_server's API, under the hub's prefix
    finally:
        server.terminate()
        server.wait(timeout=30)
        hub.shutdown()
        log.close()


# --------------------------------------------------------------------------- custom kernels

SAXPY_CPP = r"""
#include <torch/extension.h>

torch::Tensor saxpy(torch::Tensor x, torch::Tensor y, double a) {
  TORCH_CHECK(x.sizes() == y.sizes(), "x and y differ in shape");
  TORCH_CHECK(x.scalar_type() == torch::kFloat && y.scalar_type() == torch::kFloat,
              "float32 only");
  auto xs = x.contiguous();
  auto ys = y.contiguous();
  auto out = torch::empty_like(xs);
  const float* px = xs.data_ptr<float>();
  const float* py = ys.data_ptr<float>();
  float* po = out.data_ptr<float>();
  for (int64_t i = 0; i < xs.numel(); ++i) {
    po[i] = static_cast<float>(a) * px[i] + py[i];
  }
  return out;
}
"""


def test_kernel_a_torch_cpp_extension_compiles_and_runs_on_the_cpu(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if EXPECT is None and not (shutil.which("ninja") and shutil.which("c++")):
        pytest.skip("not in the image, and this machine has no ninja or c++")
    from torch.utils.cpp_extension import load_inline

    ext = load_inline(name="course_saxpy", cpp_sources=[SAXPY_CPP], functions=["saxpy"],
                      extra_cflags=["-O2"], build_directory=str(tmp_path), verbose=False)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10_000, generator=gen)
    y = torch.randn(10_000, generator=gen)
    assert torch.allclose(ext.saxpy(x, y, 2.5), 2.5 * x + y, rtol=1e-6, atol=1e-6)
    with pytest.raises(RuntimeError, match="differ in shape"):
        ext.saxpy(x, y[:10], 1.0)


def test_kernel_triton_on_the_gpu() -> None:
    torch = gpu_torch()
    triton = needed("triton")
    tl = importlib.import_module("triton.language")

    @triton.jit
    def add_scaled(x_ptr, y_ptr, out_ptr, n, a, BLOCK: tl.constexpr):  # noqa: N803
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        x = tl.load(x_ptr + offsets, mask=mask)
        y = tl.load(y_ptr + offsets, mask=mask)
        tl.store(out_ptr + offsets, a * x + y, mask=mask)

    n = 98_765  # not a multiple of the block: the mask matters
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(n, device="cuda", generator=gen)
    y = torch.randn(n, device="cuda", generator=gen)
    out = torch.empty_like(x)
    add_scaled[(triton.cdiv(n, 1024),)](x, y, out, n, 3.0, BLOCK=1024)
    torch.cuda.synchronize()
    assert torch.allclose(out, 3.0 * x + y, rtol=1e-6, atol=1e-6)
    print(f"triton ok: {triton.__version__} on {torch.cuda.get_device_name(0)}")


def test_kernel_numba_cuda_on_the_gpu() -> None:
    torch = gpu_torch()
    cuda = needed("numba.cuda")
    np = importlib.import_module("numpy")

    @cuda.jit
    def scale_add(x, y, out, a):
        i = cuda.grid(1)
        if i < x.size:
            out[i] = a * x[i] + y[i]

    assert cuda.is_available(), "a GPU was given but numba.cuda sees none"
    n = 50_001
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(np.float32)
    y = torch.from_numpy(rng.standard_normal(n).astype(np.float32)).cuda()
    out = cuda.device_array(n, dtype=np.float32)
    threads = 256
    # numba reads torch's GPU tensor in place (__cuda_array_interface__)
    scale_add[(n + threads - 1) // threads, threads](cuda.to_device(x), cuda.as_cuda_array(y),
                                                      out, np.float32(2.0))
    got = out.copy_to_host()
    assert np.allclose(got, 2.0 * x + y.cpu().numpy(), rtol=1e-6, atol=1e-6)
    print(f"numba cuda ok: {cuda.get_current_device().name}")
