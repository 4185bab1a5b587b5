"""The plan: desired state (valid requests on main) vs observed LXD state → actions. Pure.

`make_plan` decides everything — which GPUs a count becomes, which port a new container
gets, what to create, change, start, retire or refuse, and which requests wait in line for
GPUs that are taken (`provisioner.planning.waitlist`) — and returns an immutable `Plan`.
`apply` only walks it. Allocation is stable: a container keeps the GPUs and ports it already
has as long as they are still its to have, so running the plan twice changes nothing.
"""

from __future__ import annotations

from provisioner.planning import allocate, waitlist, warm
from provisioner.planning import cluster as clusterplace
from provisioner.planning import images as imageplan
from provisioner.planning.accounts import account_actions
from provisioner.values import idranges, state
from provisioner.values import spec as specs
from provisioner.values.loaded import Loaded
from provisioner.values.models import ContainerRequest
from provisioner.values.plandata import (
    Action,
    Create,
    Drift,
    Inputs,
    Plan,
    Publish,
    Ready,
    Refuse,
    Restore,
    Retire,
    Start,
    Update,
)
from provisioner.values.requestpaths import request_stem
from provisioner.values.state import Instance

STOPPED_BY_OWNER = "stopped by its owner (/ssp stop); left stopped until /ssp start"


def _config_changes(inst: Instance, want: specs.Spec) -> tuple[dict[str, str | None], list[str]]:
    changes: dict[str, str | None] = {}
    for key, value in want.config.items():
        if key not in specs.UNCOMPARED and inst.config.get(key) != value:
            changes[key] = value
    for key in inst.config:
        if specs.ours(key, want) and key not in want.config and key not in specs.UNCOMPARED:
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
        Drift(name=inst.name, message=f"config {key}={value!r} was set by hand (left as it is)")
        for key, value in sorted(inst.config.items())
        if not specs.owned(key) and not specs.lxd_managed(key)
    ]


def _container_action(
    inst: Instance | None,
    want: specs.Spec,
    needs_gpus: bool,
    inputs: Inputs,
    ids_moved: str | None = None,
    publishing: frozenset[str] = frozenset(),
) -> tuple[Action, list[Drift]]:
    def no_gpus() -> Refuse:
        return _refuse_spec(want, f"GPUs cannot be attached now: {inputs.gpu_refusal}")

    # Attaching a GPU includes starting a container that has one: after a power cut the
    # device nodes may be missing, and the container would start with broken CUDA.
    gpus_blocked = bool(inputs.gpu_refusal) and needs_gpus
    # A warm clone renamed to this name whose claim did not finish is remade like a half-made
    # container; any other unmanaged instance of that name is an admin's.
    claimed_half = warm.half_claimed(inst)
    if inst is not None and not inst.managed and not claimed_half:
        return _refuse_spec(
            want,
            f"an instance named '{want.name}' exists and is not managed by ssp; "
            "an admin must rename or adopt it",
        ), []
    half_made = inst is not None and (allocate.half_made(inst) or claimed_half)
    restore = want.config.get(state.RESTORED)
    if inst is None or half_made:
        if restore is not None:
            return _refuse_spec(
                want,
                f"restore: '{want.name}' does not exist yet, so it has no snapshot "
                f"'{restore}' to go back to; remove the restore line",
            ), []
        if gpus_blocked:
            return no_gpus(), []
        why = imageplan.use_refusal(
            want.image, want.owner, inputs.images, inputs.policy, publishing
        )
        if why:
            return _refuse_spec(want, why), []
        return Create(spec=want, replace_half_made=half_made), []
    if inst.config.get(state.OWNER) != want.owner:
        return _refuse_spec(
            want,
            f"'{want.name}' belongs to {inst.config.get(state.OWNER)}; a container "
            "cannot change owner — give it back and ask for a new one",
        ), []
    if inst.config.get(specs.IMAGE, want.image) != want.image:
        return _refuse_spec(
            want,
            f"image cannot change in place ({inst.config.get(specs.IMAGE)} → "
            f"{want.image}); give this container back and request a new one",
        ), []
    drift = _drift(inst)
    if restore is not None and inst.config.get(state.RESTORED) != restore:
        blocked = inputs.gpu_refusal if gpus_blocked else None
        return _restore(inst, want, restore, blocked), drift
    config, devices, push_keys, reasons = _differences(inst, want, ids_moved)
    if reasons:
        # ID map changes take effect only when the container starts again. Pinning the block
        # it already runs with changes nothing until then, so that alone needs no restart.
        running_ids = idranges.use_of("", inst.name, inst.config).current
        restart = any(k.startswith(("raw.idmap", idranges.ISOLATED)) for k in config) or (
            running_ids not in (None, idranges.pinned(want.config))
        )
        # The NVIDIA runtime injects the host's libraries at start only: a container given
        # its first GPU restarts, or CUDA would find the card but no driver library. One that
        # already runs with GPUs (made before the policy chose the runtime) is not restarted
        # for it: its programs keep running, the runtime comes with its next start.
        first_gpus = not _gpu_devices(inst.devices) and bool(_gpu_devices(want.devices))
        restart = restart or (config.get(specs.NVIDIA_RUNTIME) == "true" and first_gpus)
        starts = restart or not inst.running
        if gpus_blocked and (starts or _gpu_devices(inst.devices) != _gpu_devices(want.devices)):
            return no_gpus(), drift
        return Update(
            spec=want,
            config=config,
            devices=devices,
            push_keys=push_keys,
            restart=restart,
            reasons=tuple(reasons),
        ), drift
    if not inst.running:
        if gpus_blocked:
            return no_gpus(), drift
        return Start(spec=want), drift
    return Ready(spec=want), drift


def _held_or_planned(
    inst: Instance | None,
    want: specs.Spec,
    needs_gpus: bool,
    inputs: Inputs,
    ids_moved: str | None,
    publishing: frozenset[str],
) -> tuple[Action, list[Drift]]:
    """A container its owner stopped (`/ssp stop`) is left as it is, stopped, until
    `/ssp start`: what changed meanwhile is applied then. Anything else is planned."""
    if inst is not None and inst.stopped_by_owner and inst.config.get(state.OWNER) == want.owner:
        return Ready(spec=want, detail=STOPPED_BY_OWNER), _drift(inst)
    return _container_action(inst, want, needs_gpus, inputs, ids_moved, publishing)


def _restore(inst: Instance, want: specs.Spec, snapshot: str, gpu_refusal: str | None) -> Action:
    """Once per snapshot asked for: the label the restore leaves says it was done."""
    if snapshot not in inst.snapshots:
        have = ", ".join(inst.snapshots) or "none"
        return _refuse_spec(
            want,
            f"restore: '{want.name}' has no snapshot '{snapshot}' (its snapshots: {have}); "
            "nothing was changed",
        )
    if gpu_refusal:  # the restore restarts it, GPUs and all
        return _refuse_spec(want, f"GPUs cannot be attached now: {gpu_refusal}")
    return Restore(spec=want, snapshot=snapshot)


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
    devices = state.plain_devices(inst.devices) != state.plain_devices(want.devices)
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


def _gpu_devices(devices: state.Devices) -> set[str]:
    return {d.get("pci", "") for d in devices.values() if d.get("type") == "gpu"}


def _device_reason(have: state.Devices, want: state.Devices) -> str:
    added = sorted(set(want) - set(have))
    removed = sorted(set(have) - set(want))
    changed = sorted(k for k in set(have) & set(want) if dict(have[k]) != dict(want[k]))
    parts = [f"+{n}" for n in added] + [f"-{n}" for n in removed] + [f"~{n}" for n in changed]
    return "devices: " + " ".join(parts)


def _shared_blocks(inputs: Inputs) -> list[Drift]:
    """Where ssp may not move blocks (a restricted project): overlaps are said, for an admin."""
    project = inputs.policy.lxd.project
    out = []
    for o in idranges.overlaps(inputs.id_maps):
        for mine, other in ((o.first, o.second), (o.second, o.first)):
            if mine.project == project:
                out.append(
                    Drift(
                        name=mine.name,
                        message=f"shares host IDs with {other.label} (around {o.range}); LXD chose "
                        "them and this project forbids moving them: see `ssp doctor`",
                    )
                )
                break
    return out


def make_plan(inputs: Inputs) -> Plan:
    """Compute every action needed to make LXD match `inputs`. Pure and deterministic."""
    observed = allocate.by_name(inputs.observed)
    containers = [i for i in inputs.valid if isinstance(i.request, ContainerRequest)]
    where = clusterplace.where(
        [(i.path, i.request) for i in containers if isinstance(i.request, ContainerRequest)],
        inputs.policy,
        inputs.inventory,
        inputs.observed,
        inputs.members,
    )
    gpus, gpu_conflicts = allocate.gpus(inputs, containers, where.host)
    ids = allocate.host_ids(inputs, containers)
    held, taken = allocate.ports(inputs)
    pool = allocate.PortPool(inputs.policy.ssh.ports[0], inputs.policy.ssh.ports[1], taken)
    member_users = imageplan.member_users(inputs)
    image_actions = imageplan.image_actions(inputs)
    publishing = frozenset(a.alias for a in image_actions if isinstance(a, Publish))
    actions: list[Action] = []
    drift: list[Drift] = []
    wanted: set[str] = set()
    for item in sorted(containers, key=lambda i: i.path):
        req = item.request
        assert isinstance(req, ContainerRequest)  # noqa: S101
        wanted.add(req.name)
        blocked = where.blocked(req.name, inputs.inventory)
        if blocked is not None:
            message, down = blocked
            actions.append(
                Refuse(name=req.name, request_path=item.path, message=message, member_down=down)
            )
            continue
        ssh_now, rdp_now = held.get(req.name, (None, None))
        ssh_port = pool.keep_or_new(ssh_now)
        rdp_port = pool.keep_or_new(rdp_now) if req.desktop else None
        # Nothing new from a partial view: a down member's ports and ID ranges are unseen.
        new = (ssh_now is None or (req.desktop and rdp_now is None)) or (
            inputs.pin_ids and (req.name not in observed or req.name in ids.moved)
        )
        if (waits := where.waiting(req.name, item.path, new)) is not None:
            actions.append(waits)
            continue
        if ssh_port is None or (req.desktop and rdp_port is None):
            actions.append(_refuse(item, "no free port left in the policy's ssh.ports range"))
            continue
        if inputs.pin_ids and req.name not in ids.blocks:
            actions.append(_refuse(item, allocate.NO_IDS))
            continue
        want = specs.container_spec(
            req,
            item.path,
            inputs.policy,
            specs.Placement(
                gpus.get(req.name, ()),
                ssh_port,
                rdp_port,
                ids=ids.blocks.get(req.name),
                member_users=member_users,
                member=where.member(req.name),
                host=where.address(req.name, inputs.inventory),
            ),
        )
        want_gpus = _wanted_gpus(req, observed.get(req.name))
        if (
            short := waitlist.shortage(item, want, want_gpus, gpu_conflicts, inputs, where.host)
        ) is not None:
            actions.append(short)  # its GPUs are taken: it waits in line
            continue
        inst, moved = observed.get(req.name), ids.moved.get(req.name)
        action, found = _held_or_planned(inst, want, want_gpus > 0, inputs, moved, publishing)
        actions.append(action)
        drift += found
    # Updates first: one may give up a GPU (a count asking for fewer) that a create after it
    # attaches; the other way round both would hold it for a while. A count never gives way
    # to a pin: GPUs do not move under a container (see allocate.gpus).
    actions.sort(key=lambda a: 0 if isinstance(a, Update) else 1)
    if not inputs.pin_ids:
        drift += _shared_blocks(inputs)
    # Images before the containers that start from them: changes run before creates.
    # New containers claim the warm clones made ahead (planning.warm), in the plan's order.
    actions = image_actions + list(warm.claims(actions, inputs))
    actions += _retirements(inputs, wanted, where.down) + account_actions(inputs)
    # Each request that waits for GPUs learns its place in line.
    actions = waitlist.in_line(actions, containers, inputs)
    return Plan(actions=tuple(actions), drift=tuple(drift), sha=inputs.sha)


def _retirements(inputs: Inputs, wanted: set[str], down: frozenset[str]) -> list[Action]:
    expired = {i.request.name for i in inputs.expired}
    skipped_names = {request_stem(p) for p in inputs.skipped}
    out: list[Action] = []
    for inst in sorted(inputs.observed, key=lambda i: i.name):
        if not inst.managed or inst.name in wanted or inst.config.get(state.RETIRED):
            continue
        if inst.config.get(state.REQUEST) in inputs.skipped or inst.name in skipped_names:
            continue  # its request is on main but invalid right now: leave it, it was reported
        ended = inst.name in expired
        reason = "its lease expired" if ended else "its request was removed"
        unreachable = clusterplace.member_down(inst.location, down)
        if unreachable is not None:
            path = inst.config.get(state.REQUEST, "")
            out.append(
                Refuse(name=inst.name, request_path=path, message=unreachable, member_down=True)
            )
            continue
        out.append(
            Retire(
                name=inst.name,
                owner=inst.config.get(state.OWNER, ""),
                request_path=inst.config.get(state.REQUEST, ""),
                reason=reason,
                today=inputs.today,
                expired=ended,
            )
        )
    return out


def _wanted_gpus(req: ContainerRequest, inst: Instance | None) -> int:
    """How many GPUs the request asks for now: none while they are handed back (`/ssp stop`,
    an idle release), until the container is started again."""
    if inst is not None and inst.gpus_released:
        return 0
    return req.gpus if isinstance(req.gpus, int) else len(req.gpus)


def _refuse(item: Loaded, message: str) -> Refuse:
    return Refuse(name=item.request.name, request_path=item.path, message=message)


def _refuse_spec(want: specs.Spec, message: str) -> Refuse:
    return Refuse(name=want.name, request_path=want.request_path, message=message)
