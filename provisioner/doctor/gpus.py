"""`ssp doctor`'s GPU checks as data: the driver, the device nodes, the inventory, what LXD
and each GPU container see. Pure, like `provisioner.doctor.checks`, whose `Check` they return.

Each is n/a on a host with no NVIDIA display device on its PCI bus (read from /sys, not
from NVML): a development machine is simply not a GPU host, while a GPU server whose driver
is broken still has its cards on the bus, and there a broken driver is a problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.doctor.checks import Check, not_applicable, passed, problem_found, skipped
from provisioner.values.errors import GpuError, LxdError
from provisioner.values.gpuinventory import Gpu, compare_inventory
from provisioner.values.models import GpuEntry
from provisioner.values.state import ExecResult


def _no_cards(name: str, expected: Sequence[GpuEntry]) -> Check:
    detail = "no NVIDIA GPU on this host's PCI bus"
    if expected:
        detail += (
            f" (config/hosts.yaml lists {len(expected)}: if this is the GPU server, its cards "
            "are not visible; check `lspci -d 10de:`)"
        )
    return not_applicable(name, detail)


def check_nvml(
    cards: Sequence[str], live: Sequence[Gpu] | GpuError, expected: Sequence[GpuEntry]
) -> Check:
    name = "gpu.nvml"
    if not cards:
        return _no_cards(name, expected)
    if isinstance(live, GpuError):
        return problem_found(name, str(live), "fix the driver until `nvidia-smi` lists every card")
    if len(live) != len(cards):
        return problem_found(
            name,
            f"NVML sees {len(live)} of the {len(cards)} NVIDIA cards on the PCI bus",
            "check `nvidia-smi` and the kernel log (`dmesg | grep -i nvrm`); a card that fell "
            "off the bus needs a reboot or a replacement",
        )
    return passed(
        name, f"NVML sees {len(live)} GPU(s): " + ", ".join(sorted({g.model for g in live}))
    )


def check_nodes(cards: Sequence[str], missing: Sequence[str]) -> Check:
    name = "gpu.nodes"
    if not cards:
        return not_applicable(name, "no NVIDIA GPU on this host")
    if missing:
        return problem_found(
            name,
            "missing: " + ", ".join(missing) + " (containers started now get no CUDA)",
            "run `nvidia-modprobe -u -c=0` and `nvidia-smi`, install the boot unit "
            "(`runner/install-gpu-unit.sh`), then restart the GPU containers",
        )
    return passed(name, "/dev/nvidiactl and /dev/nvidia-uvm exist")


def check_inventory(
    cards: Sequence[str], live: Sequence[Gpu] | GpuError, expected: Sequence[GpuEntry]
) -> Check:
    name = "gpu.inventory"
    if not cards:
        return not_applicable(name, "no NVIDIA GPU on this host")
    if isinstance(live, GpuError):
        return skipped(name, "NVML is not usable (see gpu.nvml)")
    diff = compare_inventory(live, expected)
    if not diff.ok:
        return problem_found(
            name,
            "; ".join(diff.lines()),
            "if a card was replaced or moved on purpose, run `ssp gpus --write` and commit "
            "config/hosts.yaml; until then apply attaches no GPUs",
        )
    return passed(name, f"the {len(expected)} GPUs match config/hosts.yaml by PCI address and UUID")


def check_lxd_gpus(
    cards: Sequence[str], seen: frozenset[str], expected: Sequence[GpuEntry]
) -> Check:
    name = "gpu.lxd"
    if not cards:
        return not_applicable(name, "no NVIDIA GPU on this host")
    missing = sorted({g.pci for g in expected} - seen)
    if missing:
        return problem_found(
            name,
            "LXD does not see GPUs at " + ", ".join(missing) + " (a gpu device there fails)",
            "compare `lxc info --resources` with `nvidia-smi`; restart LXD after a driver change",
        )
    return passed(name, f"LXD sees the inventory's {len(expected)} GPUs by PCI address")


@dataclass(frozen=True)
class GpuContainer:
    """A running GPU container, the UUIDs it should see, and `nvidia-smi -L` inside it."""

    name: str
    expected: frozenset[str]
    result: ExecResult | LxdError


def _uuids(listing: str) -> set[str]:
    return {w.strip("()") for w in listing.split() if w.strip("()").startswith("GPU-")}


def check_gpu_containers(containers: Sequence[GpuContainer]) -> Check:
    name = "gpu.containers"
    if not containers:
        return not_applicable(name, "no running container has a GPU")
    wrong = []
    for c in containers:
        if isinstance(c.result, LxdError):
            wrong.append(f"{c.name}: {c.result}")
        elif c.result.exit_code != 0:
            out = (c.result.stderr or c.result.stdout).strip().splitlines()
            wrong.append(
                f"{c.name}: nvidia-smi -L exit {c.result.exit_code}: {out[-1] if out else ''}"
            )
        elif _uuids(c.result.stdout) != c.expected:
            seen = sorted(_uuids(c.result.stdout))
            wrong.append(
                f"{c.name} sees {', '.join(seen) or 'no GPU'}, not {', '.join(sorted(c.expected))}"
            )
    if wrong:
        return problem_found(
            name,
            "; ".join(wrong),
            "fix gpu.nodes first, then restart each container named (`lxc restart --project "
            "PROJECT NAME`); LXD passes through only the nodes present when it starts",
        )
    return passed(name, f"{len(containers)} GPU container(s) see exactly their GPUs")
