"""GPU facts that must agree everywhere, kept as data in one place.

``MIN_DRIVER`` is NVIDIA's published table "CUDA Toolkit and Corresponding Driver Versions"
(Linux x86_64, the driver shipped with each toolkit's GA release): a host whose driver is at
least this version runs that CUDA version without relying on minor-version compatibility.
``MINOR_COMPAT`` is the floor NVIDIA documents for minor-version compatibility per major.
"""

from __future__ import annotations

import re

MIN_DRIVER: dict[str, str] = {
    "11.0": "450.51.05",
    "11.1": "455.23",
    "11.2": "460.27.03",
    "11.3": "465.19.01",
    "11.4": "470.42.01",
    "11.5": "495.29.05",
    "11.6": "510.39.01",
    "11.7": "515.43.04",
    "11.8": "520.61.05",
    "12.0": "525.60.13",
    "12.1": "530.30.02",
    "12.2": "535.54.03",
    "12.3": "545.23.06",
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
    "13.1": "590.44.01",
}
MINOR_COMPAT: dict[str, str] = {"11": "450.80.02", "12": "525.60.13", "13": "580.65.06"}


def version_tuple(v: str) -> tuple[int, ...]:
    if not re.fullmatch(r"\d+(\.\d+)*", v.strip()):
        raise ValueError(f"not a version: {v!r}")
    return tuple(int(p) for p in v.strip().split("."))


def min_driver(cuda: str, *, minor_compat: bool = False) -> str:
    """The oldest driver that runs CUDA ``cuda`` ("12.8"); KeyError for an unknown one."""
    major_minor = ".".join(cuda.split(".")[:2])
    table, key = (MINOR_COMPAT, major_minor.split(".")[0]) if minor_compat \
        else (MIN_DRIVER, major_minor)
    if key not in table:
        raise KeyError(f"CUDA {cuda} is not in NVIDIA's minimum-driver table of ops/gpu.py; "
                       "add its row from NVIDIA's release notes")
    return table[key]


def driver_runs(driver: str, cuda: str, *, minor_compat: bool = False) -> bool:
    return version_tuple(driver) >= version_tuple(min_driver(cuda, minor_compat=minor_compat))


def driver_cuda_version(nvidia_smi_output: str) -> str | None:
    """The "CUDA Version: 13.0" of nvidia-smi's header: the newest CUDA the driver runs."""
    m = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", nvidia_smi_output)
    return m.group(1) if m else None


def nvcc_release(nvcc_output: str) -> str | None:
    m = re.search(r"release ([0-9]+\.[0-9]+)", nvcc_output)
    return m.group(1) if m else None
