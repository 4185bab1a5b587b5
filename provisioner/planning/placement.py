"""Placement: which server (LXD cluster member) each new container goes to. Pure.

A container that exists stays where it is: placement never moves one, whatever its request
says now. A new one goes to the request's `host:` when it names one; otherwise to a member
that is up and has the GPUs it wants free (how many, of which model, or the very indices it
pins), and among those to the one with the most room left once it is there: the tightest of
its CPU, memory and disk headroom, as a share of the member's size, decides, then the name.

GPUs are told apart per member by PCI address (two identical servers have the same
addresses). The GPUs a new container would take are reserved as it is placed, lowest index
first, so that later requests in the same pass see them taken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from provisioner.values.models import GpuEntry, Host
from provisioner.values.sizes import size_bytes


@dataclass(frozen=True)
class Need:
    """What one container asks of the server it goes to."""

    name: str
    host: str | None = None  # the request's `host:`
    gpus: int = 0  # a count of any free GPUs
    pinned: tuple[int, ...] = ()  # or these nvidia-smi indices
    gpu_model: str | None = None
    cpu: int = 0
    memory: int = 0  # bytes
    disk: int = 0  # bytes


@dataclass(frozen=True)
class Usage:
    """What a member already gives out: to its containers, and to those placed before."""

    cpu: int = 0
    memory: int = 0
    disk: int = 0
    gpus: frozenset[str] = frozenset()  # PCI addresses held

    def plus(self, need: Need, gpus: Sequence[GpuEntry]) -> Usage:
        return Usage(
            self.cpu + need.cpu,
            self.memory + need.memory,
            self.disk + need.disk,
            self.gpus | {g.pci for g in gpus},
        )


@dataclass(frozen=True)
class Placed:
    name: str
    member: str
    why: str  # for the plan's detail: "already on node1", "host: node2", ...
    gpus: tuple[GpuEntry, ...] = ()  # reserved for a new container; () for an existing one
    new: bool = True


@dataclass(frozen=True)
class Placement:
    placed: Mapping[str, Placed] = field(default_factory=dict)
    unplaced: Mapping[str, str] = field(default_factory=dict)  # name → why not


def _model_ok(gpu: GpuEntry, need: Need) -> bool:
    return need.gpu_model is None or gpu.model == need.gpu_model


def _free_gpus(host: Host, usage: Usage, need: Need) -> tuple[GpuEntry, ...] | None:
    """The GPUs `need` would take on this member, or None when it lacks them."""
    free = [g for g in sorted(host.gpus, key=lambda g: g.index) if g.pci not in usage.gpus]
    if need.pinned:
        by_index = {g.index: g for g in free if _model_ok(g, need)}
        if not all(i in by_index for i in need.pinned):
            return None
        return tuple(by_index[i] for i in need.pinned)
    matching = [g for g in free if _model_ok(g, need)]
    if len(matching) < need.gpus:
        return None
    return tuple(matching[: need.gpus])


def _headroom(host: Host, usage: Usage, need: Need) -> float | None:
    """The tightest share left of CPU, memory and disk once `need` is there; None: no room."""
    shares = [
        (host.cpu - usage.cpu - need.cpu) / host.cpu,
        (size_bytes(host.memory) - usage.memory - need.memory) / size_bytes(host.memory),
    ]
    if host.disk:
        shares.append((size_bytes(host.disk) - usage.disk - need.disk) / size_bytes(host.disk))
    least = min(shares)
    return None if least < 0 else least


def _wants(need: Need) -> str:
    what = f"GPUs {', '.join(map(str, need.pinned))}" if need.pinned else f"{need.gpus} GPU(s)"
    model = f" of model {need.gpu_model!r}" if need.gpu_model else ""
    return f"{what}{model} free"


def _choose(
    need: Need, members: Mapping[str, Host], usage: Mapping[str, Usage], down: frozenset[str]
) -> tuple[str, tuple[GpuEntry, ...], str] | str:
    """(member, its GPUs, why) for a new container without `host:`, or why none will do."""
    up = [m for m in sorted(members) if m not in down]
    if not up:
        return "no server is up to take it"
    with_gpus = {
        m: gpus for m in up if (gpus := _free_gpus(members[m], usage[m], need)) is not None
    }
    if not with_gpus:
        return f"no server that is up has {_wants(need)}"
    roomy = {
        m: room for m in with_gpus if (room := _headroom(members[m], usage[m], need)) is not None
    }
    if not roomy:
        return (
            f"the servers with {_wants(need)} ({', '.join(with_gpus)}) have too little "
            "CPU, memory or disk left for it"
        )
    best = max(sorted(roomy), key=roomy.__getitem__)  # the first by name among equals
    why = f"{_wants(need)}, most room left" if need.gpus or need.pinned else "most room left"
    return best, with_gpus[best], why


def place(
    needs: Sequence[Need],
    members: Mapping[str, Host],
    existing: Mapping[str, str],
    usage: Mapping[str, Usage] | None = None,
    down: frozenset[str] = frozenset(),
) -> Placement:
    """Where each need goes, in the order given (the caller passes the oldest first).

    `existing`: each existing container's member (its LXD `location`); `usage`: what each
    member gives out already; `down`: members that are offline now. A new container with
    `host:` goes there even when that member is down (the caller reports it "member down");
    without `host:` it goes only to a member that is up.
    """
    left = {m: (usage or {}).get(m, Usage()) for m in members}
    placed: dict[str, Placed] = {}
    unplaced: dict[str, str] = {}
    for need in needs:
        if need.name in existing:
            member = existing[need.name]
            placed[need.name] = Placed(need.name, member, f"already on {member}", new=False)
            continue
        if need.host is not None:
            if need.host not in members:
                unplaced[need.name] = f"host '{need.host}' is not in config/hosts.yaml"
                continue
            gpus = _free_gpus(members[need.host], left[need.host], need) or ()
            chosen: tuple[str, tuple[GpuEntry, ...], str] | str = (
                need.host,
                gpus,
                f"host: {need.host}",
            )
        else:
            chosen = _choose(need, members, left, down)
        if isinstance(chosen, str):
            unplaced[need.name] = chosen
            continue
        member, gpus, why = chosen
        left[member] = left[member].plus(need, gpus)
        placed[need.name] = Placed(need.name, member, why, gpus)
    return Placement(placed, unplaced)
