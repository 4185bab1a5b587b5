"""Releasing idle GPUs with the lab's consent: what is due for each container whose GPUs are
all idle. Pure.

Only with `usage.idle_action: release` in the policy; the steps, one container at a time:
1. the idle notice (provisioner.reporting.idlenotices), once its GPUs are idle for
   `usage.idle_days`;
2. on a later pass, still idle: the **final notice**, naming the release day (that day plus
   `usage.idle_grace_days`). The day it reached the owner's lease issue is recorded on the
   container (`state.IDLE_FINAL`); a post that failed records nothing, so the release waits;
3. from the release day on, if the stretch began before the final notice (the GPUs were not
   used in between): the release (`state.RELEASED` = "<day> idle"), after which the same
   pass's reconcile takes the GPU devices off and the container keeps running without them.
   The lease's last day then is recorded too (`state.IDLE_LEASE`): a renewal past it
   (`renewed`) clears the release, and the GPUs come back as for a new request.

A container with one GPU in use, one not running or retired, and one whose GPUs were already
released are left alone. A stretch that began after the recorded final notice (the GPUs
were used meanwhile) needs a new final notice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from provisioner.values import state
from provisioner.values.policymodels import Policy
from provisioner.values.state import Instance
from provisioner.values.usage import IdleGpu, IdleHold


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _gpus(inst: Instance) -> set[str]:
    return {
        d["pci"].lower() for d in inst.devices.values() if d.get("type") == "gpu" and "pci" in d
    }


def review(
    idle: Sequence[IdleGpu], instances: Sequence[Instance], policy: Policy, today: date
) -> list[IdleHold]:
    """Per running container whose GPUs are all idle: the final notice, the wait or the
    release due on TODAY (the lab's day). Nothing without the policy's consent."""
    usage = policy.usage
    if usage.idle_action != "release":
        return []
    by_container: dict[str, list[IdleGpu]] = {}
    for gpu in idle:
        by_container.setdefault(gpu.container, []).append(gpu)
    holds = []
    for inst in sorted(instances, key=lambda i: i.name):
        found = by_container.get(inst.name)
        if not found or not inst.managed or not inst.running or inst.gpus_released:
            continue
        if inst.config.get(state.RETIRED):
            continue
        idle_pcis = {g.pci.lower() for g in found}
        if not _gpus(inst) <= idle_pcis:
            continue  # one of its GPUs is in use: the container is not idle
        owner = inst.config.get(state.OWNER, "") or found[0].owner
        since = max(g.since_day(policy.timezone) for g in found)
        final_on = _day(inst.config.get(state.IDLE_FINAL))
        pcis = tuple(sorted(idle_pcis))
        if final_on is None or final_on < since:
            release_on = today + timedelta(days=usage.idle_grace_days)
            holds.append(IdleHold(inst.name, owner, pcis, since, "final", release_on))
            continue
        release_on = final_on + timedelta(days=usage.idle_grace_days)
        due = "release" if today >= release_on else "wait"
        holds.append(IdleHold(inst.name, owner, pcis, since, due, release_on, final_on))
    return holds


def renewed(instances: Sequence[Instance]) -> list[str]:
    """The containers whose GPUs were released for idleness and whose lease was renewed since
    (its last day is now later than when they were released): they get their GPUs back."""
    found = []
    for inst in instances:
        why = (inst.config.get(state.RELEASED) or "").partition(" ")[2]
        if not inst.gpus_released or why != "idle":
            continue
        then = _day(inst.config.get(state.IDLE_LEASE))
        now = _day(inst.config.get(state.EXPIRES))
        if then is not None and now is not None and now > then:
            found.append(inst.name)
    return sorted(found)
