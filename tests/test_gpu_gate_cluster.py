"""The GPU gate on an LXD cluster: each member's cards, read through that member's LXD,
against that member's own entry in config/hosts.yaml; never the runner's NVML.

Seen on main: with two GPU servers the gate compared the runner's GPUs (NVML) with every
server's inventory, so it refused every GPU request.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pynvml
import pytest
import yaml
from fakelxd import Lab

from provisioner.commands import gpu_gate
from provisioner.lxd.wire import card_of
from provisioner.values.errors import LxdError
from provisioner.values.gpuinventory import Card

SLOTS = ("0000:18:00.0", "0000:3b:00.0")
RTX, A100 = "NVIDIA GeForce RTX 4090", "NVIDIA A100 80GB PCIe"


def uuid(tag: int, i: int) -> str:
    return f"GPU-{tag:08x}-0000-4000-8000-{i:012x}"


def entries(model: str, tag: int) -> list[dict[str, Any]]:
    return [
        {"index": i, "model": model, "pci": pci, "uuid": uuid(tag, i), "memory": "24564MiB"}
        for i, pci in enumerate(SLOTS)
    ]


# Two servers of one make: the same PCI slots, different cards.
HOSTS = {
    "hosts": {
        "node1": {"cpu": 64, "memory": "256GiB", "gpus": entries(RTX, 1)},
        "node2": {"cpu": 64, "memory": "256GiB", "gpus": entries(A100, 2)},
    }
}


def cards(model: str, tag: int, driver: bool = True) -> tuple[Card, ...]:
    return tuple(
        Card(pci, "10de", model if driver else "GA102", uuid(tag, i) if driver else None)
        for i, pci in enumerate(SLOTS)
    )


class ClusterLxd:
    """The two calls the gate makes, answered per member as LXD's resources API would."""

    def __init__(self, members: dict[str, str], found: dict[str, tuple[Card, ...]]) -> None:
        self._members, self.found, self.asked = members, found, []

    def members(self) -> dict[str, str]:
        return dict(self._members)

    def gpu_cards(self, member: str = "") -> tuple[Card, ...]:
        self.asked.append(member)
        if member not in self.found:
            raise LxdError("Missing event connection with target cluster member")
        return self.found[member]


@pytest.fixture
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner has no GPUs of its own: NVML must not be asked at all."""

    def refuse() -> None:
        raise AssertionError("the cluster gate read the runner's NVML")

    monkeypatch.setattr(pynvml, "nvmlInit", refuse)


@pytest.fixture(scope="module")
def lab() -> Lab:
    return replace(Lab.make(), hosts=yaml.safe_dump(HOSTS))


def gate(lab: Lab, lxd: ClusterLxd) -> str | None:
    v = lab.validate(lab.container("alice-x", gpus=1))
    assert v.config is not None and v.valid, v.problems
    return gpu_gate(v, {}, lxd)  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_nvml")
def test_each_member_is_checked_against_its_own_inventory(lab: Lab) -> None:
    online = {"node1": "Online", "node2": "Online"}
    lxd = ClusterLxd(online, {"node1": cards(RTX, 1), "node2": cards(A100, 2)})
    assert gate(lab, lxd) is None
    assert sorted(lxd.asked) == ["node1", "node2"]
    # Without the NVIDIA driver's answers LXD still lists the cards by PCI: enough to match.
    bare = ClusterLxd(online, {"node1": cards(RTX, 1, driver=False), "node2": cards(A100, 2)})
    assert gate(lab, bare) is None


@pytest.mark.usefixtures("no_nvml")
def test_a_difference_on_one_member_is_named_with_that_member(lab: Lab) -> None:
    online = {"node1": "Online", "node2": "Online"}
    lost = ClusterLxd(online, {"node1": cards(RTX, 1), "node2": cards(A100, 2)[:1]})
    refusal = gate(lab, lost)
    assert refusal is not None
    assert f"server node2: {SLOTS[1]}: {A100} ({uuid(2, 1)}) is in the inventory" in refusal
    assert "server node1" not in refusal
    # node1's cards in node2's slots: each card's UUID is checked against its own server.
    swapped = ClusterLxd(online, {"node1": cards(A100, 2), "node2": cards(A100, 2)})
    refusal = gate(lab, swapped)
    assert refusal is not None and "server node1: 0000:18:00.0: UUID" in refusal
    assert "server node2" not in refusal


@pytest.mark.usefixtures("no_nvml")
def test_a_member_that_does_not_answer_holds_gpu_work_back(lab: Lab) -> None:
    offline = ClusterLxd({"node1": "Online", "node2": "Offline"}, {"node1": cards(RTX, 1)})
    refusal = gate(lab, offline)
    assert refusal is not None and "server node2: its GPUs cannot be read" in refusal
    going = ClusterLxd({"node1": "Online", "node2": "Online"}, {"node1": cards(RTX, 1)})
    refusal = gate(lab, going)
    assert refusal is not None and "Missing event connection" in refusal


def test_a_single_server_still_asks_nvml(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(pynvml, "nvmlInit", missing)
    single = ClusterLxd({}, {})
    refusal = gate(lab, single)
    assert refusal is not None and "libnvidia-ml.so.1" in refusal
    assert single.asked == []


def test_lxd_cards_are_read_as_lxd_5_0_reports_them() -> None:
    with_driver = {
        "driver": "nvidia", "pci_address": "0000:18:00.0", "vendor_id": "10de",
        "product": "AD102 [GeForce RTX 4090]", "product_id": "2684",
        "nvidia": {"model": RTX, "uuid": uuid(1, 0), "brand": "GeForce"},
    }  # fmt: skip
    assert card_of(with_driver) == Card("0000:18:00.0", "10de", RTX, uuid(1, 0))
    without = {"pci_address": "0000:3B:00.0", "vendor_id": "10de", "product": "GA100"}
    assert card_of(without) == Card("0000:3b:00.0", "10de", "GA100", None)
