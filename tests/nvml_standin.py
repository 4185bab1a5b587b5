"""A stand-in for the NVML library behind `pynvml`, for machines without an NVIDIA driver.

Only the library is replaced: the stand-in's functions are installed over `pynvml`'s module
functions with monkeypatch, and they return `pynvml`'s own ctypes structs and friendly
objects and raise `pynvml`'s own exception classes, with the codes the C library returns.
So code under test sees exactly the types it would see on the GPU host (struct fields that
decode bytes to str, `usedGpuMemory is None` when NVML cannot tell, `NVMLError_Uninitialized`
for a call before `nvmlInit`), and `except pynvml.NVMLError_NotSupported` means what it means
there. The default description is the seed server: four RTX 4090s.
"""

# The method names are pynvml's function names, installed over them one for one.
# ruff: noqa: N802

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pynvml
import pytest

MiB = 1024 * 1024
# nvidia-smi reports a 4090 as 24564MiB; NVML's total is that many MiB exactly.
RTX_4090_BYTES = 24564 * MiB


@dataclass
class StandinGpu:
    """What one card reports. `utilization=None` makes the query raise NotSupported."""

    name: str
    uuid: str
    bus_id: str  # NVML's form: 8-digit domain, upper-case hex
    total: int
    used: int = 0
    utilization: int | None = 0
    compute: list[tuple[int, int | None]] = field(default_factory=list)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)
    # an NVML error code to raise from nvmlDeviceGetMemoryInfo (a GPU that fell off the bus)
    memory_error: int | None = None


def seed_server() -> list[StandinGpu]:
    """Four RTX 4090s as on the lab's seed server, NVML index order = PCI order."""
    return [
        StandinGpu(
            "NVIDIA GeForce RTX 4090",
            "GPU-5b7a3b1e-2c4d-4e8f-9a0b-1c2d3e4f5a60",
            "00000000:1A:00.0",
            RTX_4090_BYTES,
        ),
        StandinGpu(
            "NVIDIA GeForce RTX 4090",
            "GPU-6c8b4c2f-3d5e-4f90-8b1c-2d3e4f5a6b71",
            "00000000:4B:00.0",
            RTX_4090_BYTES,
            used=18000 * MiB,
            utilization=97,
            compute=[(4242, 17000 * MiB)],
        ),
        StandinGpu(
            "NVIDIA GeForce RTX 4090",
            "GPU-7d9c5d30-4e6f-4a01-9c2d-3e4f5a6b7c82",
            "00000000:B1:00.0",
            RTX_4090_BYTES,
        ),
        StandinGpu(
            "NVIDIA GeForce RTX 4090",
            "GPU-8e0d6e41-5f70-4b12-8d3e-4f5a6b7c8d93",
            "00000000:CA:00.0",
            RTX_4090_BYTES,
        ),
    ]


class _Handle:
    """Opaque like NVML's `c_nvmlDevice_t`; only the stand-in looks inside."""

    def __init__(self, gpu: StandinGpu) -> None:
        self._gpu = gpu


class NvmlStandin:
    """The library state: a reference count like libnvidia-ml's, and the cards."""

    def __init__(
        self, gpus: list[StandinGpu], init_error: int | None = None, driver: str = "550.54.14"
    ) -> None:
        self.gpus = gpus
        self.driver = driver  # the loaded kernel driver's version
        self.init_error = init_error
        self.refcount = 0
        self.inits = 0
        self.shutdowns = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> NvmlStandin:
        for name in (
            "nvmlInit",
            "nvmlShutdown",
            "nvmlDeviceGetCount",
            "nvmlDeviceGetHandleByIndex",
            "nvmlDeviceGetName",
            "nvmlDeviceGetUUID",
            "nvmlDeviceGetPciInfo",
            "nvmlDeviceGetMemoryInfo",
            "nvmlDeviceGetUtilizationRates",
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses",
            "nvmlSystemGetDriverVersion",
        ):
            monkeypatch.setattr(pynvml, name, getattr(self, name))
        return self

    # -- library lifetime -------------------------------------------------------------
    def _initialised(self) -> None:
        if self.refcount == 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.refcount += 1
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self._initialised()
        self.refcount -= 1
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._initialised()
        return self.driver

    # -- devices ----------------------------------------------------------------------
    def _gpu(self, handle: Any) -> StandinGpu:
        self._initialised()
        if not isinstance(handle, _Handle):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle._gpu

    def nvmlDeviceGetCount(self) -> int:
        self._initialised()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._initialised()
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(self.gpus[index])

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._gpu(handle).name  # the real one is wrapped in @convertStrBytes: str

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._gpu(handle).uuid

    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any:
        gpu = self._gpu(handle)
        info = pynvml.nvmlPciInfo_t()
        domain, bus, devfn = gpu.bus_id.split(":")
        info.domain = int(domain, 16)
        info.bus = int(bus, 16)
        info.device = int(devfn.split(".")[0], 16)
        info.busIdLegacy = gpu.bus_id[4:]  # the legacy field has a 4-digit domain
        info.busId = gpu.bus_id
        return info

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        gpu = self._gpu(handle)
        if gpu.memory_error is not None:
            raise pynvml.NVMLError(gpu.memory_error)
        memory = pynvml.c_nvmlMemory_t()
        memory.total = gpu.total
        memory.used = gpu.used
        memory.free = gpu.total - gpu.used
        return memory

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        gpu = self._gpu(handle)
        if gpu.utilization is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        rates = pynvml.c_nvmlUtilization_t()
        rates.gpu = gpu.utilization
        rates.memory = gpu.utilization // 2
        return rates

    @staticmethod
    def _processes(listed: list[tuple[int, int | None]]) -> list[Any]:
        # Built the way pynvml builds them: a ctypes struct turned into a friendly object,
        # with NVML's "not available" sentinel replaced by None.
        unknown = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
        out = []
        for pid, used in listed:
            raw = pynvml.c_nvmlProcessInfo_t()
            raw.pid = pid
            raw.usedGpuMemory = unknown if used is None else used
            obj = pynvml.nvmlStructToFriendlyObject(raw)
            if obj.usedGpuMemory == unknown:
                obj.usedGpuMemory = None
            out.append(obj)
        return out

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        return self._processes(self._gpu(handle).compute)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: Any) -> list[Any]:
        return self._processes(self._gpu(handle).graphics)


# -- readings over time ------------------------------------------------------------------
# A pass's readings for the four seed cards: (utilisation %, memory used MiB, compute pids).
# Shaped after what `nvidia-smi --query-gpu=utilization.gpu,memory.used` prints on a shared
# box: card 0 free, card 1 training flat out, card 2 held but left idle with a stale process
# (memory held, 0 %), card 3 a notebook that computes in bursts.
PassReading = tuple[int | None, int, tuple[int, ...]]

RECORDED_PASSES: tuple[tuple[PassReading, ...], ...] = (
    ((0, 0, ()), (97, 18000, (4242,)), (0, 1200, (5150,)), (35, 6000, (7001,))),
    ((0, 0, ()), (99, 18000, (4242,)), (0, 1200, (5150,)), (0, 6000, (7001,))),
    ((0, 0, ()), (96, 18100, (4242,)), (0, 1200, (5150,)), (80, 6400, (7001,))),
    ((0, 0, ()), (98, 18000, (4242,)), (0, 1200, (5150,)), (5, 6000, (7001,))),
)


def play(standin: NvmlStandin, reading: tuple[PassReading, ...]) -> None:
    """Set every card to one recorded pass's reading."""
    for gpu, (util, used_mib, pids) in zip(standin.gpus, reading, strict=True):
        gpu.utilization = util
        gpu.used = used_mib * MiB
        gpu.compute = [(pid, used_mib * MiB // max(len(pids), 1)) for pid in pids]
