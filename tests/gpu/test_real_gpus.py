"""Real-GPU checks, for the GPU host: NVML through `provisioner.gpu.nvml` against `nvidia-smi`.

Skipped wherever `nvidia-smi -L` does not work. Where `lxc` can reach an LXD daemon and
SSP_GPU_TEST_IMAGE names an image (an alias or fingerprint in the default project; the host
has no network to fetch one), a throwaway container in a scratch project gets the first GPU
by PCI address, and the container is checked to hold that GPU's nodes and no other's, and
`nvidia-smi -L` inside to show that GPU's UUID. LXD's `nvidia.runtime` is turned on when the
host has `nvidia-container-cli`; otherwise the image must carry the NVIDIA userspace itself.

Run: `pytest -m gpu tests/gpu` (as root on the GPU host).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.gpu.nvml import read_gpus
from provisioner.values.gpuinventory import Gpu, nvml_to_lxd_pci

pytestmark = pytest.mark.gpu

MiB = 1024 * 1024
DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")


def nvidia_smi(*args: str) -> list[str]:
    result = subprocess.run(
        ["nvidia-smi", *args], capture_output=True, text=True, check=True, timeout=60
    )
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def listed() -> list[str]:
    """`nvidia-smi -L`'s GPU lines (MIG devices are indented lines under them)."""
    try:
        lines = nvidia_smi("-L")
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"nvidia-smi -L does not work here: {e}")
    return [line for line in lines if line.startswith("GPU ")]


@pytest.fixture(scope="module")
def gpus(listed: list[str]) -> list[Gpu]:
    return read_gpus()


def query(field: str) -> list[str]:
    return nvidia_smi(f"--query-gpu={field}", "--format=csv,noheader,nounits")


def test_count_matches_nvidia_smi(listed: list[str], gpus: list[Gpu]) -> None:
    assert len(gpus) == len(listed) > 0


def test_pci_addresses_match_nvidia_smi(gpus: list[Gpu]) -> None:
    assert [g.pci for g in gpus] == [nvml_to_lxd_pci(b) for b in query("pci.bus_id")]


def test_uuids_models_and_memory_match_nvidia_smi(listed: list[str], gpus: list[Gpu]) -> None:
    assert [g.uuid for g in gpus] == query("uuid")
    # "GPU 0: NVIDIA H200 (UUID: GPU-...)"
    assert [re.sub(r"^GPU \d+: (.*) \(UUID: .*\)$", r"\1", line) for line in listed] == [
        g.model for g in gpus
    ]
    assert [g.memory // MiB for g in gpus] == [int(m) for m in query("memory.total")]


# -- inside an LXD container -----------------------------------------------------------------


def lxc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["lxc", *args], capture_output=True, text=True, timeout=300, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"lxc {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def device_minor(pci: str) -> int:
    """N of the card's /dev/nvidiaN, from the driver's own record of it."""
    for info in DRIVER_GPUS.glob("*/information"):
        if nvml_to_lxd_pci(info.parent.name) == pci:
            found = re.search(r"^Device Minor:\s*(\d+)", info.read_text(), re.MULTILINE)
            assert found, f"no Device Minor in {info}"
            return int(found[1])
    raise AssertionError(f"{pci} is not under {DRIVER_GPUS}")


@pytest.fixture(scope="module")
def container(gpus: list[Gpu]) -> Iterator[tuple[str, str]]:
    """(project, instance) of a running container holding gpus[0], removed afterwards."""
    if shutil.which("lxc") is None:
        pytest.skip("lxc is not installed")
    if lxc("info", check=False).returncode != 0:
        pytest.skip("lxc cannot reach an LXD daemon")
    image = os.environ.get("SSP_GPU_TEST_IMAGE")
    if not image:
        pytest.skip("set SSP_GPU_TEST_IMAGE to an LXD image alias to test GPU passthrough")
    # Unique names: projects on one bridge share its DNS names.
    suffix = secrets.token_hex(3)
    project, name = f"ssp-gputest-{suffix}", f"gpu-check-{suffix}"
    at = ("--project", project)
    # The default project's images and profiles (root disk, NIC) serve the scratch project.
    shared = ("-c", "features.images=false", "-c", "features.profiles=false")
    lxc("project", "create", project, *shared)
    try:
        lxc("init", image, name, *at)
        lxc("config", "device", "add", name, "gpu0", "gpu", "gputype=physical",
            f"pci={gpus[0].pci}", *at)  # fmt: skip
        if shutil.which("nvidia-container-cli"):
            lxc("config", "set", name, "nvidia.runtime=true", *at)
        lxc("start", name, *at)
        yield project, name
    finally:
        lxc("delete", "--force", name, *at, check=False)
        lxc("project", "delete", project, check=False)


def test_container_holds_only_its_gpus_nodes(container: tuple[str, str], gpus: list[Gpu]) -> None:
    project, name = container
    inside = set(lxc("exec", name, "--project", project, "--", "ls", "/dev").stdout.split())
    assert "nvidiactl" in inside
    assert f"nvidia{device_minor(gpus[0].pci)}" in inside
    for other in gpus[1:]:
        assert f"nvidia{device_minor(other.pci)}" not in inside
    # What the power-loss unit is for: a node that exists on the host reaches the container.
    if Path("/dev/nvidia-uvm").exists():
        assert "nvidia-uvm" in inside


def test_nvidia_smi_inside_shows_the_gpus_uuid(container: tuple[str, str], gpus: list[Gpu]) -> None:
    project, name = container
    result = lxc("exec", name, "--project", project, "--", "nvidia-smi", "-L", check=False)
    if result.returncode == 127 or "not found" in result.stderr:
        pytest.skip("the image has no nvidia-smi and the host no nvidia-container-cli")
    assert result.returncode == 0, result.stderr
    assert gpus[0].uuid in result.stdout
    for other in gpus[1:]:
        assert other.uuid not in result.stdout
