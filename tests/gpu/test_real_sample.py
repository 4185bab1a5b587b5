"""The real-GPU acceptance suite, part 3: `ssp sample`'s flow records the host's real GPUs.

One pass of `provisioner.flows.sample.sample` with the real NVML into a fresh usage database:
one reading per card, at the PCI addresses `nvidia-smi` lists, with the memory it reports and
a utilisation read (not "unknown"). LXD is not needed: the holders come from a list handed in
(test_sample_real.py checks the holders against the real LXD). Skips without a GPU.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from provisioner.flows.sample import sample
from provisioner.gpu.nvml import read_gpus
from provisioner.host.usagedb import UsageDb
from provisioner.values import state
from provisioner.values.gpuinventory import Gpu, nvml_to_lxd_pci
from provisioner.values.policymodels import UsagePolicy
from provisioner.values.state import Instance

from .gpuhost import query

pytestmark = pytest.mark.gpu


class Holders:
    """The first card held by a managed container, as LXD would list it."""

    def __init__(self, pci: str) -> None:
        device = {"type": "gpu", "pci": pci}
        config = {state.MANAGED: "true", state.OWNER: "alice"}
        self.held = [Instance("train", "Running", config, {"gpu0": device})]

    def instances(self) -> list[Instance]:
        return self.held

    def members(self) -> dict[str, str]:
        return {}

    def server_name(self) -> str:
        return ""


def test_one_pass_records_every_real_gpu(gpus: list[Gpu], tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite"
    now = datetime.now(UTC)
    done = sample(lambda: Holders(gpus[0].pci), db, UsagePolicy(), now=now, read_gpus=read_gpus)
    assert not done.why, done.why
    pcis = [nvml_to_lxd_pci(b) for b in query("pci.bus_id")]
    with UsageDb(db, create=False) as store:
        got = store.readings(0, int(now.timestamp()) + 1)
    assert [r.pci for r in got] == sorted(pcis)  # read back in PCI order
    memory = dict(zip(pcis, query("memory.total"), strict=True))
    assert [r.memory_total // 2**20 for r in got] == [int(memory[r.pci]) for r in got]
    assert all(r.utilization is not None and 0 <= r.utilization <= 100 for r in got)
    held = [(r.pci, r.owner, r.container) for r in got if r.owner]
    assert held == [(gpus[0].pci, "alice", "train")]
