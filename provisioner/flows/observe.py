"""The status observation: the host as it is now against `main`, for `ssp status` and
`ssp publish` alike.

Reads the checkout (for leases, quotas and the waitlist's merge order), the LXD project and
the shared servers, the storage pool, and NVML's live readings when a driver answers (without
one, the board shows holders only and says why). Who waits in line for GPUs is what the plan
says now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from provisioner.flows.checkout import landed_on_main, load_main
from provisioner.flows.reconcile import observe, plan_for
from provisioner.status.server import Live, PoolUse, ServerStatus, build
from provisioner.validation.validate import Validation, today_for
from provisioner.values.errors import GpuError
from provisioner.values.plandata import Wait
from provisioner.values.policymodels import Policy
from provisioner.values.state import HostApi, Image, Instance, LxdApi


class ProjectApi(LxdApi, HostApi, Protocol):
    """The policy's project: its instances and the host's pool (the LXD adapter has both)."""


# What a command hands in to reach LXD: the policy's project, and one per shared server.
Connect = Callable[[Policy], tuple[ProjectApi, Callable[[str], LxdApi]]]


@dataclasses.dataclass(frozen=True)
class Observed:
    """The host's status, and what it was made from (for `ssp publish`)."""

    status: ServerStatus
    policy: Policy
    instances: tuple[Instance, ...]
    sha: str
    images: tuple[Image, ...] | None = None  # ssp's images, when asked for


def live_gpus() -> tuple[dict[str, Live], str | None]:
    """NVML's readings by PCI address, or why there are none."""
    from provisioner.gpu.nvml import read_gpus  # noqa: PLC0415  (loads NVML bindings)

    try:
        gpus = read_gpus()
    except GpuError as e:
        return {}, f"no live GPU readings: {e}"
    return {g.pci: Live(g.utilization, g.memory_used, g.memory) for g in gpus}, None


def observe_status(
    repo: Path, now: datetime, connect: Connect, *, read_gpus: bool = True, images: bool = False
) -> tuple[Observed | None, Validation]:
    """The host as it is now against the checkout's main (and ssp's images, for `ssp
    publish`); None when config/ is not valid."""
    validation, sha = load_main(repo, now)
    config = validation.config
    if config is None:
        return None, validation
    policy = config.policy
    lxd, _servers = connect(policy)
    observed = observe(config, lxd, id_maps=False)
    got = lxd.storage_pool(policy.lxd.pool)
    pool = PoolUse(got.name, got.used, got.total) if got is not None else None
    live, why = live_gpus() if read_gpus else ({}, None)
    # Who waits in line for GPUs: the plan apply would make now, in merge order. Ports and
    # host IDs are the apply's business; only its Wait actions are read here.
    plan = plan_for(
        validation,
        observed,
        now=now,
        sha=sha,
        busy_ports=frozenset(),
        gpu_refusal=None,
        pin_ids=False,
        merged={p: landed.position for p, landed in landed_on_main(repo).items()},
    )
    status = build(
        policy=policy,
        inventory=config.inventory,
        requests=(*validation.valid, *validation.expired),
        instances=observed.instances,
        servers=observed.servers,
        now=now,
        today=today_for(config, now),
        pool=pool,
        live=live,
        waiting=[a for a in plan.actions if isinstance(a, Wait)],
    )
    if why:
        status = dataclasses.replace(status, notes=(*status.notes, why))
    found = tuple(lxd.images()) if images else None
    return Observed(status, policy, observed.instances, sha, found), validation
