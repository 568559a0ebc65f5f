"""GPU servers: driver, CUDA, compatibility and a real computation (`ops verify gpu`).

Every GPU check needs a GPU, found by PCI vendor 0x10de or a working nvidia-smi, never by
the binary's presence. Without one it is skipped with "no NVIDIA GPU on host" only where
the inventory expects none (``gpu_count: 0``, or ``--expect-gpus 0``); where it expects
some, a host without them FAILS. The checks that need no GPU (nouveau, an installed
toolkit's version) always run.
"""

from __future__ import annotations

import base64
import shlex

import pytest

from ops import gpu as gpu_data

NO_GPU = "no NVIDIA GPU on host (the inventory expects none)"
QUERY = ("name,driver_version,persistence_mode,ecc.mode.current,"
         "ecc.errors.uncorrected.volatile.total")


PCI_GPUS = ("for d in /sys/bus/pci/devices/*; do [ \"$(cat $d/vendor)\" = 0x10de ] && "
            "case \"$(cat $d/class)\" in 0x03*) echo $d;; esac; done 2>/dev/null; true")


def has_gpu(host) -> bool:  # noqa: ANN001
    """An NVIDIA display/3D controller on the PCI bus, or a working nvidia-smi."""
    if host.run(f"sh -c {shlex.quote(PCI_GPUS)}").stdout.strip():
        return True
    # `|| exit 1`: nvidia-smi exits 255 on some failures ("Failed to initialize NVML"),
    # which testinfra's SSH backend takes for a lost connection
    smi = host.run("sh -c 'nvidia-smi -L || exit 1'")
    return smi.rc == 0 and "GPU 0:" in smi.stdout


def require_gpu(host, expected_gpus: int) -> None:  # noqa: ANN001
    """Return when the host has a GPU; skip where the inventory expects none; fail where
    it expects some (a check that passes having checked nothing is worse than none)."""
    if has_gpu(host):
        return
    if expected_gpus > 0:
        pytest.fail(f"the inventory expects {expected_gpus} GPU(s) here, nvidia-smi found none")
    pytest.skip(NO_GPU)


@pytest.fixture(scope="module")
def gpu(host, expected_gpus):  # noqa: ANN001, ANN201
    require_gpu(host, expected_gpus)
    return host


@pytest.fixture(scope="module")
def gpus(gpu) -> list[dict[str, str]]:  # noqa: ANN001
    out = gpu.check_output(f"nvidia-smi --query-gpu={QUERY} --format=csv,noheader")
    keys = QUERY.split(",")
    return [dict(zip(keys, (f.strip() for f in line.split(",")), strict=True))
            for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def smi_header(gpu) -> str:  # noqa: ANN001
    return gpu.check_output("nvidia-smi")


def test_nvidia_smi_lists_the_expected_gpus(gpu, gpus, expected_gpus) -> None:  # noqa: ANN001
    want = max(expected_gpus, 1)
    assert len(gpus) >= want, f"nvidia-smi lists {len(gpus)} GPU(s), the inventory wants {want}"


def test_driver_is_recent_enough(gpus, host_vars) -> None:  # noqa: ANN001
    minimum = str(host_vars.get("nvidia_driver_min_version", "0"))
    for g in gpus:
        assert gpu_data.version_tuple(g["driver_version"]) >= gpu_data.version_tuple(minimum)


@pytest.mark.parametrize("node", ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"])
def test_device_nodes(gpu, node: str) -> None:  # noqa: ANN001
    assert gpu.file(node).exists
    assert gpu.check_output(f"stat -c %F {node}") == "character special file"


def test_persistence_mode_is_on(gpus) -> None:  # noqa: ANN001
    assert {g["persistence_mode"] for g in gpus} == {"Enabled"}


def test_ecc_reported_without_uncorrectable_errors(gpus) -> None:  # noqa: ANN001
    with_ecc = [g for g in gpus if g["ecc.mode.current"] not in ("[N/A]", "N/A",
                                                                   "[Not Supported]")]
    if not with_ecc:
        pytest.skip("no GPU on this host has ECC memory")
    for g in with_ecc:
        assert g["ecc.mode.current"] in ("Enabled", "Disabled"), g
        if g["ecc.mode.current"] == "Enabled":
            assert g["ecc.errors.uncorrected.volatile.total"] == "0", g


def test_nouveau_is_not_loaded(host) -> None:  # noqa: ANN001
    assert not host.file("/sys/module/nouveau").exists  # every loaded module is there


def _nvcc(host, version: str) -> str | None:  # noqa: ANN001
    for path in (f"/usr/local/cuda-{version}/bin/nvcc", "/usr/local/cuda/bin/nvcc"):
        if host.file(path).exists:
            return path
    found = host.run("command -v nvcc")
    return found.stdout.strip() if found.rc == 0 else None


def test_cuda_toolkit_or_driver_cuda(host, host_vars, expected_gpus) -> None:  # noqa: ANN001
    want = str(host_vars.get("cuda_toolkit_version", ""))
    nvcc = _nvcc(host, want)
    if nvcc:
        release = gpu_data.nvcc_release(host.check_output(f"{nvcc} --version"))
        assert release == want, f"{nvcc} is CUDA {release}, the inventory wants {want}"
        return
    require_gpu(host, expected_gpus)
    image_cuda = str(host_vars["course_image_cuda"])
    driver_cuda = gpu_data.driver_cuda_version(host.check_output("nvidia-smi"))
    assert driver_cuda is not None
    assert gpu_data.version_tuple(driver_cuda) >= gpu_data.version_tuple(image_cuda)


def test_driver_runs_the_course_image_cuda(gpus, host_vars) -> None:  # noqa: ANN001
    image_cuda = str(host_vars["course_image_cuda"])
    need = gpu_data.min_driver(image_cuda)
    for g in gpus:
        assert gpu_data.driver_runs(g["driver_version"], image_cuda), \
            f"driver {g['driver_version']} is older than {need}, needed by CUDA {image_cuda}"


MATMUL = """
import torch
assert torch.cuda.is_available(), "torch sees no GPU"
g = torch.Generator().manual_seed(0)
a = torch.randn(512, 512, generator=g, dtype=torch.float64)
b = torch.randn(512, 512, generator=g, dtype=torch.float64)
c = (a.cuda() @ b.cuda()).cpu()
err = (c - a @ b).abs().max().item()
print(f"{torch.cuda.get_device_name(0)} max_abs_err={err:.3e}")
assert err < 1e-9, err
"""

CUDA_C = r"""
#include <cstdio>
__global__ void mm(const double*a,const double*b,double*c,int n){
  int i=blockIdx.y*blockDim.y+threadIdx.y, j=blockIdx.x*blockDim.x+threadIdx.x;
  if(i<n&&j<n){double s=0;for(int k=0;k<n;k++)s+=a[i*n+k]*b[k*n+j];c[i*n+j]=s;}}
int main(){const int n=128;size_t sz=n*n*sizeof(double);double*a,*b,*c;
  if(cudaMallocManaged(&a,sz)||cudaMallocManaged(&b,sz)||cudaMallocManaged(&c,sz)){
    printf("no CUDA device memory\n");return 3;}
  for(int i=0;i<n*n;i++){a[i]=(i%7)-3;b[i]=(i%5)-2;}
  dim3 t(16,16),g(n/16,n/16);mm<<<g,t>>>(a,b,c,n);
  if(cudaDeviceSynchronize()!=cudaSuccess){printf("launch failed\n");return 2;}
  double maxerr=0;for(int i=0;i<n;i++)for(int j=0;j<n;j++){double s=0;
  for(int k=0;k<n;k++)s+=a[i*n+k]*b[k*n+j];double e=s-c[i*n+j];if(e<0)e=-e;if(e>maxerr)maxerr=e;}
  printf("max_abs_err=%g\n",maxerr);return maxerr==0?0:1;}
"""


def test_a_cuda_computation_gives_the_right_answer(gpu, host_vars) -> None:  # noqa: ANN001
    if gpu.run("python3 -c 'import torch'").rc == 0:
        r = gpu.run("python3 -c %s", MATMUL)
        assert r.rc == 0, r.stderr
        assert "max_abs_err=" in r.stdout
        return
    nvcc = _nvcc(gpu, str(host_vars.get("cuda_toolkit_version", "")))
    assert nvcc, "neither torch nor nvcc on the host: no way to run a CUDA computation"
    tmp = gpu.check_output("mktemp -d")
    try:
        source = base64.b64encode(CUDA_C.encode()).decode()
        gpu.check_output(f"echo {source} | base64 -d > {tmp}/mm.cu")
        built = gpu.run(f"cd {tmp} && {nvcc} -o mm mm.cu")
        assert built.rc == 0, built.stderr
        r = gpu.run(f"{tmp}/mm")
        assert r.rc == 0, r.stdout + r.stderr
    finally:
        gpu.run(f"rm -rf {tmp}")
