"""Idle GPUs released with the lab's consent, as `ssp maintain` runs it.

Before the reconcile (`before_reconcile`, under the host lock): a container whose lease was
renewed since its GPUs were released for idleness gets them back (the release is cleared);
each container whose final notice's grace is over is released (`state.RELEASED` =
"<day> idle"), so the same pass's reconcile takes its GPU devices off without a restart; the
rest of the decision (provisioner.status.idlerelease) is handed on to the notices.
After the lease notices (`after_notices`): the final notices and the releases' comments in
the lease issues; a final notice that reached GitHub is recorded on its container
(`state.IDLE_FINAL`), and only that starts the grace: a failed post delays the release.
A dry run changes nothing and says what would happen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from provisioner.planning.leases import Lease
from provisioner.reporting import idlenotices
from provisioner.reporting.notices import NoticeClient, Sent
from provisioner.status import idlerelease
from provisioner.values import state
from provisioner.values.errors import LxdError
from provisioner.values.policymodels import Policy
from provisioner.values.state import LxdApi
from provisioner.values.usage import IdleGpu, IdleHold, IdleStep


def before_reconcile(
    lxd: LxdApi,
    policy: Policy,
    idle: Sequence[IdleGpu],
    today: date,
    *,
    dry_run: bool,
    log: Callable[[str], None] = lambda _l: None,
) -> tuple[list[IdleHold], list[IdleStep]]:
    """Give back renewed containers' GPUs, release the due ones; the holds and what was done."""
    instances = lxd.instances()
    renewed = set(idlerelease.renewed(instances))
    steps = [_unrelease(lxd, i, dry_run, log) for i in instances if i.name in renewed]
    holds = idlerelease.review(idle, instances, policy, today)
    by_name = {i.name: i for i in instances}
    for hold in holds:
        if hold.due != "release":
            continue
        expires = by_name[hold.container].config.get(state.EXPIRES, "")
        steps.append(_release(lxd, hold, today, expires, dry_run, log))
    return holds, steps


def _unrelease(
    lxd: LxdApi, inst: state.Instance, dry_run: bool, log: Callable[[str], None]
) -> IdleStep:
    owner = inst.config.get(state.OWNER, "")
    if dry_run:
        return IdleStep(inst.name, owner, "would give GPUs back", message="lease renewed")
    try:
        lxd.set_config(inst.name, {state.RELEASED: None, state.IDLE_LEASE: None})
    except LxdError as e:
        return IdleStep(inst.name, owner, "failed", ok=False, message=f"GPUs not given back: {e}")
    log(f"{inst.name}: lease renewed; its GPUs released for idleness are asked for again")
    return IdleStep(inst.name, owner, "GPUs asked for again", message="lease renewed")


def _release(
    lxd: LxdApi,
    hold: IdleHold,
    today: date,
    expires: str,
    dry_run: bool,
    log: Callable[[str], None],
) -> IdleStep:
    said = f"idle since {hold.since}, final notice on {hold.final_on}"
    if dry_run:
        return IdleStep(hold.container, hold.owner, "would release", hold.release_on, message=said)
    labels = {state.RELEASED: f"{today.isoformat()} idle", state.IDLE_LEASE: expires or None}
    try:
        lxd.set_config(hold.container, labels)
    except LxdError as e:  # the next pass tries again; nothing was taken off
        return IdleStep(
            hold.container, hold.owner, "failed", hold.release_on, False, f"not released: {e}"
        )
    log(f"{hold.container}: GPUs {', '.join(hold.pcis)} released for idleness ({said})")
    return IdleStep(hold.container, hold.owner, "released", hold.release_on, message=said)


def after_notices(
    lxd: LxdApi,
    client: NoticeClient,
    holds: Sequence[IdleHold],
    plain: Sequence[Sent],
    leases: Sequence[Lease],
    policy: Policy,
    today: date,
    log: Callable[[str], None] = lambda _l: None,
) -> tuple[list[Sent], list[IdleStep]]:
    """Post the final notices and the releases' comments; record the final notices that
    reached GitHub. Returns what was posted and the steps it adds.

    A final notice follows the idle notice on a later pass: only a hold all of whose GPUs'
    idle notices were already there (PLAIN, this pass's, none new, none failed) gets one."""
    told = {(s.name, s.notice) for s in plain if not s.new and not s.error}
    ready = [
        h
        for h in holds
        if h.due != "final" or all((h.container, f"idle {p}") in told for p in h.pcis)
    ]
    sent = idlenotices.send_final(client, ready, leases, policy, log=log)
    by_name = {h.container: h for h in holds}
    steps = []
    for note in sent:
        hold = by_name[note.name]
        if hold.due != "final":
            continue
        if note.error:
            steps.append(
                IdleStep(
                    hold.container,
                    hold.owner,
                    "final notice not sent",
                    None,
                    False,
                    f"{note.error}; no release before it reaches the owner",
                )
            )
            continue
        try:
            lxd.set_config(hold.container, {state.IDLE_FINAL: today.isoformat()})
        except LxdError as e:  # the next pass edits the same comment and records it then
            log(f"{hold.container}: could not record the final idle notice: {e}")
            steps.append(
                IdleStep(hold.container, hold.owner, "failed", None, False, f"not recorded: {e}")
            )
            continue
        steps.append(
            IdleStep(
                hold.container,
                hold.owner,
                "final notice",
                hold.release_on,
                message=f"#{note.issue}: release on {hold.release_on} unless used",
            )
        )
    return sent, steps


def waiting(holds: Sequence[IdleHold], dry_run: bool) -> list[IdleStep]:
    """The steps that involve no GitHub: releases that wait, final notices a dry run skips."""
    steps = []
    for hold in holds:
        if hold.due == "wait":
            steps.append(
                IdleStep(
                    hold.container,
                    hold.owner,
                    "release waits",
                    hold.release_on,
                    message=f"final notice on {hold.final_on}; released on {hold.release_on} "
                    "unless used",
                )
            )
        elif hold.due == "final" and dry_run:
            steps.append(
                IdleStep(hold.container, hold.owner, "would send the final notice", hold.release_on)
            )
    return steps


def rows(steps: Sequence[IdleStep]) -> list[dict[str, str]]:
    """One row per idle container acted on, for the report (text, Markdown, JSON)."""
    return [
        {
            "name": s.container,
            "owner": s.owner or "-",
            "action": s.action,
            "release_on": s.on.isoformat() if s.on else "-",
            "ok": "yes" if s.ok else "no",
            "message": s.message,
        }
        for s in steps
    ]


def notice_rows(
    idle: Sequence[IdleGpu], idle_sent: Sequence[Sent], dry_run: bool, timezone: str
) -> list[dict[str, str]]:
    """One row per held GPU idle for the policy's days, with what became of its notice."""
    sent = {(s.name, s.notice): s for s in idle_sent}
    rows = []
    for gpu in idle:
        note = sent.get((gpu.container, f"idle {gpu.pci}"))
        if note is None:
            said = "would notify" if dry_run else "not notified (no GitHub access, or not running)"
        elif note.error:
            said = f"not sent: {note.error}"
        else:
            said = f"{'sent' if note.new else 'already sent'} (#{note.issue})"
        rows.append(
            {
                "gpu": gpu.pci,
                "host": gpu.host or "-",
                "name": gpu.container,
                "owner": gpu.owner,
                "idle_since": gpu.since_day(timezone).isoformat(),
                "peak_utilization": str(gpu.peak),
                "notice": said,
            }
        )
    return rows
