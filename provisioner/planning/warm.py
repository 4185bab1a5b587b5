"""The warm pool: which pre-made clones to keep, make or remove, and which request claims one.

A warm clone is a stopped copy of the default image's base that `ssp maintain` made ahead
(provisioner.applying.warm): its own host ID block, its first start done, so LXD has already
re-owned every file to that block. A new container that claims one skips the copy and that
re-own; it is renamed and given the request's config, keys and identity as any new one.

Warm clones are never members' containers: they carry no `user.ssp.managed` label (status,
doctor, leases and retirement skip them), no GPU and no port (no device but their root disk), and
their names have a capital letter, which no request name can have, and a tag of the
project's name (projects on one bridge share its DNS names). Pure.

Re-owning at the claim: LXD re-owns a container's files at a start whenever its ID map
differs from the one its files were last shifted to (`volatile.last_state.idmap`). A request
with a share adds `raw.idmap: both U U` (the owner's host UID U seen as itself inside), so
its map differs from the warm clone's. Where no file of the clone is owned by UID or GID U
(the clone records every owner it has, `user.ssp.warm.ids`), every file's host owner is the
same under both maps, and the claim tells LXD so by writing the new map as the last one:
no file is touched. Where U owns a file, or the IDs are not known, LXD re-owns as usual.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from provisioner.values import idranges, state
from provisioner.values import spec as specs
from provisioner.values.idranges import IdMapUse, IdRange
from provisioner.values.plandata import Action, Create, Inputs
from provisioner.values.policymodels import CloneImage, Policy
from provisioner.values.state import Instance

PREFIX = "Warm-"  # a capital: no request's name (lower-case only) can be a warm clone's
MAKING = "making"
READY = "ready"
DESCRIPTION = "ssp warm clone: made ahead by `ssp maintain`, claimed by a new container"
LAST_MAP = "volatile.last_state.idmap"  # the map the files on disk were shifted to
NEXT_MAP = "volatile.idmap.next"  # the map LXD will start the container with
_RAW_OWNER = re.compile(r"^both (\d+) \1$")


@dataclass(frozen=True)
class WarmPlan:
    """What maintenance does to the pool: remove these (stale, half-made or surplus), then
    make these, each with its host ID block (None: LXD chooses it)."""

    image: str  # the policy image warmed ("": none can be)
    keep: tuple[str, ...]
    remove: tuple[str, ...]
    make: tuple[tuple[str, IdRange | None], ...]
    why_none: str = ""  # why no pool is kept although one is asked for


def is_warm(inst: Instance) -> bool:
    return state.WARM in inst.config and not inst.managed


def warm_source(policy: Policy, image_id: str) -> str:
    """The base a warm clone of IMAGE_ID is copied from ("": that image cannot be warmed)."""
    image = policy.images.get(image_id)
    return image.clone if isinstance(image, CloneImage) else ""


def ready(inst: Instance, policy: Policy, image_id: str) -> bool:
    """A warm clone a new container of IMAGE_ID may claim: finished, stopped, current base."""
    source = warm_source(policy, image_id)
    return (
        is_warm(inst)
        and inst.name.startswith(PREFIX)
        and not inst.running
        and inst.config.get(state.WARM_STATE) == READY
        and inst.config.get(state.WARM) == image_id
        and bool(source)
        and inst.config.get(state.WARM_SOURCE) == source
    )


def half_claimed(inst: Instance | None) -> bool:
    """A warm clone already renamed to a request's name whose claim did not finish: it is
    remade like a half-made container (nothing of the member's is in it yet)."""
    return inst is not None and is_warm(inst) and not inst.name.startswith(PREFIX)


def refill(
    policy: Policy,
    observed: Sequence[Instance],
    id_maps: Sequence[IdMapUse],
    id_spans: Sequence[IdRange],
    *,
    pin_ids: bool,
) -> WarmPlan:
    """Keep `lxd.warm_pool` ready clones of the default image, each in a free ID block."""
    size = policy.lxd.warm_pool
    image = policy.defaults.image
    warm = sorted((i for i in observed if is_warm(i) and i.name.startswith(PREFIX)), key=_order)
    good = [i for i in warm if ready(i, policy, image)]
    why = ""
    if size and not warm_source(policy, image):
        why = f"the default image '{image}' is not a clone of a base (only clones are warmed)"
        good = []
    keep = good[:size] if not why else []
    kept = {i.name for i in keep}
    remove = tuple(i.name for i in warm if i.name not in kept)
    if why:
        return WarmPlan("", (), remove, (), why)
    project = policy.lxd.project
    gone = {(project, name) for name in remove}
    taken = [r for u in id_maps if (u.project, u.name) not in gone for r in u.ranges()]
    # A block chosen but never started with yet shows only in the pinned keys.
    taken += [b for i in observed if i.name not in remove and (b := idranges.pinned(i.config))]
    alloc = idranges.Allocator(tuple(id_spans), taken)
    names = {i.name for i in observed}
    make: list[tuple[str, IdRange | None]] = []
    index = 1
    for _ in range(size - len(keep)):
        while clone_name(project, index) in names and clone_name(project, index) not in remove:
            index += 1
        block = alloc.new() if pin_ids else None
        if pin_ids and block is None:
            why = "no free host ID block left for a warm clone"
            break
        make.append((clone_name(project, index), block))
        index += 1
    return WarmPlan(image, tuple(sorted(kept)), remove, tuple(make), why)


def clone_name(project: str, index: int) -> str:
    """`Warm-<tag>-<n>`: the tag tells this project's clones from another's on the bridge."""
    return f"{PREFIX}{hashlib.sha256(project.encode()).hexdigest()[:6]}-{index}"


def _order(inst: Instance) -> tuple[int, str]:
    tail = inst.name.rsplit("-", 1)[-1]
    return (int(tail), "") if tail.isdigit() else (1 << 30, inst.name)


def claims(actions: Sequence[Action], inputs: Inputs) -> tuple[Action, ...]:
    """ACTIONS with each new container of a warmed image given a ready warm clone to claim,
    in the plan's order, while there are some. Only on a single server (a cluster's clones
    would have to be on the right member) and where the clone's ID block is of the kind the
    project uses: chosen by ssp (pinned) where ssp chooses, by LXD otherwise."""
    if inputs.members:
        return tuple(actions)
    free: dict[str, list[Instance]] = {}
    for inst in sorted(inputs.observed, key=_order):
        image = inst.config.get(state.WARM, "")
        pinned = idranges.pinned(inst.config) is not None
        if pinned == inputs.pin_ids and ready(inst, inputs.policy, image):
            free.setdefault(image, []).append(inst)
    out: list[Action] = []
    for action in actions:
        pool = free.get(action.spec.image) if isinstance(action, Create) else None
        if not isinstance(action, Create) or not pool or action.spec.member:
            out.append(action)
            continue
        warm = pool.pop(0)
        spec = action.spec
        block = idranges.pinned(warm.config)
        if block is not None:  # it keeps the block its files are already shifted to
            config = {
                **spec.config,
                idranges.BASE: str(block.base),
                idranges.SIZE_KEY: str(block.size),
            }
            spec = dataclasses.replace(spec, config=config)
        out.append(dataclasses.replace(action, spec=spec, warm=warm.name))
    return tuple(out)


def owner_ids(text: str) -> frozenset[int]:
    """The IDs a scan of the clone's files printed, one a line (see applying.warm)."""
    return frozenset(int(line) for line in text.split() if line.isdigit())


def ids_label(ids: Iterable[int]) -> str:
    return ",".join(str(i) for i in sorted(ids))


def skip_reown(warm_config: dict[str, str] | None, spec: specs.Spec) -> bool:
    """Whether the claimed clone's files are already right for SPEC's map (see the module's
    docstring): the only change is a `raw.idmap: both U U` whose U owns no file in it."""
    if warm_config is None:
        return False
    raw = spec.config.get("raw.idmap")
    if raw is None:
        return False  # the map is unchanged: LXD does not re-own anyway
    match = _RAW_OWNER.match(raw)
    recorded = warm_config.get(state.WARM_IDS, "")
    if match is None or not recorded or "raw.idmap" in warm_config:
        return False
    known = {int(x) for x in recorded.split(",") if x.isdigit()}
    return int(match.group(1)) not in known
