"""The plan: desired state (valid requests on main) vs observed LXD state → actions. Pure.

`make_plan` decides everything — which GPUs a count becomes, which port a new container
gets, what to create, change, start, retire or refuse — and returns an immutable `Plan`.
`apply` only walks it. Allocation is stable: a container keeps the GPUs and ports it already
has as long as they are still its to have, so running the plan twice changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from provisioner import idranges, state
from provisioner import spec as specs
from provisioner.idranges import IdMapUse, IdRange
from provisioner.models import AccountRequest, ContainerRequest, GpuEntry, Inventory, Policy
from provisioner.rules import Loaded, resources
from provisioner.state import Instance


@dataclass(frozen=True)
class Create:
    spec: specs.Spec
    replace_half_made: bool = False
    kind: str = "create"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def detail(self) -> str:
        again = " (replacing a half-made one)" if self.replace_half_made else ""
        return f"from {self.spec.image}{again}"


@dataclass(frozen=True)
class Update:
    spec: specs.Spec
    config: Mapping[str, str | None]  # keys to set (None: remove)
    devices: bool  # the device set differs: replace it
    push_keys: bool  # authorized_keys inside must be rewritten
    restart: bool  # a change that only takes effect on start (idmap)
    reasons: tuple[str, ...]
    kind: str = "update"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def detail(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True)
class Start:
    spec: specs.Spec
    kind: str = "start"
    detail: str = "found stopped"

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Ready:
    """Nothing to change: reported so the result can still show IP, ports and GPUs."""

    spec: specs.Spec
    kind: str = "ready"
    detail: str = ""

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Retire:
    name: str
    owner: str
    request_path: str
    reason: str
    today: date
    kind: str = "retire"

    @property
    def detail(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Refuse:
    name: str
    request_path: str
    message: str
    kind: str = "refuse"

    @property
    def detail(self) -> str:
        return self.message


@dataclass(frozen=True)
class AccountAction:
    account: specs.AccountSpec
    verb: str  # "create" | "update" | "lock", or "keep": nothing to change, reported only
    ipv4: tuple[str, ...] = ()  # the server's addresses as observed (for "keep")
    kind: str = "account"

    @property
    def name(self) -> str:
        return f"{self.account.instance}:{self.account.name}"

    @property
    def detail(self) -> str:
        if self.verb == "keep":
            return f"unchanged account {self.account.name}"
        return f"{self.verb} account {self.account.name}"


@dataclass(frozen=True)
class Drift:
    name: str
    message: str


Action = Create | Update | Start | Ready | Retire | Refuse | AccountAction


def unchanged(action: Action) -> bool:
    """Nothing to do, only to report: a container that is as asked, an account likewise."""
    return isinstance(action, Ready) or (
        isinstance(action, AccountAction) and action.verb == "keep"
    )


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    drift: tuple[Drift, ...] = ()
    sha: str = ""

    @property
    def changes(self) -> tuple[Action, ...]:
        """The actions that change something: not a Ready container, not a kept account."""
        return tuple(a for a in self.actions if not unchanged(a))

    def count(self, kind: str) -> int:
        return sum(1 for a in self.actions if a.kind == kind)


@dataclass(frozen=True)
class Inputs:
    """Everything the plan depends on, gathered by apply before planning."""

    policy: Policy
    inventory: Inventory
    valid: tuple[Loaded, ...]
    expired: tuple[Loaded, ...]
    observed: tuple[Instance, ...]
    today: date
    sha: str = ""
    busy_ports: frozenset[int] = frozenset()
    gpu_refusal: str | None = None  # why GPUs may not be attached now (None: they may)
    skipped: frozenset[str] = field(default_factory=frozenset)  # invalid request paths
    servers: tuple[Instance, ...] = ()  # the shared servers' instances (accounts live there)
    # Where containers' host ID blocks may go (root's subordinate IDs), and every instance's
    # blocks on the host, in all projects: a new block must be clear of all of them.
    id_spans: tuple[IdRange, ...] = idranges.LXD_DEFAULT_SPANS
    id_maps: tuple[IdMapUse, ...] = ()
    # False in a project that forbids low-level keys (ssp's restricted project): LXD chooses
    # the blocks there, and apply makes new containers one create at a time and checks them.
    pin_ids: bool = True


def _by_name(observed: Iterable[Instance]) -> dict[str, Instance]:
    return {i.name: i for i in observed}


def _ports(inputs: Inputs) -> tuple[dict[str, tuple[int | None, int | None]], set[int]]:
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


class _PortPool:
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


def _held_outside(inputs: Inputs, containers: Sequence[Loaded]) -> dict[str, str]:
    """GPUs (by PCI address) attached to instances this plan does not manage → the holder.

    An unmanaged instance, or a managed one whose request is invalid right now (left alone),
    still has its GPUs: giving them to a request would double-book them. A retired instance
    is stopped and its lease is over, so its GPUs are free again.
    """
    planned = {item.request.name for item in containers}
    held: dict[str, str] = {}
    for inst in sorted(inputs.observed, key=lambda i: i.name):
        if (inst.managed and inst.name in planned) or inst.config.get(state.RETIRED):
            continue
        for device in inst.devices.values():
            if device.get("type") == "gpu" and device.get("pci"):
                held.setdefault(device["pci"].lower(), inst.name)
    return held


def _allocate_gpus(
    inputs: Inputs, containers: Sequence[Loaded]
) -> tuple[dict[str, tuple[GpuEntry, ...]], dict[str, str]]:
    """Concrete GPUs per request: pinned ones as listed; counts from free ones, kept stable.

    Also returns, per request, why a pinned GPU cannot be had (another instance holds it).
    Requests are taken in path order, so the result does not depend on the input order.
    """
    containers = sorted(containers, key=lambda i: i.path)
    observed = _by_name(inputs.observed)
    exclusive = inputs.policy.gpu_sharing == "exclusive"
    outside = _held_outside(inputs, containers) if exclusive else {}
    result: dict[str, tuple[GpuEntry, ...]] = {}
    conflicts: dict[str, str] = {}
    pinned_everywhere: set[str] = set()
    counted: list[tuple[Loaded, ContainerRequest, str, int]] = []
    for item in containers:
        req = item.request
        assert isinstance(req, ContainerRequest)  # noqa: S101  (callers pass containers)
        res = resources(req, inputs.policy, inputs.inventory)
        host = inputs.inventory.hosts[res.host]
        by_index = {g.index: g for g in host.gpus}
        if res.pinned:
            result[req.name] = tuple(by_index[i] for i in res.pinned)
            pinned_everywhere |= {by_index[i].pci for i in res.pinned}
            busy = [by_index[i] for i in res.pinned if by_index[i].pci in outside]
            if busy:
                conflicts[req.name] = "; ".join(
                    f"GPU {g.index} ({g.pci}) is in use by instance '{outside[g.pci]}', "
                    "which no valid request manages; an admin must free it first"
                    for g in busy
                )
        elif res.counted:
            counted.append((item, req, res.host, res.counted))
    used = set(pinned_everywhere) | set(outside) if exclusive else set()
    # First pass: keep what each count-request already holds, if still free.
    kept: dict[str, list[GpuEntry]] = {}
    for _item, req, host_id, want in counted:
        by_pci = {g.pci: g for g in inputs.inventory.hosts[host_id].gpus}
        inst = observed.get(req.name)
        current = (
            []
            if inst is None
            else [
                by_pci[d["pci"]]
                for d in inst.devices.values()
                if d.get("type") == "gpu" and d.get("pci") in by_pci
            ]
        )
        keep = [g for g in sorted(current, key=lambda g: g.index) if g.pci not in used][:want]
        used |= {g.pci for g in keep} if exclusive else set()
        kept[req.name] = keep
    # Second pass: fill the rest from the lowest free index.
    for _item, req, host_id, want in counted:
        mine = kept[req.name]
        for gpu in sorted(inputs.inventory.hosts[host_id].gpus, key=lambda g: g.index):
            if len(mine) >= want:
                break
            if gpu.pci not in used and gpu not in mine:
                mine.append(gpu)
                if exclusive:
                    used.add(gpu.pci)
        result[req.name] = tuple(sorted(mine, key=lambda g: g.index))
    return result, conflicts


def _config_changes(inst: Instance, want: specs.Spec) -> tuple[dict[str, str | None], list[str]]:
    changes: dict[str, str | None] = {}
    for key, value in want.config.items():
        if key not in specs.UNCOMPARED and inst.config.get(key) != value:
            changes[key] = value
    for key in inst.config:
        if specs.owned(key) and key not in want.config and key not in specs.UNCOMPARED:
            changes[key] = None
    if inst.config.get(state.RETIRED):
        changes[state.RETIRED] = None
    reasons = [
        f"{k}: {inst.config.get(k)!r} → {v!r}"
        for k, v in sorted(changes.items())
        if k != state.KEYS
    ]
    return changes, reasons


def _drift(inst: Instance) -> list[Drift]:
    """Hand edits that are not ours to revert: reported for an admin to look at."""
    return [
        Drift(inst.name, f"config {key}={value!r} was set by hand (left as it is)")
        for key, value in sorted(inst.config.items())
        if not specs.owned(key) and not specs.lxd_managed(key)
    ]


def _container_action(
    inst: Instance | None,
    want: specs.Spec,
    needs_gpus: bool,
    inputs: Inputs,
    ids_moved: str | None = None,
) -> tuple[Action, list[Drift]]:
    def no_gpus() -> Refuse:
        return Refuse(
            want.name, want.request_path, f"GPUs cannot be attached now: {inputs.gpu_refusal}"
        )

    # Attaching a GPU includes starting a container that has one: after a power cut the
    # device nodes may be missing, and the container would start with broken CUDA.
    gpus_blocked = bool(inputs.gpu_refusal) and needs_gpus
    if inst is not None and not inst.managed:
        return Refuse(
            want.name,
            want.request_path,
            f"an instance named '{want.name}' exists and is not managed by ssp; "
            "an admin must rename or adopt it",
        ), []
    half_made = inst is not None and inst.config.get(state.STATE) == "creating"
    if inst is None or half_made:
        if gpus_blocked:
            return no_gpus(), []
        return Create(want, replace_half_made=half_made), []
    if inst.config.get(state.OWNER) != want.owner:
        return Refuse(
            want.name,
            want.request_path,
            f"'{want.name}' belongs to {inst.config.get(state.OWNER)}; a container "
            "cannot change owner — give it back and ask for a new one",
        ), []
    if inst.config.get(specs.IMAGE, want.image) != want.image:
        return Refuse(
            want.name,
            want.request_path,
            f"image cannot change in place ({inst.config.get(specs.IMAGE)} → "
            f"{want.image}); give this container back and request a new one",
        ), []
    config, devices, push_keys, reasons = _differences(inst, want, ids_moved)
    drift = _drift(inst)
    if reasons:
        # ID map changes take effect only when the container starts again. Pinning the block
        # it already runs with changes nothing until then, so that alone needs no restart.
        running_ids = idranges.use_of("", inst.name, inst.config).current
        restart = any(k.startswith(("raw.idmap", idranges.ISOLATED)) for k in config) or (
            running_ids not in (None, idranges.pinned(want.config))
        )
        starts = restart or not inst.running
        if gpus_blocked and (starts or _gpu_devices(inst.devices) != _gpu_devices(want.devices)):
            return no_gpus(), drift
        return Update(want, config, devices, push_keys, restart, tuple(reasons)), drift
    if not inst.running:
        if gpus_blocked:
            return no_gpus(), drift
        return Start(want), drift
    return Ready(want), drift


def _differences(
    inst: Instance, want: specs.Spec, ids_moved: str | None = None
) -> tuple[dict[str, str | None], bool, bool, list[str]]:
    """Config changes, whether the devices differ, whether keys must be pushed, and why."""
    config, reasons = _config_changes(inst, want)
    ids_want = idranges.pinned(want.config)
    if ids_want is not None and (idranges.BASE in config or idranges.SIZE_KEY in config):
        reasons = [
            r for r in reasons if not r.startswith(("security.idmap.base", "security.idmap.size"))
        ]
        if ids_moved:
            reasons.append(f"{ids_moved}: moved to {ids_want} (restarts the container)")
        else:
            reasons.append(f"host IDs pinned at {ids_want}")
    devices = _plain(inst.devices) != _plain(want.devices)
    if devices:
        reasons.append(_device_reason(inst.devices, want.devices))
    # Neither is a config key, but both are ours: the purpose line and the policy's profiles.
    if inst.description != want.description:
        reasons.append("description changed")
    if tuple(inst.profiles) != tuple(want.profiles):
        reasons.append(f"profiles: {', '.join(inst.profiles)} → {', '.join(want.profiles)}")
    push_keys = inst.config.get(state.KEYS) != want.config[state.KEYS]
    if push_keys:
        reasons.append("SSH keys changed")
    return config, devices, push_keys, reasons


def _plain(devices: state.Devices) -> dict[str, dict[str, str]]:
    return {name: dict(options) for name, options in devices.items()}


def _gpu_devices(devices: state.Devices) -> set[str]:
    return {d.get("pci", "") for d in devices.values() if d.get("type") == "gpu"}


def _device_reason(have: state.Devices, want: state.Devices) -> str:
    added = sorted(set(want) - set(have))
    removed = sorted(set(have) - set(want))
    changed = sorted(k for k in set(have) & set(want) if dict(have[k]) != dict(want[k]))
    parts = [f"+{n}" for n in added] + [f"-{n}" for n in removed] + [f"~{n}" for n in changed]
    return "devices: " + " ".join(parts)


@dataclass(frozen=True)
class _Ids:
    """The host ID block each wanted container gets, and which ones had to move."""

    blocks: Mapping[str, IdRange]
    moved: Mapping[str, str]  # name → why its block changed (it overlapped another's)


NO_IDS = (
    "no free host ID range left in root's subordinate IDs (/etc/subuid and /etc/subgid): "
    "an admin must give root a larger range"
)


def _allocate_ids(inputs: Inputs, containers: Sequence[Loaded]) -> _Ids:
    """Host ID blocks like ports: kept when clear of everyone else's, else a new free one.

    Every instance not planned here keeps what it has (other projects', unmanaged ones,
    retired ones): those ranges are taken. The wanted containers that exist keep theirs first,
    in path order, so a new container never takes a block an existing one holds; of two that
    overlap, the later path moves. Then new (and moved) containers get the first free blocks.
    """
    if not inputs.pin_ids:
        return _Ids({}, {})
    project = inputs.policy.lxd.project
    observed = _by_name(inputs.observed)
    names = [i.request.name for i in sorted(containers, key=lambda i: i.path)]
    remade = {n for n in names if n in observed and _half_made(observed[n])}
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
    return _Ids(blocks, moved)


def _shared_blocks(inputs: Inputs) -> list[Drift]:
    """Where ssp may not move blocks (a restricted project): overlaps are said, for an admin."""
    project = inputs.policy.lxd.project
    out = []
    for o in idranges.overlaps(inputs.id_maps):
        for mine, other in ((o.first, o.second), (o.second, o.first)):
            if mine.project == project:
                out.append(
                    Drift(
                        mine.name,
                        f"shares host IDs with {other.label} (around {o.range}); LXD chose "
                        "them and this project forbids moving them: see `ssp doctor`",
                    )
                )
                break
    return out


def _half_made(inst: Instance) -> bool:
    return inst.managed and inst.config.get(state.STATE) == "creating"


def make_plan(inputs: Inputs) -> Plan:
    """Compute every action needed to make LXD match `inputs`. Pure and deterministic."""
    observed = _by_name(inputs.observed)
    containers = [i for i in inputs.valid if isinstance(i.request, ContainerRequest)]
    gpus, gpu_conflicts = _allocate_gpus(inputs, containers)
    ids = _allocate_ids(inputs, containers)
    held, taken = _ports(inputs)
    pool = _PortPool(inputs.policy.ssh.ports[0], inputs.policy.ssh.ports[1], taken)
    actions: list[Action] = []
    drift: list[Drift] = []
    wanted: set[str] = set()
    for item in sorted(containers, key=lambda i: i.path):
        req = item.request
        assert isinstance(req, ContainerRequest)  # noqa: S101
        wanted.add(req.name)
        ssh_now, rdp_now = held.get(req.name, (None, None))
        ssh_port = pool.keep_or_new(ssh_now)
        rdp_port = pool.keep_or_new(rdp_now) if req.desktop else None
        if ssh_port is None or (req.desktop and rdp_port is None):
            actions.append(
                Refuse(req.name, item.path, "no free port left in the policy's ssh.ports range")
            )
            continue
        if inputs.pin_ids and req.name not in ids.blocks:
            actions.append(Refuse(req.name, item.path, NO_IDS))
            continue
        want = specs.container_spec(
            req,
            item.path,
            inputs.policy,
            specs.Placement(
                gpus.get(req.name, ()), ssh_port, rdp_port, ids=ids.blocks.get(req.name)
            ),
        )
        want_gpus = req.gpus if isinstance(req.gpus, int) else len(req.gpus)
        if req.name in gpu_conflicts:
            actions.append(Refuse(req.name, item.path, gpu_conflicts[req.name]))
            continue
        if len(want.gpus) < want_gpus:
            actions.append(
                Refuse(
                    req.name,
                    item.path,
                    f"only {len(want.gpus)} of the {want_gpus} GPUs asked for are free",
                )
            )
            continue
        action, found = _container_action(
            observed.get(req.name), want, want_gpus > 0, inputs, ids.moved.get(req.name)
        )
        actions.append(action)
        drift += found
    # Updates first: one may hand over a GPU (a count giving way to a new pin) that a create
    # after it attaches; the other way round both would hold it for a while.
    actions.sort(key=lambda a: 0 if isinstance(a, Update) else 1)
    if not inputs.pin_ids:
        drift += _shared_blocks(inputs)
    actions += _retirements(inputs, wanted)
    actions += _accounts(inputs)
    return Plan(tuple(actions), tuple(drift), inputs.sha)


def _retirements(inputs: Inputs, wanted: set[str]) -> list[Action]:
    expired = {i.request.name for i in inputs.expired}
    skipped_names = {_stem(p) for p in inputs.skipped}
    out: list[Action] = []
    for inst in sorted(inputs.observed, key=lambda i: i.name):
        if not inst.managed or inst.name in wanted or inst.config.get(state.RETIRED):
            continue
        if inst.config.get(state.REQUEST) in inputs.skipped or inst.name in skipped_names:
            continue  # its request is on main but invalid right now: leave it, it was reported
        reason = "its lease expired" if inst.name in expired else "its request was removed"
        out.append(
            Retire(
                inst.name,
                inst.config.get(state.OWNER, ""),
                inst.config.get(state.REQUEST, ""),
                reason,
                inputs.today,
            )
        )
    return out


def _accounts(inputs: Inputs) -> list[Action]:
    observed = _by_name(inputs.servers)
    out: list[Action] = []
    desired: dict[tuple[str, str], specs.AccountSpec] = {}
    for item in sorted(inputs.valid, key=lambda i: i.path):
        if isinstance(item.request, AccountRequest):
            acc = specs.account_spec(item.request, item.path, inputs.policy)
            desired[(acc.instance, acc.name)] = acc
    for (instance, name), acc in desired.items():
        host = observed.get(instance)
        have = None if host is None else host.config.get(state.ACCOUNT + name)
        if have is None:
            out.append(AccountAction(acc, "create"))
        elif have != acc.label():
            out.append(AccountAction(acc, "update"))
        else:  # reported, so its PR comment can be written again (a re-run after an outage)
            out.append(AccountAction(acc, "keep", host.ipv4 if host else ()))
    skipped_names = {_stem(p) for p in inputs.skipped}
    for server_id, shared in sorted(inputs.policy.shared_servers.items()):
        inst = observed.get(shared.instance)
        if inst is None:
            continue
        for key, value in sorted(inst.config.items()):
            if not key.startswith(state.ACCOUNT):
                continue
            name = key.removeprefix(state.ACCOUNT)
            label = _account_label(value)
            if (inst.name, name) in desired or label.get("state") == "locked":
                continue
            request_path = str(label.get("request", ""))
            if request_path in inputs.skipped or name in skipped_names:
                continue  # its request is on main but invalid right now: leave it, it was reported
            out.append(
                AccountAction(
                    specs.AccountSpec(
                        name=name,
                        owner=str(label.get("owner", "")),
                        server=server_id,
                        instance=inst.name,
                        request_path=request_path,
                        keys=(),
                        sudo=False,
                        expires=inputs.today,
                    ),
                    "lock",
                )
            )
    return out


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".yaml")


def _account_label(value: str) -> dict[str, object]:
    """What a shared server's `user.ssp.account.<name>` records (see AccountSpec.label)."""
    try:
        data = json.loads(value)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
