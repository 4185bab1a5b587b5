"""The GPU adapter: what NVIDIA GPUs this host has, read through NVML, in our own types.

This is the only module that imports `pynvml` (enforced by import-linter). It turns NVML's
structs and exceptions into frozen dataclasses and `GpuError`, so nothing above it ever sees
an NVML object. It also looks for the device nodes LXD passes through
(`missing_device_nodes`), which must exist before a GPU container starts after a reboot. The
values it returns, and how they are compared with the inventory, are in
`provisioner.values.gpuinventory`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pynvml

from provisioner.values.errors import GpuError
from provisioner.values.gpuinventory import Gpu, GpuProcess, nvml_to_lxd_pci


def _explain(error: Any) -> str:
    """An actionable sentence for the NVML errors an operator can fix."""
    detail = f"NVML: {error}"
    if isinstance(error, pynvml.NVMLError_LibraryNotFound):
        return (
            f"NVIDIA driver library (libnvidia-ml.so.1) not found: {detail}. Install the NVIDIA "
            "driver on this host (nvidia-smi must work), or run this command on the GPU host"
        )
    if isinstance(error, pynvml.NVMLError_DriverNotLoaded):
        return (
            f"NVIDIA kernel driver is not loaded: {detail}. Load it (`nvidia-modprobe -u -c=0` "
            "or reboot after installing the driver) and check that `nvidia-smi` works"
        )
    if isinstance(error, pynvml.NVMLError_NoPermission):
        return (
            f"no permission to query the GPUs: {detail}. Run as a user that can open "
            "/dev/nvidiactl (root on the GPU host)"
        )
    if isinstance(error, pynvml.NVMLError_LibRmVersionMismatch):
        return (
            f"NVIDIA driver and library versions differ: {detail}. This usually follows a "
            "driver upgrade without a reboot; reboot the host"
        )
    if isinstance(error, pynvml.NVMLError_GpuIsLost):
        return f"a GPU fell off the bus: {detail}. Check `nvidia-smi` and the kernel log (dmesg)"
    return f"{detail} ({type(error).__name__})"


def _processes(handle: Any) -> tuple[GpuProcess, ...]:
    # A process using both CUDA and graphics is listed by both calls; keep it once, with the
    # first figure NVML gave for it.
    seen: dict[int, GpuProcess] = {}
    for query in (
        pynvml.nvmlDeviceGetComputeRunningProcesses,
        pynvml.nvmlDeviceGetGraphicsRunningProcesses,
    ):
        try:
            found = query(handle)
        except pynvml.NVMLError_NotSupported:
            continue
        for proc in found:
            pid = int(proc.pid)
            if pid not in seen:
                used = proc.usedGpuMemory
                seen[pid] = GpuProcess(pid=pid, used_memory=None if used is None else int(used))
    return tuple(sorted(seen.values(), key=lambda p: p.pid))


def _utilization(handle: Any) -> int | None:
    try:
        return int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except pynvml.NVMLError_NotSupported:
        return None


def _read_one(index: int) -> Gpu:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    return Gpu(
        index=index,
        model=str(pynvml.nvmlDeviceGetName(handle)),
        uuid=str(pynvml.nvmlDeviceGetUUID(handle)),
        pci=nvml_to_lxd_pci(pynvml.nvmlDeviceGetPciInfo(handle).busId),
        memory=int(memory.total),
        memory_used=int(memory.used),
        utilization=_utilization(handle),
        processes=_processes(handle),
    )


def read_gpus() -> list[Gpu]:
    """Every GPU NVML sees, in NVML index order.

    Raises GpuError with a message that says what to do (install or load the driver, run as
    root, reboot after an upgrade). NVML is shut down again whenever it was initialised.
    """
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise GpuError(_explain(e)) from e
    read = False
    try:
        gpus = [_read_one(i) for i in range(pynvml.nvmlDeviceGetCount())]
        read = True
    except pynvml.NVMLError as e:
        raise GpuError(f"reading the GPU inventory failed: {_explain(e)}") from e
    except ValueError as e:  # a bus id NVML itself produced; only a broken driver does this
        raise GpuError(f"NVML reported an unreadable PCI address: {e}") from e
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError as e:
            # After a failed read the first error is the one worth reporting; after a good
            # read, a library that cannot shut down is still a broken driver install.
            if read:
                raise GpuError(f"NVML shutdown failed: {_explain(e)}") from e
    return gpus


def driver_version() -> str:
    """The host's NVIDIA driver version as NVML reports it ("550.54.14"); else GpuError."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise GpuError(_explain(e)) from e
    try:
        return str(pynvml.nvmlSystemGetDriverVersion())
    except pynvml.NVMLError as e:
        raise GpuError(f"reading the driver version failed: {_explain(e)}") from e
    finally:
        # The version was read, or its error is the one worth reporting.
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


# LXD passes a GPU's /dev/nvidiaN through, plus these shared nodes, but only the nodes that
# exist when the container starts. /dev/nvidia-uvm is created lazily by the first CUDA call on
# the host, so after a power loss containers that start first get "CUDA unknown error".
REQUIRED_NODES: tuple[str, ...] = ("/dev/nvidiactl", "/dev/nvidia-uvm")


def missing_device_nodes(root: Path = Path("/")) -> list[str]:
    """The REQUIRED_NODES that do not exist under `root` (a test passes a temporary root)."""
    return [node for node in REQUIRED_NODES if not (root / node.lstrip("/")).exists()]
