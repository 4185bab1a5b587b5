"""Is it safe to attach GPUs right now? Checked before any apply that would attach one.

After a power cut the NVIDIA device nodes may be missing (LXD passes through only the nodes
that exist when a container starts, so such a container sees "CUDA unknown error"), or a
card may have moved slot or died, so the inventory's PCI addresses point at the wrong GPU.
Either way GPU work must stop with an explanation while everything else proceeds.
"""

from __future__ import annotations

from pathlib import Path

from provisioner.gpu.nvml import missing_device_nodes, read_gpus
from provisioner.values.errors import GpuError
from provisioner.values.gpuinventory import compare_inventory
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
