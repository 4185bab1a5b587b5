"""The real-GPU acceptance suite, part 1: what ssp reads of the host's GPUs is what they are.

The first thing to run on a new GPU host (admin guide, section 1), as root, in a checkout
with the venv: `.venv/bin/pytest -m gpu tests/gpu`. It needs the NVIDIA driver; LXD is
optional. Without a GPU every test skips and says why.

- NVML through `provisioner.gpu.nvml` lists what `nvidia-smi -L` lists: count, order, UUIDs,
  models, memory, PCI addresses and the driver version;
- the PCI addresses, in LXD's form, are NVIDIA display devices in /sys/bus/pci/devices, the
  very cards `ssp doctor` finds there, and, where LXD runs, the cards LXD's resources API
  reports (what a `gpu` device's `pci` must match);
- the utilisation and memory-in-use figures `ssp status` shows are read;
- `ssp gpus --write` records the cards, and then `ssp doctor`'s GPU checks pass.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import ENV, ROOT, run_cli

from provisioner.flows.checkup import DISPLAY_CLASS, NVIDIA_VENDOR, nvidia_cards
from provisioner.gpu.nvml import driver_version
from provisioner.lxd.api import Lxd
from provisioner.lxd.wire import socket_path
from provisioner.values.gpuinventory import Gpu, nvml_to_lxd_pci

from .gpuhost import lxc, query

pytestmark = pytest.mark.gpu

MiB = 1024 * 1024
PCI_DEVICES = Path("/sys/bus/pci/devices")
NOT_READ = ("[N/A]", "[Not Supported]", "N/A")


def test_count_matches_nvidia_smi(listed: list[str], gpus: list[Gpu]) -> None:
    assert len(gpus) == len(listed) > 0
    assert [g.index for g in gpus] == list(range(len(listed)))


def test_pci_addresses_match_nvidia_smi(gpus: list[Gpu]) -> None:
    assert [g.pci for g in gpus] == [nvml_to_lxd_pci(b) for b in query("pci.bus_id")]


def test_uuids_models_and_memory_match_nvidia_smi(listed: list[str], gpus: list[Gpu]) -> None:
    assert [g.uuid for g in gpus] == query("uuid")
    # "GPU 0: NVIDIA H200 (UUID: GPU-...)"
    assert [re.sub(r"^GPU \d+: (.*) \(UUID: .*\)$", r"\1", line) for line in listed] == [
        g.model for g in gpus
    ]
    assert [g.memory // MiB for g in gpus] == [int(m) for m in query("memory.total")]


def test_the_driver_version_matches_nvidia_smi(gpus: list[Gpu]) -> None:
    assert set(query("driver_version")) == {driver_version()}


def test_pci_addresses_are_nvidia_display_devices_in_sysfs(gpus: list[Gpu]) -> None:
    for gpu in gpus:
        device = PCI_DEVICES / gpu.pci
        assert device.is_dir(), f"{gpu.pci} (GPU {gpu.index}) is not in {PCI_DEVICES}"
        assert (device / "vendor").read_text().strip() == NVIDIA_VENDOR
        assert (device / "class").read_text().strip().startswith(DISPLAY_CLASS)
    # ... and exactly the cards `ssp doctor` counts on the bus (a card NVML lost shows here)
    assert nvidia_cards(Path("/sys")) == sorted(g.pci for g in gpus)


def test_lxd_sees_each_gpu_at_the_same_pci_address(gpus: list[Gpu], lxd_up: None) -> None:
    lxd = Lxd("default", endpoint=socket_path(), require_project=False)
    assert lxd.gpu_pci_addresses() >= {g.pci for g in gpus}
    # the same answer as the client's own view of the resources API
    cards = json.loads(lxc("query", "/1.0/resources").stdout)["gpu"]["cards"]
    nvidia = {c["pci_address"] for c in cards if c.get("driver") == "nvidia"}
    assert nvidia == {g.pci for g in gpus}


def test_utilisation_and_memory_in_use_are_read(gpus: list[Gpu]) -> None:
    smi = query("utilization.gpu")
    for gpu, said in zip(gpus, smi, strict=True):
        if said in NOT_READ:
            assert gpu.utilization is None
        else:
            assert gpu.utilization is not None and 0 <= gpu.utilization <= 100
        assert 0 <= gpu.memory_used <= gpu.memory
        assert all(p.pid > 0 for p in gpu.processes)


def test_ssp_gpus_records_the_cards_and_doctors_gpu_checks_pass(
    gpus: list[Gpu], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "config", repo / "config")
    listing = run_cli("gpus", "--repo", str(repo), "--format", "json", env=ENV)
    assert listing.code == 0, listing.both
    shown = json.loads(listing.out)
    assert [g["pci"] for g in shown["gpus"]] == [g.pci for g in gpus]
    written = run_cli("gpus", "--repo", str(repo), "--write", env=ENV)
    assert written.code == 0, written.both
    doctor = run_cli("doctor", "--repo", str(repo), "--format", "json", env=ENV)
    checks = {c["name"]: c for c in json.loads(doctor.out)["checks"]}
    for name in ("gpu.nvml", "gpu.nodes", "gpu.inventory"):
        assert checks[name]["status"] == "ok", checks[name]
    lxd_down = checks["lxd.reachable"]["status"] != "ok"
    assert checks["gpu.lxd"]["status"] == ("skipped" if lxd_down else "ok"), checks["gpu.lxd"]
