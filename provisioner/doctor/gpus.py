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


# What `ssp doctor` runs in each running GPU container: one line per GPU it sees, the driver
# version of the userspace (libnvidia-ml) it runs with.
DRIVER_QUERY = ("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader")


@dataclass(frozen=True)
class DriverInside:
    """A running GPU container and what DRIVER_QUERY said in it."""

    name: str
    result: ExecResult | LxdError


def _inside_version(result: ExecResult | LxdError) -> tuple[str | None, str]:
    """The version the container runs with, or None and what nvidia-smi said instead."""
    if isinstance(result, LxdError):
        return None, str(result)
    lines = {line.strip() for line in result.stdout.splitlines() if line.strip()}
    if result.exit_code != 0 or len(lines) != 1:
        said = (result.stderr or result.stdout).strip().splitlines()
        return None, f"nvidia-smi exit {result.exit_code}: {said[0] if said else 'no output'}"
    return lines.pop(), ""


def check_driver_versions(
    cards: Sequence[str],
    host: str | GpuError,
    containers: Sequence[DriverInside],
    userspace: str,
    project: str,
) -> Check:
    """Each running GPU container's NVIDIA userspace against the host's driver.

    After a driver upgrade the kernel module is new while a running container still holds
    the old libraries (`nvidia.runtime` injects them at start only), so CUDA fails there
    with "Driver/library version mismatch" until it restarts. With `gpu_userspace: image`
    a restart does not help: the image's userspace must be rebuilt for the new driver.
    """
    name = "gpu.driver"
    if not cards:
        return not_applicable(name, "no NVIDIA GPU on this host")
    if isinstance(host, GpuError):
        return skipped(name, "the host's driver version is unknown (see gpu.nvml)")
    if not containers:
        return not_applicable(name, f"driver {host}; no running container has a GPU")
    stale = []
    for c in containers:
        version, why = _inside_version(c.result)
        if version != host:
            stale.append(f"{c.name} ({version or why})")
    if not stale:
        return passed(name, f"driver {host} in the host and its {len(containers)} GPU container(s)")
    names = " ".join(c.split(" (", 1)[0] for c in stale)
    if userspace == "image":
        fix = (
            f"rebuild the image with the NVIDIA userspace of driver {host} (the admin guide's "
            f"driver-upgrade runbook), then restart: lxc restart --project {project} {names}"
        )
    else:
        fix = (
            f"restart them so the runtime injects driver {host}: "
            f"lxc restart --project {project} {names}"
        )
    return problem_found(
        name, f"the host runs driver {host}; not these containers: " + "; ".join(stale), fix
    )
