"""Is it safe to attach GPUs right now? Checked before any apply that would attach one.

After a power cut the NVIDIA device nodes may be missing (LXD passes through only the nodes
that exist when a container starts, so such a container sees "CUDA unknown error"), or a
card may have moved slot or died, so the inventory's PCI addresses point at the wrong GPU.
Either way GPU work must stop with an explanation while everything else proceeds.

On a single server the runner is the GPU host: NVML there is the truth. In an LXD cluster
the runner is one machine among several (or none of them), so each member's cards are read
from that member's own LXD (the resources API, `?target=<member>`) and compared with that
member's entry in config/hosts.yaml only: never the runner's NVML against every server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from provisioner.gpu.nvml import missing_device_nodes, read_gpus
from provisioner.values.errors import GpuError
from provisioner.values.gpuinventory import Card, compare_cards, compare_inventory
from provisioner.values.models import Inventory


def gpu_refusal(inventory: Inventory, root: Path = Path("/")) -> str | None:
    """None when GPUs may be attached; otherwise why not and what to do."""
    try:
        live = read_gpus()
    except GpuError as e:
        return f"{e} (run `ssp doctor` on the host)"
    missing = missing_device_nodes(root)
    if missing:
        return (
            f"device nodes missing: {', '.join(missing)}; run `nvidia-modprobe -u -c=0` "
            "and `nvidia-smi` (runner/install-gpu-unit.sh does this at every boot)"
        )
    expected = [g for host in inventory.hosts.values() for g in host.gpus]
    diff = compare_inventory(live, expected)
    if not diff.ok:
        return (
            "the GPUs on the host differ from config/hosts.yaml: "
            + "; ".join(diff.lines())
            + " — run `ssp gpus --write` and have an admin commit the change"
        )
    return None


def member_gpu_refusal(
    inventory: Inventory, cards: Mapping[str, Sequence[Card] | str]
) -> str | None:
    """The cluster's gate: None when every member's cards match its own inventory entry.

    `cards`: each member's cards as its LXD lists them, or why they could not be read (a
    member that is down: its GPUs cannot be checked, so none are attached anywhere until it
    answers again, as no other allocation is made from a partial view either).
    """
    problems = []
    for member, found in sorted(cards.items()):
        host = inventory.hosts.get(member)
        if isinstance(found, str):
            problems.append(f"server {member}: its GPUs cannot be read ({found})")
            continue
        diff = compare_cards(found, host.gpus if host is not None else ())
        problems += [f"server {member}: {line}" for line in diff.lines()]
    if not problems:
        return None
    return (
        "the GPUs on the servers differ from config/hosts.yaml: "
        + "; ".join(problems)
        + " — run `ssp gpus --write` on that server and have an admin commit the change"
    )
