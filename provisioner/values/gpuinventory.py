"""GPUs as values: a card as NVML reports it (`Gpu`), PCI addresses in LXD's form, and how
the live cards differ from the inventory in config/hosts.yaml.

Pure. `provisioner.gpu.nvml` (the NVML adapter) produces `Gpu` values; the doctor, the apply
gate, the status board and `ssp gpus --write` read them from here.

GPUs are keyed by PCI address (LXD form, `0000:4b:00.0`) and UUID, never by NVML index alone:
NVML documents that its index order is not guaranteed to stay the same across reboots, and
LXD's own `id` option is the DRM card number, which is a third numbering again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class GpuProcess:
    """A process holding a GPU context; `used_memory` is None where NVML cannot tell."""

    pid: int
    used_memory: int | None


@dataclass(frozen=True)
class Gpu:
    """One GPU as NVML sees it now. `memory` and `memory_used` are bytes."""

    index: int
    model: str
    uuid: str
    pci: str
    memory: int
    memory_used: int
    utilization: int | None
    processes: tuple[GpuProcess, ...]


# NVML's busId is "DDDDDDDD:BB:DD.F" (8-digit domain, upper case); busIdLegacy and
# nvidia-smi's `pci.bus_id` use the same shape, /sys and LXD use a 4-digit lower-case domain.
_PCI = re.compile(
    r"(?P<domain>[0-9a-f]{4,8}):(?P<bus>[0-9a-f]{2}):(?P<device>[0-1][0-9a-f])\.(?P<function>[0-7])"
)


def nvml_to_lxd_pci(bus_id: str | bytes) -> str:
    """'00000000:4B:00.0' -> '0000:4b:00.0', the form LXD's `gpu` device `pci=` takes.

    Already-converted addresses pass through unchanged. Anything that is not a PCI address
    raises ValueError rather than producing a device option that matches nothing.
    """
    text = bus_id.decode("ascii", "replace") if isinstance(bus_id, bytes) else bus_id
    # ctypes char arrays can carry trailing NULs when a struct is read raw.
    match = _PCI.fullmatch(text.strip().strip("\x00").lower())
    if match is None:
        raise ValueError(f"not a PCI bus id: {text!r} (expected e.g. 00000000:4B:00.0)")
    domain = int(match["domain"], 16)
    return f"{domain:04x}:{match['bus']}:{match['device']}.{match['function']}"


class ExpectedGpu(Protocol):
    """A GPU as the inventory file records it (the hosts model satisfies this)."""

    @property
    def index(self) -> int: ...

    @property
    def model(self) -> str: ...

    @property
    def pci(self) -> str: ...

    @property
    def uuid(self) -> str | None: ...


@dataclass(frozen=True)
class InventoryDiff:
    """Differences between the live GPUs and the inventory file, one human line each."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.changed)

    def lines(self) -> list[str]:
        return [*self.missing, *self.unexpected, *self.changed]


def _same_pci(address: str) -> str:
    try:
        return nvml_to_lxd_pci(address)
    except ValueError:
        return address.strip().lower()


def compare_inventory(live: Sequence[Gpu], expected: Sequence[ExpectedGpu]) -> InventoryDiff:
    """What differs between NVML now and the inventory, matched by PCI address.

    A card whose UUID turns up at another PCI address was moved to another slot; that is
    reported once as a change, not as one missing and one unexpected GPU. An expected GPU
    without a UUID is matched by PCI alone.
    """
    live_by_pci = {g.pci: g for g in live}
    expected_by_pci = {_same_pci(e.pci): e for e in expected}
    live_by_uuid = {g.uuid: g for g in live}

    missing: list[str] = []
    unexpected: list[str] = []
    changed: list[str] = []
    moved_to: set[str] = set()

    for pci, want in expected_by_pci.items():
        have = live_by_pci.get(pci)
        if have is None:
            elsewhere = live_by_uuid.get(want.uuid) if want.uuid else None
            if elsewhere is not None and elsewhere.pci not in expected_by_pci:
                moved_to.add(elsewhere.pci)
                changed.append(
                    f"{pci}: {want.uuid} ({want.model}) is now at {elsewhere.pci}; "
                    "the card was moved to another slot"
                )
            else:
                missing.append(
                    f"{pci}: {want.model} ({want.uuid or 'no UUID recorded'}, index "
                    f"{want.index}) is in the inventory but not on the host"
                )
            continue
        if want.uuid and want.uuid != have.uuid:
            changed.append(
                f"{pci}: UUID {have.uuid}, inventory says {want.uuid} (a different card)"
            )
        if want.model != have.model:
            changed.append(f"{pci}: model {have.model!r}, inventory says {want.model!r}")
        if want.index != have.index:
            changed.append(f"{pci}: NVML index {have.index}, inventory says {want.index}")

    for pci, have in live_by_pci.items():
        if pci not in expected_by_pci and pci not in moved_to:
            unexpected.append(
                f"{pci}: {have.model} ({have.uuid}, index {have.index}) is on the host "
                "but not in the inventory"
            )
    return InventoryDiff(tuple(missing), tuple(unexpected), tuple(changed))


NVIDIA_VENDOR_ID = "10de"


@dataclass(frozen=True)
class Card:
    """A GPU card as a server's LXD reports it (`GET /1.0/resources?target=<member>`).

    LXD reads the PCI bus, so a card is listed without the NVIDIA driver too; `model` and
    `uuid` are the driver's (LXD's `nvidia` section) when LXD could ask it, else the PCI
    product name and None. LXD gives no NVML index and no memory size.
    """

    pci: str
    vendor_id: str
    model: str
    uuid: str | None = None

    @property
    def nvidia(self) -> bool:
        return self.vendor_id.lower() == NVIDIA_VENDOR_ID


def compare_cards(cards: Sequence[Card], expected: Sequence[ExpectedGpu]) -> InventoryDiff:
    """What differs between the NVIDIA cards one server's LXD lists and that server's own
    inventory entry, matched by PCI address. The UUID is compared where LXD knows it; the
    model only then too (without the driver LXD has the PCI product name, not the model)."""
    live_by_pci = {_same_pci(c.pci): c for c in cards if c.nvidia}
    expected_by_pci = {_same_pci(e.pci): e for e in expected}
    missing = tuple(
        f"{pci}: {want.model} ({want.uuid or 'no UUID recorded'}) is in the inventory but "
        "not on the server"
        for pci, want in sorted(expected_by_pci.items())
        if pci not in live_by_pci
    )
    unexpected = tuple(
        f"{pci}: {have.model} is on the server but not in the inventory"
        for pci, have in sorted(live_by_pci.items())
        if pci not in expected_by_pci
    )
    changed: list[str] = []
    for pci, want in sorted(expected_by_pci.items()):
        have = live_by_pci.get(pci)
        if have is None or have.uuid is None:
            continue
        if want.uuid and want.uuid != have.uuid:
            changed.append(
                f"{pci}: UUID {have.uuid}, inventory says {want.uuid} (a different card)"
            )
        if want.model != have.model:
            changed.append(f"{pci}: model {have.model!r}, inventory says {want.model!r}")
    return InventoryDiff(missing, unexpected, tuple(changed))


def cards_as_gpus(cards: Sequence[Card], memory: Mapping[str, int]) -> list[Gpu] | str:
    """One server's NVIDIA cards as `ssp gpus --write` records them, from what its LXD lists
    (for a cluster member other than the one it runs on); or why they cannot be.

    Numbered in PCI bus order, the order NVML enumerates them in. LXD reports no memory size,
    so each card's comes from the inventory's entry of the same UUID (`memory`): a card the
    inventory does not know yet, or one LXD could not ask the driver about (no UUID), is
    recorded by running `ssp gpus --write` on that server, where NVML sees everything.
    """
    nvidia = sorted((c for c in cards if c.nvidia), key=lambda c: c.pci)
    blind = [c.pci for c in nvidia if c.uuid is None]
    if blind:
        return f"LXD there cannot ask the NVIDIA driver about {', '.join(blind)}"
    unknown = [c.pci for c in nvidia if c.uuid not in memory]
    if unknown:
        return f"new card(s) at {', '.join(unknown)}, whose memory size LXD does not report"
    return [
        Gpu(
            index=i,
            model=c.model,
            uuid=str(c.uuid),
            pci=c.pci,
            memory=memory[str(c.uuid)],
            memory_used=0,
            utilization=None,
            processes=(),
        )
        for i, c in enumerate(nvidia)
    ]
