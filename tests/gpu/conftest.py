"""The real-GPU acceptance suite's fixtures: the host's GPUs as `nvidia-smi` and NVML see them.

Every fixture that needs a GPU skips, with the reason, where `nvidia-smi -L` does not work
(no NVIDIA driver, no card, no permission): the suite runs anywhere and tests something only
on a GPU host. LXD is optional: the tests that need it skip where `lxc` cannot reach a daemon.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from provisioner.gpu.nvml import read_gpus
from provisioner.values.errors import GpuError
from provisioner.values.gpuinventory import Gpu

from .gpuhost import lxc, nvidia_smi


@pytest.fixture(scope="session")
def listed() -> list[str]:
    """`nvidia-smi -L`'s GPU lines (MIG devices are indented lines under them)."""
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no GPU here: nvidia-smi is not installed (run this suite on the GPU host)")
    try:
        lines = nvidia_smi("-L")
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"no GPU here: nvidia-smi -L does not work ({e})")
    gpus = [line for line in lines if line.startswith("GPU ")]
    if not gpus:
        pytest.skip("no GPU here: nvidia-smi -L lists none")
    return gpus


@pytest.fixture(scope="session")
def gpus(listed: list[str]) -> list[Gpu]:
    """What `provisioner.gpu.nvml` reads; a failure here is the suite's first finding."""
    try:
        return read_gpus()
    except GpuError as e:
        pytest.fail(f"nvidia-smi works but NVML through ssp does not: {e}")


@pytest.fixture(scope="session")
def lxd_up() -> None:
    """Skips unless `lxc` reaches an LXD daemon."""
    if shutil.which("lxc") is None:
        pytest.skip("lxc is not installed (LXD is optional for this suite)")
    if lxc("info", check=False).returncode != 0:
        pytest.skip("lxc cannot reach an LXD daemon")
