"""One sampling pass (`ssp sample`): each GPU's reading, with its holder, into the usage
database.

NVML gives each GPU's utilisation, memory and processes; LXD's managed containers say who
holds which GPU (the `pci` of their `gpu` devices; in a cluster, only the containers on this
member). Each reading stands for the time since this host's previous pass, capped at the
policy's interval (see `provisioner.values.usage.Reading`). Readings older than the policy's
`usage.keep_days` are pruned in the same transaction. Without a GPU (no driver, or NVML finds
none) nothing is recorded and the database is not even created: the result says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from provisioner.host.usagedb import UsageDb
from provisioner.values import state
from provisioner.values.errors import GpuError
from provisioner.values.gpuinventory import Gpu
from provisioner.values.policymodels import UsagePolicy
from provisioner.values.state import Instance
from provisioner.values.usage import Reading

DAY_S = 86_400


class SampleLxd(Protocol):
    """What sampling needs from the LXD adapter."""

    def instances(self) -> list[Instance]: ...

    def members(self) -> dict[str, str]: ...

    def server_name(self) -> str: ...


@dataclass(frozen=True)
class Sampled:
    """What one pass did: the readings recorded (none, with `why`) and what was pruned."""

    readings: tuple[Reading, ...] = ()
    pruned: int = 0
    why: str = ""  # set when nothing was recorded
    database: str = ""


def holders(instances: Sequence[Instance], member: str = "") -> dict[str, Instance]:
    """Each GPU's holder by PCI address (lower case): the managed container whose `gpu`
    device names it; in a cluster (MEMBER set), only containers located on MEMBER."""
    found: dict[str, Instance] = {}
    for inst in sorted(instances, key=lambda i: i.name):
        if not inst.managed or (member and inst.location != member):
            continue
        for device in inst.devices.values():
            if device.get("type") == "gpu" and device.get("pci"):
                found.setdefault(device["pci"].lower(), inst)
    return found


def readings_of(
    gpus: Sequence[Gpu],
    holding: dict[str, Instance],
    *,
    at: int,
    seconds: int,
    host: str,
) -> list[Reading]:
    out = []
    for gpu in gpus:
        holder = holding.get(gpu.pci.lower())
        out.append(
            Reading(
                at=at,
                pci=gpu.pci.lower(),
                seconds=seconds,
                utilization=gpu.utilization,
                memory_used=gpu.memory_used,
                memory_total=gpu.memory,
                processes=len(gpu.processes),
                owner=holder.config.get(state.OWNER, "") if holder else "",
                container=holder.name if holder else "",
                host=host,
            )
        )
    return out


def sample(
    connect: Callable[[], SampleLxd],
    database: Path,
    usage: UsagePolicy,
    *,
    now: datetime,
    read_gpus: Callable[[], list[Gpu]],
) -> Sampled:
    """One pass; see the module's docstring. CONNECT reaches LXD, only once a GPU was read
    (a member without GPUs needs no LXD project). Raises UsageDbError and LxdError."""
    try:
        gpus = read_gpus()
    except GpuError as e:
        return Sampled(why=f"no GPU readings, nothing recorded: {e}", database=str(database))
    if not gpus:
        return Sampled(
            why="NVML reports no GPUs on this host, nothing recorded", database=str(database)
        )
    lxd = connect()
    member = lxd.server_name() if lxd.members() else ""
    holding = holders(lxd.instances(), member)
    at = int(now.timestamp())
    interval = usage.interval_minutes * 60
    with UsageDb(database) as db:
        last = db.last_at(member)
        seconds = interval if last is None else max(0, min(at - last, interval))
        readings = readings_of(gpus, holding, at=at, seconds=seconds, host=member)
        pruned = db.record(readings, prune_before=at - usage.keep_days * DAY_S)
    return Sampled(tuple(readings), pruned, database=str(database))
