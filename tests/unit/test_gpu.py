from __future__ import annotations

from pathlib import Path

import pytest

from ops import gpu

HEADER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |
"""


def test_table_is_ordered_and_complete() -> None:
    versions = sorted(gpu.MIN_DRIVER, key=gpu.version_tuple)
    drivers = [gpu.version_tuple(gpu.MIN_DRIVER[v]) for v in versions]
    assert drivers == sorted(drivers)  # a newer CUDA never needs an older driver
    for v in ("11.8", "12.1", "12.4", "12.6", "12.8", "13.0"):  # torch wheel builds
        assert v in gpu.MIN_DRIVER


@pytest.mark.parametrize("driver, cuda, ok", [
    ("580.159.04", "13.0", True),   # the reference GPU server
    ("580.65.06", "13.0", True),
    ("575.57.08", "13.0", False),
    ("535.104.05", "12.8", False),
    ("570.26", "12.8", True),
    ("570.124.06", "12.8.1", True),
    ("525.60.13", "12.0", True),
])
def test_driver_runs(driver: str, cuda: str, ok: bool) -> None:
    assert gpu.driver_runs(driver, cuda) is ok


def test_minor_version_compatibility_floor() -> None:
    assert gpu.driver_runs("535.104.05", "12.8", minor_compat=True)
    assert not gpu.driver_runs("520.61.05", "12.8", minor_compat=True)


def test_unknown_cuda_is_an_error() -> None:
    with pytest.raises(KeyError):
        gpu.min_driver("9.9")
    with pytest.raises(ValueError):
        gpu.version_tuple("580.x")


def test_parsers_on_the_reference_server() -> None:
    facts = Path(__file__).resolve().parents[3] / "shared" / "reference" / "gpu-server-facts.txt"
    text = facts.read_text() if facts.is_file() else HEADER
    assert gpu.driver_cuda_version(text) == "13.0"
    assert gpu.nvcc_release("Cuda compilation tools, release 13.0, V13.0.88") == "13.0"
    assert gpu.driver_cuda_version("no driver here") is None
