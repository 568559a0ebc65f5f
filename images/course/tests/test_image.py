"""The course image's smoke tests, run inside the image by `ops images test`.

They read what to expect from /opt/course-ops/image.json (written by the build). The
same file runs on any machine with its own Python and torch (a GPU server, say):
    COURSE_EXPECT_GPU=1 python -m pytest images/course/tests -k "torch or cuda"
Without image.json, the import and user checks that need it are skipped.

COURSE_EXPECT_GPU=1 says a GPU was given to the container: torch.cuda must then work.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

IMAGE_JSON = Path(os.environ.get("COURSE_IMAGE_JSON", "/opt/course-ops/image.json"))
EXPECT = json.loads(IMAGE_JSON.read_text()) if IMAGE_JSON.exists() else None
EXPECT_GPU = os.environ.get("COURSE_EXPECT_GPU") == "1"
in_image = pytest.mark.skipif(EXPECT is None, reason=f"no {IMAGE_JSON}: not in the image")


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
