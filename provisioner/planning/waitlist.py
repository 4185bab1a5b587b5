"""The waitlist: a merged request whose GPUs are taken waits in line instead of being refused.

Pure. `shortage` says whether a container request can have its GPUs now and, when it cannot,
what it waits for: its pinned GPUs that others hold, or for a count the GPUs of its model on
its server that are held, with when the first of them comes free (the day after its holder's
lease ends, as the status page counts). `in_line` numbers the waiting requests by merge order
(`allocate.line_key`), the order `allocate.gpus` served them in, so the place a member is told
is the order they get GPUs in.

The line is strict for GPUs an earlier request can use: a count that waits keeps the free
ones it could use (allocate.gpus), so a later count never jumps ahead by fitting in them. A
later request may take GPUs the earlier ones cannot use (another model, another server, or
GPUs a pin waiting for a held card does not pin): that never delays anyone ahead of it —
Slurm's rule for backfill. A container whose GPUs were handed back (`user.ssp.released`)
waits for nothing until it is started; started again, it asks for its GPUs and, when they
are taken, waits in line by its request's merge order like any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, timedelta

from provisioner.planning import allocate
from provisioner.values import spec as specs
from provisioner.values import state
from provisioner.values.loaded import Loaded, resources
from provisioner.values.models import ContainerRequest
from provisioner.values.plandata import Action, Inputs, Wait


def shortage(
    item: Loaded,
    want: specs.Spec,
    wanted: int,
    conflicts: Mapping[str, allocate.GpuConflict],
    inputs: Inputs,
    hosts: Mapping[str, str],
) -> Wait | None:
    """Why the request cannot have its GPUs now (its place is set by `in_line`), or None:
    a pin on a GPU another instance holds (naming the holder), or too few free."""
    req = item.request
    assert isinstance(req, ContainerRequest)  # noqa: S101  (callers pass containers)
    if req.name in conflicts:
        conflict = conflicts[req.name]
        message, holders = conflict.message, conflict.holders
    elif len(want.gpus) < wanted:
        message, holders = f"only {len(want.gpus)} of the {wanted} GPUs asked for are free", ()
    else:
        return None
    host = hosts.get(req.name) or resources(req, inputs.policy, inputs.inventory).host
    gpus, frees = _held_for(req, inputs, host)
    inst = next((i for i in inputs.observed if i.name == req.name and i.managed), None)
    return Wait(
        exists=inst is not None and not allocate.half_made(inst),
        name=req.name,
        request_path=item.path,
        place=0,
        message=message,
        gpus=gpus,
        frees=frees,
        gpu_holders=holders,
    )


def _held_for(
    req: ContainerRequest, inputs: Inputs, host_id: str
) -> tuple[tuple[int, ...], date | None]:
    """The GPUs on HOST_ID the request waits for (held by another instance), those whose
    holder's lease ends first first, and the day the first of them comes free (None when no
    holder's lease says)."""
    if host_id not in inputs.inventory.hosts:
        return (), None
    cards = inputs.inventory.hosts[host_id].gpus
    if isinstance(req.gpus, list):
        asked = [g for g in cards if g.index in req.gpus]
    else:
        asked = [g for g in cards if req.gpu_model is None or g.model == req.gpu_model]
    ends = _lease_ends(inputs, host_id, req.name)
    held = [(ends[g.pci.lower()], g.index) for g in asked if g.pci.lower() in ends]
    order = sorted(held, key=lambda h: (h[0] is None, h[0] or date.max, h[1]))
    first = order[0][0] if order else None
    return tuple(i for _, i in order), None if first is None else first + timedelta(days=1)


def _lease_ends(inputs: Inputs, host_id: str, me: str) -> dict[str, date | None]:
    """PCI address → the last day of the lease of the instance holding it on HOST_ID
    (None: it has no lease, an unmanaged instance), for every GPU another instance holds."""
    ends: dict[str, date | None] = {}
    clustered = bool(inputs.members)
    for inst in sorted(inputs.observed, key=lambda i: i.name):
        if inst.name == me or inst.config.get(state.RETIRED) or inst.gpus_released:
            continue
        if clustered and inst.location != host_id:
            continue
        for device in inst.devices.values():
            if device.get("type") == "gpu" and device.get("pci"):
                ends.setdefault(device["pci"].lower(), _day(inst.config.get(state.EXPIRES)))
    return ends


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def in_line(actions: Sequence[Action], valid: Sequence[Loaded], inputs: Inputs) -> list[Action]:
    """ACTIONS with each Wait given its place in line: 1 for the first by merge order."""
    order = {i.path: allocate.line_key(i, inputs.merged) for i in valid}
    waits = sorted(
        (a for a in actions if isinstance(a, Wait)),
        key=lambda w: order.get(w.request_path, (True, 0, w.request_path)),
    )
    place = {w.name: n for n, w in enumerate(waits, start=1)}
    return [replace(a, place=place[a.name]) if isinstance(a, Wait) else a for a in actions]
