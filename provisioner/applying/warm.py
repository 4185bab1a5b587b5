"""Making warm clones ahead, and claiming one for a new container (provisioner.planning.warm).

Making one (in `ssp maintain`, under the host lock): copy the base stopped, labelled
`making`; give it exactly our config — isolated, its ID block, a default request's CPU and
memory limits, its root disk on the policy's pool with a default request's size (a project
with limits, as `ssp host init` makes, refuses an instance without them) and no other device
(so no GPU, no port; the profile's NIC); start it once, which makes
LXD re-own every file to that block (the cost a claim then skips); list every UID and GID
owning a file in it; stop it and label it `ready`. A failure leaves it `making`, and the
next pass removes it. Where LXD chooses the block (a project forbidding ssp's choice), clones
are made one at a time and each block is checked against every instance before the first
start, as for new containers (applying.apply); one LXD gave a taken block is removed.

Claiming one (in apply, for a Create the plan gave a warm clone): rename it to the request's
name, replace its config and devices with the request's, and, where its files are already
right for the request's ID map (planning.warm.skip_reown), record that map as the one they
were shifted to, so the first start re-owns nothing. The rest is a new container's usual
path: identity, verify, start, the owner's user and keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from provisioner.planning import warm as plan
from provisioner.values import idranges, state
from provisioner.values import spec as specs
from provisioner.values.errors import LxdError
from provisioner.values.idranges import IdRange
from provisioner.values.policymodels import Policy
from provisioner.values.sizes import size_bytes
from provisioner.values.state import Instance, LxdApi

# Every owner of a file on the clone's own disk (-xdev: not /proc, /sys, /dev or /run), one
# a line, each once. A fixed command: nothing from a request or the policy is in it.
SCAN = ["sh", "-c", "find / -xdev -printf '%U\\n%G\\n' 2>/dev/null | sort -un"]
STOP_S = 30


@dataclass(frozen=True)
class WarmStep:
    """What maintenance did to one warm clone."""

    name: str
    action: str  # made | removed | would make | would remove | failed
    ok: bool = True
    message: str = ""


def claim(lxd: LxdApi, spec: specs.Spec, warm: str, config: Mapping[str, str]) -> bool:
    """Make warm clone WARM the instance SPEC names, with CONFIG (see the module); whether its
    files are already right for SPEC's map (then `mark_shifted` before the first start)."""
    found = dict(lxd.instance(warm).config)
    lxd.rename(warm, spec.name)
    lxd.replace(spec.name, config, spec.devices, spec.profiles, spec.description)
    return plan.skip_reown(found, spec)


def mark_shifted(lxd: LxdApi, claimed: Instance, log: Callable[[str], None]) -> None:
    """Tell LXD the files are shifted to the map it starts CLAIMED (as LXD holds it after the
    claim) with, so it re-owns none.

    Last before the start: LXD 5.0.2's file API on a stopped instance runs in the files' map,
    and fails ("fork/exec /usr/bin/lxd: invalid argument") on one with a `raw.idmap` entry."""
    upcoming = claimed.config.get(plan.NEXT_MAP)
    if not upcoming:
        return
    try:  # ssp's restricted project refuses volatile keys: LXD then re-owns at the start
        lxd.set_config(claimed.name, {plan.LAST_MAP: upcoming})
    except LxdError as e:
        log(f"{claimed.name}: its files are re-owned at the first start ({e})")


def make(
    lxd: LxdApi,
    policy: Policy,
    name: str,
    block: IdRange | None,
) -> None:
    """Make warm clone NAME of the default image (see the module's docstring)."""
    image = policy.defaults.image
    source = plan.warm_source(policy, image)
    defaults = policy.defaults
    config = {
        state.WARM: image,
        state.WARM_SOURCE: source,
        state.WARM_STATE: plan.MAKING,
        "security.idmap.isolated": "true",
        "security.protection.delete": "false",
        "boot.autostart": "false",
        # A project with limits (ssp host init's) refuses an instance without its own: the
        # clone holds what a default request would until a claim sets the request's.
        "limits.cpu": str(defaults.cpu),
        "limits.memory": defaults.memory,
    }
    if block is not None:
        config[idranges.BASE] = str(block.base)
        config[idranges.SIZE_KEY] = str(block.size)
    copy = {"type": "copy", "source": source, "project": "default"}
    profiles = tuple(policy.lxd.profiles)
    labels = {k: config[k] for k in (state.WARM, state.WARM_STATE)}
    lxd.create(name, copy, labels, {}, profiles, plan.DESCRIPTION)
    # A copy carries the base's devices and security keys: none of them stay but the root
    # disk, on the policy's pool as a container's (LXD moves no root disk between pools).
    size = f"{size_bytes(defaults.disk) // 2**20}MiB"
    root = {specs.ROOT_DEVICE: {"type": "disk", "path": "/", "pool": policy.lxd.pool, "size": size}}
    lxd.replace(name, config, root, profiles, plan.DESCRIPTION)
    if block is None:
        clash = idranges.shared_with(lxd.id_maps(), policy.lxd.project, name)
        if clash:
            lxd.delete(name)  # never started: nothing in it yet
            raise LxdError(f"LXD gave it host IDs that are {clash}; it was removed")
    lxd.start(name)  # LXD re-owns every file to the clone's block here, once
    try:  # a base without `sh` or GNU find: owners unknown, so a claim lets LXD re-own
        found = lxd.execute(name, SCAN)
        ids = plan.ids_label(plan.owner_ids(found.stdout)) if found.exit_code == 0 else ""
    except LxdError:
        ids = ""
    lxd.stop(name, timeout_s=STOP_S)
    lxd.set_config(name, {state.WARM_STATE: plan.READY, state.WARM_IDS: ids})


def refill(
    lxd: LxdApi,
    policy: Policy,
    instances: Sequence[Instance],
    *,
    id_spans: tuple[IdRange, ...],
    pin_ids: bool,
    dry_run: bool,
    log: Callable[[str], None] = lambda _l: None,
) -> tuple[WarmStep, ...]:
    """Bring the pool to the policy's size: remove stale, half-made and surplus clones,
    then make the missing ones, one at a time (the host is the members' to use). INSTANCES:
    the project's, as just listed; no request is sent when there is no pool to keep."""
    if not policy.lxd.warm_pool and not any(plan.is_warm(i) for i in instances):
        return ()
    if lxd.members():  # a clone would have to be on the member a request is placed on
        return (WarmStep("-", "none", True, "no warm pool in an LXD cluster (not yet)"),)
    wanted = plan.refill(policy, instances, lxd.id_maps(), id_spans, pin_ids=pin_ids)
    steps: list[WarmStep] = []
    for name in wanted.remove:
        if dry_run:
            steps.append(WarmStep(name, "would remove"))
            continue
        try:
            lxd.stop(name, timeout_s=STOP_S)
            lxd.delete(name)
            steps.append(WarmStep(name, "removed"))
        except LxdError as e:
            steps.append(WarmStep(name, "failed", False, f"not removed: {e}"))
    for name, block in wanted.make:
        if dry_run:
            steps.append(WarmStep(name, "would make", message=f"from {wanted.image}"))
            continue
        log(f"{name}: making a warm clone of {wanted.image}")
        try:
            make(lxd, policy, name, block)
            steps.append(WarmStep(name, "made", message=f"from {wanted.image}"))
        except LxdError as e:
            steps.append(WarmStep(name, "failed", False, f"{e} (the next pass makes it again)"))
    if wanted.why_none:
        steps.append(WarmStep("-", "none", True, wanted.why_none))
    return tuple(steps)
