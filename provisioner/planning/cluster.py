"""The plan's view of an LXD cluster: which member each request's container is on or goes to,
and which members are down. Pure.

On a single server (LXD not clustered) every container is on the inventory's host (the
request's `host:`, else the first), nothing is targeted and nothing is down. In a cluster the
inventory's host ids are the members' names: an existing container is where LXD says it is
(its `location`), a new one is placed by `provisioner.planning.placement` from what each member's
containers already take, and a member is down when LXD says it is not Online, or when every
instance on it reads back in the `Error` state or without any config (LXD 5.0.2 answers
that way for a member it cannot reach, before and after its heartbeat has timed out).

While any member is down the plan sees only part of the cluster: the down member's
containers are listed without their devices and config, so the SSH ports and host ID ranges
they hold are invisible. Nothing new is handed out from that view (`Where.partial`): what
needs a new port or ID range waits until every member answers, while changes that need no
new allocation still go ahead. GPUs are per member and each up member is seen whole, so GPUs
there are still shared out as usual.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from provisioner.planning.placement import Need, Placement, Usage, place
from provisioner.values import state
from provisioner.values.loaded import resources
from provisioner.values.models import ContainerRequest, Inventory
from provisioner.values.plandata import Refuse
from provisioner.values.policymodels import Policy
from provisioner.values.sizes import size_bytes
from provisioner.values.state import Instance

ONLINE = "Online"
UNREACHABLE = "Error"  # an instance's status when its member does not answer


@dataclass(frozen=True)
class Where:
    """Where each request's container is, or goes."""

    host: Mapping[str, str] = field(default_factory=dict)  # name → inventory host id
    target: Mapping[str, str] = field(default_factory=dict)  # name → member, for a create
    down: frozenset[str] = frozenset()  # members that are down now
    unplaced: Mapping[str, str] = field(default_factory=dict)  # name → why no member fits
    clustered: bool = False

    @property
    def partial(self) -> str | None:
        """Why nothing new may be handed out now (some member is down), or None."""
        if not self.down:
            return None
        return (
            f"member down: server '{', '.join(sorted(self.down))}' does not answer, so the "
            "ports and host ID ranges its containers hold cannot be seen; ssp hands out no new "
            "ones until it is back, and the next apply after that does this"
        )

    def waiting(self, name: str, path: str, allocates: bool) -> Refuse | None:
        """`name`'s refusal when it needs something new (`allocates`) from a partial view."""
        why = self.partial
        if not allocates or why is None:
            return None
        return Refuse(name=name, request_path=path, message=why, member_down=True)

    def down_message(self, name: str) -> str | None:
        """Why `name` cannot be touched now (its member is down), or None."""
        member = self.host.get(name)
        return None if member is None else member_down(member, self.down)

    def blocked(self, name: str, inventory: Inventory) -> tuple[str, bool] | None:
        """(why, member down?) when the plan must leave `name` alone now; None otherwise."""
        if name in self.unplaced:
            return self.unplaced[name], False
        down = self.down_message(name)
        if down is not None:
            return down, True
        member = self.host.get(name)
        if self.clustered and member not in inventory.hosts:
            return (
                f"it is on server '{member}', which config/hosts.yaml does not list; an admin "
                "adds that server to the inventory",
                False,
            )
        return None

    def member(self, name: str) -> str:
        """The cluster member `name` is on or goes to; "" on a single server."""
        return self.host.get(name, "") if self.clustered else ""

    def address(self, name: str, inventory: Inventory) -> str:
        """The name members reach `name`'s server by; "" on a single server (the policy's)."""
        member = self.member(name)
        if not member:
            return ""
        host = inventory.hosts.get(member)
        return (host.address if host is not None else None) or member


def member_down(member: str, down: frozenset[str]) -> str | None:
    """The report for a request whose container is on (or goes to) a member that is down."""
    if member not in down:
        return None
    return (
        f"member down: server '{member}' does not answer; the next apply after it is back does this"
    )


def members_seen(listed: Mapping[str, Sequence[Instance]]) -> dict[str, str]:
    """The members an all-projects listing shows holding an instance, each as Online: what a
    pass plans with first, so that a no-op needs no listing of the members. A member LXD
    cannot reach is still found down from its instances (`down_members`); one holding no
    instance, or a status its instances do not show (evacuated), only matters to a plan with
    something to do, which reads the members' own states. {} on a single server (LXD 5.0.2
    gives its instances the location `none`)."""
    return {
        i.location: ONLINE
        for instances in listed.values()
        for i in instances
        if i.location and i.location != "none"
    }


def down_members(members: Mapping[str, str], observed: Sequence[Instance]) -> frozenset[str]:
    """Members that are not Online, those whose every instance is unreachable, and those with
    an instance listed without any config (LXD always keeps its own `volatile.*` keys on a
    real one: an empty config is a member LXD could not read)."""
    down = {m for m, status in members.items() if status != ONLINE}
    statuses: dict[str, set[str]] = {}
    for inst in observed:
        if inst.location:
            statuses.setdefault(inst.location, set()).add(inst.status)
            if not inst.config and inst.location in members:
                down.add(inst.location)
    down |= {m for m, seen in statuses.items() if m in members and seen == {UNREACHABLE}}
    return frozenset(down)


def _limit(value: str | None) -> int:
    if not value:
        return 0
    try:
        return size_bytes(value)
    except ValueError:
        return int(value) if value.isdigit() else 0


def _usage(observed: Sequence[Instance], members: Sequence[str]) -> dict[str, Usage]:
    """What each member's managed, not retired, instances take (from their LXD config)."""
    out = {m: Usage() for m in members}
    for inst in observed:
        if inst.location not in out or not inst.managed or inst.config.get(state.RETIRED):
            continue
        root = inst.devices.get("root", {})
        gpus = {
            d["pci"].lower()
            for d in inst.devices.values()
            if d.get("type") == "gpu" and d.get("pci")
        }
        was = out[inst.location]
        out[inst.location] = Usage(
            was.cpu + _limit(inst.config.get("limits.cpu")),
            was.memory + _limit(inst.config.get("limits.memory")),
            was.disk + _limit(root.get("size")),
            was.gpus | frozenset(gpus),
        )
    return out


def where(
    containers: Sequence[tuple[str, ContainerRequest]],
    policy: Policy,
    inventory: Inventory,
    observed: Sequence[Instance],
    members: Mapping[str, str],
) -> Where:
    """Each (path, request)'s host, oldest path first; `members`: member → LXD status."""
    if not members:
        return Where(
            host={req.name: resources(req, policy, inventory).host for _, req in containers}
        )
    in_cluster = {h: inventory.hosts[h] for h in sorted(inventory.hosts) if h in members}
    located = {i.name: i.location for i in observed if i.location}
    needs = []
    refused: dict[str, str] = {}
    for _path, req in sorted(containers, key=lambda c: c[0]):
        if req.name not in located and req.host is not None and req.host not in in_cluster:
            refused[req.name] = (
                f"server '{req.host}' is in config/hosts.yaml but not a member of the LXD cluster"
            )
            continue
        res = resources(req, policy, inventory)
        needs.append(
            Need(
                name=req.name,
                host=req.host,
                gpus=res.counted,
                pinned=res.pinned,
                gpu_model=req.gpu_model,
                cpu=res.cpu,
                memory=res.memory,
                disk=res.disk,
            )
        )
    down = down_members(members, observed)
    found: Placement = place(needs, in_cluster, located, _usage(observed, list(in_cluster)), down)
    return Where(
        host={n: p.member for n, p in found.placed.items()},
        target={n: p.member for n, p in found.placed.items() if p.new},
        down=down,
        unplaced={**refused, **found.unplaced},
        clustered=True,
    )
