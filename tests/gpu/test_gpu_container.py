"""The real-GPU acceptance suite, part 2: a container given one GPU sees exactly that one.

Needs LXD and an image: SSP_GPU_TEST_IMAGE names one (an alias or fingerprint in the default
project; the host may have no network to fetch one). A throwaway container in a scratch
project gets the first GPU by PCI address, as ssp attaches it. LXD's `nvidia.runtime` is
turned on when the host has `nvidia-container-cli` (what `gpu_userspace: nvidia-runtime`
does); otherwise the image must carry the NVIDIA userspace itself. Checked: the container
holds that GPU's device node and no other's, `nvidia-smi -L` inside lists that GPU's UUID
and no other, and the driver version inside is the host's (`ssp doctor`'s gpu.driver).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.doctor.checks import Status
from provisioner.doctor.gpus import DRIVER_QUERY, DriverInside, check_driver_versions
from provisioner.gpu.nvml import driver_version
from provisioner.host import nvidia
from provisioner.values.gpuinventory import Gpu, nvml_to_lxd_pci
from provisioner.values.state import ExecResult

from .gpuhost import lxc

pytestmark = pytest.mark.gpu

DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")


def device_minor(pci: str) -> int:
    """N of the card's /dev/nvidiaN, from the driver's own record of it."""
    for info in DRIVER_GPUS.glob("*/information"):
        if nvml_to_lxd_pci(info.parent.name) == pci:
            found = re.search(r"^Device Minor:\s*(\d+)", info.read_text(), re.MULTILINE)
            assert found, f"no Device Minor in {info}"
            return int(found[1])
    raise AssertionError(f"{pci} is not under {DRIVER_GPUS}")


@pytest.fixture(scope="module")
def container(gpus: list[Gpu], lxd_up: None) -> Iterator[tuple[str, str]]:
    """(project, instance) of a running container holding gpus[0], removed afterwards."""
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
        if nvidia.container_cli() is not None:
            lxc("config", "set", name, "nvidia.runtime=true", *at)
            lxc("config", "set", name, "nvidia.driver.capabilities=compute,utility", *at)
        lxc("start", name, *at)
        yield project, name
    finally:
        lxc("delete", "--force", name, *at, check=False)
        lxc("project", "delete", project, check=False)


def run_inside(container: tuple[str, str], *argv: str) -> ExecResult:
    project, name = container
    done = lxc("exec", name, "--project", project, "--", *argv, check=False)
    if done.returncode == 127 or "not found" in done.stderr:
        pytest.skip(f"the image has no {argv[0]} and the host no nvidia-container-cli")
    return ExecResult(done.returncode, done.stdout, done.stderr)


def test_container_holds_only_its_gpus_nodes(container: tuple[str, str], gpus: list[Gpu]) -> None:
    inside = set(run_inside(container, "ls", "/dev").stdout.split())
    assert "nvidiactl" in inside
    assert f"nvidia{device_minor(gpus[0].pci)}" in inside
    for other in gpus[1:]:
        assert f"nvidia{device_minor(other.pci)}" not in inside
    # What the power-loss unit is for: a node that exists on the host reaches the container.
    if Path("/dev/nvidia-uvm").exists():
        assert "nvidia-uvm" in inside


def test_nvidia_smi_inside_lists_exactly_its_gpu(
    container: tuple[str, str], gpus: list[Gpu]
) -> None:
    result = run_inside(container, "nvidia-smi", "-L")
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("GPU ")]
    assert len(lines) == 1 and gpus[0].uuid in lines[0], result.stdout
    for other in gpus[1:]:
        assert other.uuid not in result.stdout


def test_the_driver_inside_is_the_hosts(container: tuple[str, str], gpus: list[Gpu]) -> None:
    result = run_inside(container, *DRIVER_QUERY)
    check = check_driver_versions(
        [g.pci for g in gpus],
        driver_version(),
        [DriverInside(container[1], result)],
        "nvidia-runtime" if nvidia.container_cli() else "image",
        container[0],
    )
    assert check.status is Status.OK, check.detail
