"""The sampling pass's own decisions: who holds a GPU (managed containers only, by PCI address
in any case, on this cluster member only), and that a host without a GPU touches neither LXD
nor the database. The pass against the real LXD is in integration/test_sample_real.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from provisioner.flows.sample import SampleLxd, holders, sample
from provisioner.values import state
from provisioner.values.errors import GpuError
from provisioner.values.gpuinventory import Gpu
from provisioner.values.policymodels import UsagePolicy
from provisioner.values.state import Instance

MANAGED = {state.MANAGED: "true", state.OWNER: "alice"}


def gpu_device(pci: str) -> dict[str, dict[str, str]]:
    return {"gpu0": {"type": "gpu", "pci": pci}}


def test_holders_are_managed_containers_by_pci_on_this_member() -> None:
    found = holders(
        [
            Instance("mine", "Running", MANAGED, gpu_device("0000:4B:00.0"), location="gpu1"),
            Instance("theirs", "Running", MANAGED, gpu_device("0000:1a:00.0"), location="gpu2"),
            Instance("handmade", "Running", {}, gpu_device("0000:b1:00.0"), location="gpu1"),
            Instance("nogpu", "Running", MANAGED, {"eth0": {"type": "nic"}}, location="gpu1"),
        ],
        member="gpu1",
    )
    assert {pci: inst.name for pci, inst in found.items()} == {"0000:4b:00.0": "mine"}


def test_on_a_single_server_every_managed_holder_counts() -> None:
    found = holders(
        [Instance("a", "Stopped", MANAGED, gpu_device("0000:1a:00.0"), location="none")]
    )
    assert list(found) == ["0000:1a:00.0"]


def test_without_a_gpu_neither_lxd_nor_the_database_is_touched(tmp_path: Path) -> None:
    reached: list[str] = []

    def connect() -> SampleLxd:
        reached.append("lxd")
        raise AssertionError("LXD reached without a GPU")

    def no_driver() -> list[Gpu]:
        raise GpuError("NVIDIA driver library (libnvidia-ml.so.1) not found")

    db = tmp_path / "usage.sqlite"
    done = sample(connect, db, UsagePolicy(), now=datetime.now(UTC), read_gpus=no_driver)
    assert done.why.startswith("no GPU readings, nothing recorded: NVIDIA driver library")
    none = sample(connect, db, UsagePolicy(), now=datetime.now(UTC), read_gpus=list)
    assert none.why == "NVML reports no GPUs on this host, nothing recorded"
    assert reached == [] and not db.exists()
