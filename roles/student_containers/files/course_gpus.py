"""Which GPUs a Slurm job's container gets: the CDI names of the job's own GPUs, by UUID.

Slurm names a job's GPUs by the number of their device file (gres.conf's
``File=/dev/nvidiaN``): ``SLURM_STEP_GPUS`` inside an ``srun`` step, ``SLURM_JOB_GPUS`` in
the batch step. That number is the GPU's *minor number*, which ``nvidia-smi -q`` prints
beside its UUID; NVML's index (nvidia-smi's ``GPU 0``, ``GPU 1``, ...) follows the PCI bus
order and can differ from it, so an index is never used. The CDI spec
(``nvidia-ctk cdi generate --device-name-strategy=uuid``) names each GPU by its UUID.
``nvidia.com/gpu=all`` is never asked for.

Standard library only: installed on the GPU servers beside ``course-run``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

CDI_KIND = "nvidia.com/gpu"
_FIELD = re.compile(r"^(?P<indent> *)(?P<key>[^:]+?)\s*:\s*(?P<value>.*)$")


class SelectionError(Exception):
    """The job's GPUs cannot be given to its container; the message says why."""


@dataclass(frozen=True)
class Gpu:
    """One GPU of ``nvidia-smi -q``."""

    bus_id: str
    uuid: str | None
    minor: int | None
    #: Position in nvidia-smi's output: NVML's index.
    index: int


def parse_nvidia_smi_q(text: str) -> list[Gpu]:
    """The GPUs of ``nvidia-smi -q``'s output, in its order (NVML's index)."""
    gpus: list[Gpu] = []
    bus: str | None = None
    fields: dict[str, str] = {}

    def close() -> None:
        if bus is None:
            return
        minor = fields.get("Minor Number", "")
        uuid = fields.get("GPU UUID", "")
        gpus.append(Gpu(
            bus_id=bus,
            uuid=uuid if uuid.startswith(("GPU-", "MIG-")) else None,
            minor=int(minor) if minor.isdigit() else None,
            index=len(gpus),
        ))

    for line in text.splitlines():
        header = re.match(r"^GPU ([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])\s*$",
                          line)
        if header:
            close()
            bus, fields = header.group(1), {}
            continue
        m = _FIELD.match(line)
        # a GPU's own fields are indented by 4; deeper ones belong to sections
        if bus is not None and m and len(m.group("indent")) == 4:
            fields.setdefault(m.group("key").strip(), m.group("value").strip())
    close()
    return gpus


def job_gpu_numbers(env: Mapping[str, str]) -> list[int]:
    """The device numbers (``/dev/nvidiaN``) of the GPUs Slurm gave this step or job."""
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        value = env.get(name)
        if value is None:
            continue
        numbers: list[int] = []
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            if re.fullmatch(r"\d+-\d+", part):
                first, last = (int(x) for x in part.split("-"))
                numbers += range(first, last + 1)
            elif part.isdigit():
                numbers.append(int(part))
            else:
                raise SelectionError(f"{name}={value!r}: not a list of GPU numbers")
        return sorted(set(numbers))
    return []


def cdi_device_names(spec_text: str) -> set[str]:
    """The names of the ``nvidia.com/gpu`` devices in a CDI spec (YAML or JSON)."""
    stripped = spec_text.lstrip()
    if stripped.startswith("{"):
        data = json.loads(stripped)
        if data.get("kind") != CDI_KIND:
            return set()
        return {str(d.get("name")) for d in data.get("devices") or [] if d.get("name")}
    if not re.search(rf"^kind:\s*['\"]?{re.escape(CDI_KIND)}['\"]?\s*$", spec_text, re.M):
        return set()
    names: set[str] = set()
    in_devices = False
    for line in spec_text.splitlines():
        if re.match(r"^devices:\s*$", line):
            in_devices = True
            continue
        if in_devices and re.match(r"^[A-Za-z_]", line):
            in_devices = False  # the next top-level key
        # a device's own name: a list item's key, indented 2 (nvidia-ctk sorts the keys,
        # so `containerEdits` comes first) or right after the dash
        m = re.match(r"^(?:- |  )name:\s*['\"]?([^'\"\s]+)['\"]?\s*$", line)
        if in_devices and m:
            names.add(m.group(1))
    return names


def select(numbers: Iterable[int], gpus: list[Gpu], *, node_has_gpus: bool,
           cdi_names: set[str] | None, cdi_spec: str = "the CDI spec") -> list[str]:
    """``--device`` values for the job's GPUs: ``nvidia.com/gpu=<UUID>`` each.

    ``node_has_gpus``: the inventory (or detection) says this node has NVIDIA GPUs; where
    it has none (the lab's placeholder device files) no device is passed. ``cdi_names``:
    the device names the CDI spec defines, None when there is no spec (an error on a node
    with GPUs: never a silent CPU run).
    """
    wanted = sorted(set(numbers))
    if not node_has_gpus or not wanted:
        return []
    if cdi_names is None:
        raise SelectionError(f"this node has NVIDIA GPUs but no CDI spec ({cdi_spec}); "
                             "staff: run `ops provision`")
    by_minor = {g.minor: g for g in gpus if g.minor is not None}
    devices = []
    for number in wanted:
        gpu = by_minor.get(number)
        if gpu is None:
            seen = ", ".join(str(m) for m in sorted(by_minor)) or "none"
            raise SelectionError(f"Slurm gave this job GPU {number} (/dev/nvidia{number}) but "
                                 f"nvidia-smi shows no GPU with that minor number (it shows: "
                                 f"{seen})")
        if gpu.uuid is None:
            raise SelectionError(f"nvidia-smi -q shows no UUID for GPU {gpu.bus_id}")
        if gpu.uuid not in cdi_names:
            raise SelectionError(f"{cdi_spec} has no device {gpu.uuid} (GPU {number}); "
                                 "staff: regenerate it with `ops provision`")
        devices.append(f"{CDI_KIND}={gpu.uuid}")
    assert all(not d.endswith("=all") for d in devices)
    return devices
