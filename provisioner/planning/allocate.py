"""How the plan shares out what is scarce: GPUs, forwarded ports and host ID blocks. Pure.

Each allocation is stable: whatever a container already holds stays its own while nobody
else has a better claim, so planning twice gives the same answer. For GPUs nobody ever has a
better claim: a card never moves under a container, so a pin on a GPU that a count was given
is refused rather than served by moving the count (it waits for the card). Requests are
taken in line order (merge order, then path: `line_key`), so the result does not depend on
the order LXD lists instances in, and when GPUs come free the first in line gets them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from provisioner.values import idranges, state
from provisioner.values import spec as specs
from provisioner.values.idranges import IdRange
from provisioner.values.loaded import Loaded, resources
from provisioner.values.models import ContainerRequest, GpuEntry
from provisioner.values.plandata import Inputs
from provisioner.values.state import Instance


def by_name(observed: Iterable[Instance]) -> dict[str, Instance]:
    return {i.name: i for i in observed}


def line_key(item: Loaded, merged: Mapping[str, int]) -> tuple[bool, int, str]:
    """The waitlist's order: when the request first landed on main (`Inputs.merged`), then
    its path; a request not on main yet (a PR's own file) after all that are."""
    return (item.path not in merged, merged.get(item.path, 0), item.path)


def ports(inputs: Inputs) -> tuple[dict[str, tuple[int | None, int | None]], set[int]]:
    """Each managed instance's current (ssh, rdp) ports, and every port taken in the project."""
    held: dict[str, tuple[int | None, int | None]] = {}
    taken = set(inputs.busy_ports)
    for inst in inputs.observed:
        if inst.managed and inst.config.get(state.STATE) == "creating":
            # Half-made: it is made again, and nobody was ever told its port. If that port
            # is what stopped it (taken on the host), it must not be kept.
            continue
        for device in inst.devices.values():
            port = specs.listen_port(device)
            if port is not None:
                taken.add(port)
        if inst.managed:
            held[inst.name] = (
                specs.listen_port(inst.devices.get(specs.SSH_DEVICE, {})),
                specs.listen_port(inst.devices.get(specs.RDP_DEVICE, {})),
            )
    return held, taken


class PortPool:
    def __init__(self, first: int, last: int, taken: set[int]) -> None:
        self._range = range(first, last + 1)
        self._taken = taken

    def keep_or_new(self, current: int | None) -> int | None:
        if current is not None and current in self._range:
            return current
        for port in self._range:
            if port not in self._taken:
                self._taken.add(port)
                return port
        return None


# A GPU is told apart by its server and its PCI address: two servers of one make have cards
# at the same addresses. On a single server the server part is "".
Slot = tuple[str, str]


def _slot(inputs: Inputs, member: str, pci: str) -> Slot:
    return (member if inputs.members else "", pci.lower())


def _held_outside(inputs: Inputs, containers: Sequence[Loaded]) -> dict[Slot, str]:
    """GPUs attached to instances this plan does not manage → the holder.

    An unmanaged instance, or a managed one whose request is invalid right now (left alone),
    still has its GPUs: giving them to a request would double-book them. A retired instance
    is stopped and its lease is over, so its GPUs are free again.
    """
    planned = {item.request.name for item in containers}
    held: dict[Slot, str] = {}
    for inst in sorted(inputs.observed, key=lambda i: i.name):
        if (inst.managed and inst.name in planned) or inst.config.get(state.RETIRED):
            continue
        for device in inst.devices.values():
            if device.get("type") == "gpu" and device.get("pci"):
                held.setdefault(_slot(inputs, inst.location, device["pci"]), inst.name)
    return held


@dataclass(frozen=True)
class GpuConflict:
    """Why a request's pinned GPUs cannot be had, and which managed containers hold them."""

    message: str
    holders: tuple[str, ...] = ()  # containers of count requests that were given them


def _held_by_counts(
    inputs: Inputs,
    counted: Sequence[tuple[ContainerRequest, str, int]],
    outside: Mapping[Slot, str],
) -> dict[str, list[GpuEntry]]:
    """The GPUs each existing count container holds and keeps, lowest first, up to its count.

    A count's GPUs, once given, are recorded in its gpu devices (as its port is in its proxy
    device) and stay its own: a pin that comes later must not take them, or apply would
    swap the card under a running program. A half-made container never ran with them, a
    retired one is stopped with its lease over: neither holds any.
    """
    observed = by_name(inputs.observed)
    taken: set[Slot] = set(outside)
    held: dict[str, list[GpuEntry]] = {}
    exclusive = inputs.policy.gpu_sharing == "exclusive"
    for req, host_id, want in counted:
        inst = observed.get(req.name)
        if inst is None or not inst.managed or half_made(inst) or inst.config.get(state.RETIRED):
            continue
        by_pci = {g.pci: g for g in inputs.inventory.hosts[host_id].gpus}
        current = [
            by_pci[d["pci"]]
            for d in inst.devices.values()
            if d.get("type") == "gpu" and d.get("pci") in by_pci
        ]
        free = [g for g in current if not exclusive or _slot(inputs, host_id, g.pci) not in taken]
        keep = sorted(free, key=lambda g: g.index)[:want]
        if exclusive:
            taken |= {_slot(inputs, host_id, g.pci) for g in keep}
        held[req.name] = keep
    return held


def gpus(
    inputs: Inputs, containers: Sequence[Loaded], hosts: Mapping[str, str] | None = None
) -> tuple[dict[str, tuple[GpuEntry, ...]], dict[str, GpuConflict]]:
    """Concrete GPUs per request: pinned ones as listed; counts from free ones, kept stable.

    `hosts`: the inventory host each request's container is on or goes to (in a cluster,
    from placement); by default the request's `host:` or the first host. Also returns, per
    request, why a pinned GPU cannot be had: another instance holds it, or an existing
    container of a count request was given it (GPUs never move under a container, so the
    pin waits, whatever its age). Requests are taken in line order (`line_key`): counts fill
    from the lowest free GPUs nobody pins, and one that cannot have all it asks for keeps the
    free ones it got, so no later count takes them (it waits for the rest; see make_plan).
    A later request may still take GPUs the earlier one cannot use (another model, another
    server): that never delays it, which is Slurm's rule for backfill.
    """
    containers = sorted(containers, key=lambda i: line_key(i, inputs.merged))
    exclusive = inputs.policy.gpu_sharing == "exclusive"
    outside = _held_outside(inputs, containers) if exclusive else {}
    result: dict[str, tuple[GpuEntry, ...]] = {}
    conflicts: dict[str, GpuConflict] = {}
    pinned: list[tuple[ContainerRequest, str, list[GpuEntry]]] = []
    counted: list[tuple[ContainerRequest, str, int]] = []
    # Handed back (`state.RELEASED`): it holds none and asks for none until started again.
    released = {i.name for i in inputs.observed if i.gpus_released}
    for item in (c for c in containers if c.request.name not in released):
        req = item.request
        assert isinstance(req, ContainerRequest)  # noqa: S101  (callers pass containers)
        res = resources(req, inputs.policy, inputs.inventory)
        host_id = (hosts or {}).get(req.name, res.host)
        if host_id not in inputs.inventory.hosts:
            continue  # on a server the inventory does not list: the plan refuses it
        by_index = {g.index: g for g in inputs.inventory.hosts[host_id].gpus}
        if res.pinned:
            if not all(i in by_index for i in res.pinned):
                continue  # placed where these indices do not exist: the plan refuses it
            pinned.append((req, host_id, [by_index[i] for i in res.pinned]))
        elif res.counted:
            counted.append((req, host_id, res.counted))
    held = _held_by_counts(inputs, counted, outside)
    holder = {
        _slot(inputs, host_id, g.pci): req.name
        for req, host_id, _ in counted
        for g in held.get(req.name, ())
    }
    used: set[Slot] = set(outside) | set(holder) if exclusive else set()
    for req, host_id, pins in pinned:
        result[req.name] = tuple(pins)
        reasons: list[str] = []
        holders: list[str] = []
        for g in pins:
            slot = _slot(inputs, host_id, g.pci)
            if slot in outside:
                reasons.append(
                    f"GPU {g.index} ({g.pci}) is in use by instance '{outside[slot]}', "
                    "which no valid request manages; it is yours once that is given back or "
                    "an admin frees it"
                )
            elif exclusive and slot in holder and holder[slot] != req.name:
                holders.append(holder[slot])
                reasons.append(
                    f"GPU {g.index} ({g.pci}) is held by container '{holder[slot]}', which was "
                    "given it for its GPU count; GPUs never move under a container, so it is "
                    "yours once that is given back (or pin a free GPU, or ask for a count)"
                )
            elif exclusive:
                used.add(slot)
        if reasons:
            conflicts[req.name] = GpuConflict("; ".join(reasons), tuple(dict.fromkeys(holders)))
    # Counts keep what they hold, then fill the rest from the lowest free index.
    for req, host_id, want in counted:
        mine = list(held.get(req.name, ()))
        mine += _free(inputs, host_id, req.gpu_model, used, mine, want - len(mine), exclusive)
        result[req.name] = tuple(sorted(mine, key=lambda g: g.index))
    return result, conflicts


def _free(
    inputs: Inputs,
    host_id: str,
    model: str | None,
    used: set[Slot],
    mine: Sequence[GpuEntry],
    count: int,
    exclusive: bool,
) -> list[GpuEntry]:
    """Up to `count` more GPUs of `model` on the host, lowest index first, marked used."""
    out: list[GpuEntry] = []
    for gpu in sorted(inputs.inventory.hosts[host_id].gpus, key=lambda g: g.index):
        if len(out) >= count:
            break
        slot = _slot(inputs, host_id, gpu.pci)
        if (model is None or gpu.model == model) and slot not in used and gpu not in mine:
            out.append(gpu)
            if exclusive:
                used.add(slot)
    return out


@dataclass(frozen=True)
class Ids:
    """The host ID block each wanted container gets, and which ones had to move."""

    blocks: Mapping[str, IdRange]
    moved: Mapping[str, str]  # name → why its block changed (it overlapped another's)


NO_IDS = (
    "no free host ID range left in root's subordinate IDs (/etc/subuid and /etc/subgid): "
    "an admin must give root a larger range"
)


def host_ids(inputs: Inputs, containers: Sequence[Loaded]) -> Ids:
    """Host ID blocks like ports: kept when clear of everyone else's, else a new free one.

    Every instance not planned here keeps what it has (other projects', unmanaged ones,
    retired ones): those ranges are taken. The wanted containers that exist keep theirs first,
    in path order, so a new container never takes a block an existing one holds; of two that
    overlap, the later path moves. Then new (and moved) containers get the first free blocks.
    """
    if not inputs.pin_ids:
        return Ids({}, {})
    project = inputs.policy.lxd.project
    observed = by_name(inputs.observed)
    names = [i.request.name for i in sorted(containers, key=lambda i: i.path)]
    remade = {n for n in names if n in observed and half_made(observed[n])}
    taken = [r for u in inputs.id_maps if u.project != project for r in u.ranges()]
    for other in inputs.observed:
        if other.name not in names or not other.managed:
            taken += idranges.use_of(project, other.name, other.config).ranges()
    alloc = idranges.Allocator(inputs.id_spans, taken)
    blocks: dict[str, IdRange] = {}
    moved: dict[str, str] = {}
    for name in names:
        inst = observed.get(name)
        if inst is None or name in remade or not inst.managed:
            continue
        use = idranges.use_of(project, name, inst.config)
        # Not pinned yet (made before ssp chose blocks): adopt the one it runs with, if any.
        have = idranges.pinned(inst.config) or ((use.current or use.next) if use.isolated else None)
        if have is not None and alloc.free(have):
            alloc.take(have)
            blocks[name] = have
            now = use.current
            if inst.running and now is not None and now != have and alloc.free(now):
                alloc.take(now)  # in use until its restart
        elif have is not None:
            inside = any(have.within(span) for span in inputs.id_spans)
            moved[name] = (
                f"its host IDs {have} overlapped another instance's"
                if inside
                else f"its host IDs {have} were outside root's subordinate IDs"
            )
    for name in names:
        if name not in blocks:
            block = alloc.new()
            if block is not None:
                blocks[name] = block
    return Ids(blocks, moved)


def half_made(inst: Instance) -> bool:
    return inst.managed and inst.config.get(state.STATE) == "creating"
