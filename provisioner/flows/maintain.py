"""One maintenance pass (`ssp maintain`): reconcile, then act on where each lease stands.

The order, each step on what the one before left:
1. the reconcile pass `ssp apply` makes (provisioner.flows.reconcile): it stops and snapshots the
   containers whose lease ended (state `expired`) or whose request is gone, and starts a
   renewed one again;
2. `leases.review` of every managed container on the lab's day;
3. deletions: a container past retention is deleted only where the review says so (the
   policy consents, and its owner got the final notice long enough ago), exported first
   into the policy's `retention.export_dir` when one is set; a failed export keeps it;
4. backups off the host (provisioner.flows.backup), where the policy has a `backup:` section:
   the due containers exported into its target, each on its own (a failure is reported and
   retried on the next pass), the oldest past `keep` removed;
5. notices on GitHub (provisioner.reporting.notices), when a client is handed in; a final
   notice that reached GitHub is recorded on the container (`user.ssp.warned`), which is what lets a
   later pass delete it. GitHub failures are reported and change nothing on the host;
6. idle-GPU notices (provisioner.reporting.idlenotices) for the GPUs the usage database shows
   held but idle for the policy's `usage.idle_days`, handed in by the caller; where the policy
   consents (`usage.idle_action: release`), the final notices and the releases' comments
   (provisioner.flows.idlerelease, whose `before_reconcile` the caller ran before step 1, so
   that step's reconcile already took the released GPUs off);
7. the monthly GPU-hours summary issue (provisioner.flows.usagesummary) for last month, once;
8. the warm pool (provisioner.applying.warm): stale or surplus warm clones removed, missing
   ones made, so the next merged request claims one instead of copying the base.

After the lock, `ssp maintain` hands the result to provisioner.flows.notify, which sends the
same notices by e-mail and webhook where the policy has a `notify:` section.

A dry run changes nothing anywhere: it lists what would be stopped, deleted and notified.
The caller holds the host lock, as for an apply.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Protocol

from provisioner.applying import warm as warmpool
from provisioner.flows import backup, idlerelease, usagesummary
from provisioner.flows.reconcile import Pass
from provisioner.planning.leases import WARNED, Lease, Stage, lab_today, review
from provisioner.reporting import applyreport, idlenotices, notices
from provisioner.reporting.render import render
from provisioner.values import idranges, state
from provisioner.values.errors import LxdError
from provisioner.values.idranges import IdRange
from provisioner.values.messages import Delivery
from provisioner.values.policymodels import Policy
from provisioner.values.state import Instance, LxdApi, Pool
from provisioner.values.usage import IdleGpu, IdleHold, IdleStep


class Archiver(Protocol):
    """What deletion needs beyond `LxdApi`: an `lxc export`-style tarball of an instance."""

    def export(self, name: str, path: str, optimized: bool = False) -> int:
        """Write the instance (with its snapshots) as a backup tarball at PATH, a file that
        must not exist yet; returns its size in bytes."""
        ...

    def storage_pool(self, name: str, member: str = "") -> Pool | None: ...


class MaintainLxd(LxdApi, Archiver, Protocol):
    """The LXD adapter as maintenance uses it."""


@dataclass(frozen=True)
class Step:
    """What maintenance did (or would do) to one container beyond the reconcile."""

    name: str
    owner: str
    action: str  # deleted | would delete | kept | failed
    ok: bool = True
    message: str = ""


@dataclass(frozen=True)
class Maintenance:
    applied: Pass
    today: date
    leases: tuple[Lease, ...]
    steps: tuple[Step, ...]
    sent: tuple[notices.Sent, ...] = ()
    github: bool = False  # whether notices were tried at all
    dry_run: bool = False
    warnings: tuple[str, ...] = field(default=())
    backups: tuple[backup.BackupStep, ...] = ()
    idle: tuple[IdleGpu, ...] = ()  # held GPUs idle for the policy's days
    idle_sent: tuple[notices.Sent, ...] = ()
    idle_steps: tuple[IdleStep, ...] = ()  # releases and final notices (idlerelease)
    idle_holds: tuple[IdleHold, ...] = ()  # what was due for idle containers (idlerelease)
    summary: usagesummary.Summary | None = None  # last month's GPU-hours issue
    delivered: tuple[Delivery, ...] = ()  # mail and webhooks (provisioner.flows.notify)
    warm: tuple[warmpool.WarmStep, ...] = ()  # the warm pool's upkeep

    @property
    def ok(self) -> bool:
        return (
            self.applied.result.ok
            and not self.applied.skipped
            and all(s.ok for s in self.steps)
            and all(b.ok for b in self.backups)
            and all(s.ok for s in self.idle_steps if s.action != "final notice not sent")
            and all(w.ok for w in self.warm)
        )


def export_path(policy: Policy, lease: Lease) -> str:
    """Where a container's export goes: one file per container and retirement day."""
    folder = PurePosixPath(policy.retention.export_dir or "/")
    return str(folder / f"{lease.name}-{lease.retired_on or 'unknown'}.tar.gz")


def _delete(lxd: MaintainLxd, policy: Policy, lease: Lease, dry_run: bool) -> Step:
    exported = ""
    if policy.retention.export_dir:
        path = export_path(policy, lease)
        if dry_run:
            return Step(lease.name, lease.owner, "would delete", message=f"after export to {path}")
        try:
            size = lxd.export(lease.name, path)
        except (LxdError, OSError) as e:
            return Step(
                lease.name, lease.owner, "failed", False, f"not deleted: the export failed: {e}"
            )
        exported = f"exported to {path} ({size} bytes) first"
    elif dry_run:
        return Step(lease.name, lease.owner, "would delete", message="no export (none asked)")
    try:
        lxd.set_config(lease.name, {"security.protection.delete": "false"})
        lxd.stop(lease.name)
        lxd.delete(lease.name)
    except LxdError as e:
        return Step(lease.name, lease.owner, "failed", False, f"not deleted: {e}")
    return Step(lease.name, lease.owner, "deleted", message=exported)


def maintain(
    applied: Pass,
    lxd: MaintainLxd,
    *,
    now: datetime,
    notice_client: notices.NoticeClient | None = None,
    log: Callable[[str], None] = lambda _l: None,
    idle: Sequence[IdleGpu] = (),
    idle_holds: Sequence[IdleHold] = (),
    idle_steps: Sequence[IdleStep] = (),
    month_use: usagesummary.MonthUse | None = None,
    id_spans: tuple[IdRange, ...] = idranges.LXD_DEFAULT_SPANS,
    pin_ids: bool = True,
) -> Maintenance:
    """Steps 2-4 after APPLIED, the reconcile pass (step 1, a dry run or not) made under the
    same host lock; see the module's docstring."""
    config = applied.validation.config
    assert config is not None  # noqa: S101  (a pass is only made with a config)
    policy = config.policy
    dry_run = applied.result.dry_run
    today = lab_today(now, policy.timezone)
    instances = lxd.instances()
    if dry_run:
        instances = _as_if_applied(instances, applied, today)
    leases = review(instances, policy, today)
    steps: list[Step] = []
    gone: set[str] = set()
    for lease in leases:
        if lease.stage is Stage.DELETE:
            step = _delete(lxd, policy, lease, dry_run)
            log(f"{lease.name}: {step.action} {step.message}".rstrip())
            steps.append(step)
            if step.action == "deleted":
                gone.add(lease.name)
        elif lease.stage is Stage.KEPT:
            steps.append(
                Step(
                    lease.name,
                    lease.owner,
                    "kept",
                    message=f"retired on {lease.retired_on}, past retention_days; the policy "
                    "does not allow deletion (retention.delete), so an admin decides",
                )
            )
    left = tuple(lease for lease in leases if lease.name not in gone)
    kept = [i for i in instances if i.name not in gone]
    chosen = backup.opted_in(applied.validation.valid)
    backups = backup.run_backups(lxd, policy, kept, chosen, now=now, dry_run=dry_run, log=log)
    sent: list[notices.Sent] = []
    idle_sent: list[notices.Sent] = []
    summary = None
    if notice_client is not None and not dry_run:
        keep = idlenotices.watched(idle, left)
        sent = notices.send(notice_client, left, policy, log=log, keep_open=keep)
        _record_warnings(lxd, left, sent, today, log)
        idle_sent = idlenotices.send_idle(notice_client, idle, left, policy, log=log)
        final_sent, final_steps = idlerelease.after_notices(
            lxd, notice_client, idle_holds, idle_sent, left, policy, today, log
        )
        idle_sent += final_sent
        idle_steps = [*idle_steps, *final_steps]
        if month_use is not None:
            summary = usagesummary.post(notice_client, month_use, log)
    idle_steps = [*idle_steps, *idlerelease.waiting(idle_holds, dry_run)]
    pool = warmpool.refill(
        lxd, policy, kept, id_spans=id_spans, pin_ids=pin_ids, dry_run=dry_run, log=log
    )
    return Maintenance(
        applied,
        today,
        left,
        tuple(steps),
        tuple(sent),
        notice_client is not None,
        dry_run,
        backups=backups,
        idle=tuple(idle),
        idle_sent=tuple(idle_sent),
        idle_steps=tuple(idle_steps),
        idle_holds=tuple(idle_holds),
        summary=summary,
        warm=pool,
    )


def _record_warnings(
    lxd: LxdApi,
    leases: Sequence[Lease],
    sent: Sequence[notices.Sent],
    today: date,
    log: Callable[[str], None],
) -> None:
    """The final notices that reached GitHub, on their containers: deletion waits on them."""
    delivered = {s.name for s in sent if s.notice.startswith("final-") and not s.error}
    for lease in leases:
        if lease.stage is Stage.FINAL_NOTICE and lease.name in delivered:
            try:
                lxd.set_config(lease.name, {WARNED: today.isoformat()})
            except LxdError as e:  # the next pass warns again (the same comment) and records it
                log(f"{lease.name}: could not record the final notice: {e}")


def _as_if_applied(instances: Sequence[Instance], applied: Pass, today: date) -> list[Instance]:
    """What the instances would look like had the dry run's retirements happened."""
    retiring = {o.name for o in applied.result.outcomes if o.action == "would retire"}
    out = []
    for found in instances:
        if found.name in retiring and not found.config.get(state.RETIRED):
            config = {**found.config, state.RETIRED: today.isoformat()}
            out.append(Instance(found.name, "Stopped", config, found.devices))
        else:
            out.append(found)
    return out


# --- the report -------------------------------------------------------------------------------

_SAID = {
    Stage.REMINDER: "reminder due",
    Stage.EXPIRED: "expired: stopped and kept",
    Stage.RETIRED: "retired: stopped and kept",
    Stage.KEPT: "past retention, kept",
    Stage.FINAL_NOTICE: "final notice due",
    Stage.DELETE: "to delete",
}


def lease_rows(m: Maintenance) -> list[dict[str, str]]:
    """One row per container with something to say (not a lease that simply runs)."""
    sent = {s.name: s for s in m.sent}
    steps = {s.name: s for s in m.steps}
    rows = []
    names = [lease.name for lease in m.leases] + [s.name for s in m.steps]
    leases = {lease.name: lease for lease in m.leases}
    for name in dict.fromkeys(names):
        lease, step, note = leases.get(name), steps.get(name), sent.get(name)
        if lease is not None and lease.stage is Stage.ACTIVE and note is None:
            continue
        stage = _SAID.get(lease.stage, "") if lease is not None else ""
        if step is not None:
            stage = f"{step.action}" + (f": {step.message}" if step.message else "")
        rows.append(
            {
                "name": name,
                "owner": (lease.owner if lease else step.owner if step else "") or "-",
                "expires": str(lease.expires or "-") if lease else "-",
                "state": stage or "-",
                "delete_on": str(lease.delete_on) if lease and lease.delete_on else "-",
                "notice": _notice_said(m, lease, note),
            }
        )
    return rows


def _notice_said(m: Maintenance, lease: Lease | None, note: notices.Sent | None) -> str:
    if note is not None:
        if note.error:
            return f"not sent: {note.error}"
        if note.closed:
            return f"issue #{note.issue} closed ({note.closed})"
        return f"{'sent' if note.new else 'already sent'} ({note.notice}, #{note.issue})"
    if lease is None or not lease.notice:
        return "-"
    if m.dry_run:
        return f"would send {lease.notice}"
    return "not sent: no GitHub access" if not m.github else "-"


def delivery_rows(m: Maintenance) -> list[dict[str, str]]:
    """One row per mail or webhook message tried (or skipped) in this run."""
    return [
        {
            "notice": d.key,
            "channel": d.channel,
            "result": f"not sent: {d.skipped}"
            if d.skipped
            else "sent"
            if d.ok
            else f"failed after {d.attempts} tries: {d.error}",
        }
        for d in m.delivered
    ]


def text_lines(m: Maintenance, timezone: str = "UTC") -> list[str]:
    lines = [f"lab day {m.today}" + (" (dry run: nothing changed)" if m.dry_run else "")]
    for row in lease_rows(m):
        lines.append(
            f"{row['name']:<24} {row['owner']:<12} until {row['expires']:<10}  {row['state']}"
            + (f"  (deletion on or after {row['delete_on']})" if row["delete_on"] != "-" else "")
            + (f"  notice: {row['notice']}" if row["notice"] != "-" else "")
        )
    for b in m.backups:
        lines.append(f"backup {b.name:<17} {b.action}" + (f": {b.message}" if b.message else ""))
    for idle in idlerelease.notice_rows(m.idle, m.idle_sent, m.dry_run, timezone):
        lines.append(
            f"{idle['name']:<24} {idle['owner']:<12} GPU {idle['gpu']} idle since "
            f"{idle['idle_since']} (peak {idle['peak_utilization']}%)  notice: {idle['notice']}"
        )
    for r in idlerelease.rows(m.idle_steps):
        lines.append(
            f"{r['name']:<24} {r['owner']:<12} idle GPUs: {r['action']}"
            + (f" (release on {r['release_on']})" if r["release_on"] != "-" else "")
            + (f"  {r['message']}" if r["message"] else "")
        )
    lines += [f"{r['channel']}: {r['notice']}: {r['result']}" for r in delivery_rows(m)]
    lines += [said] if (said := usagesummary.said(m.summary)) else []
    lines += [
        f"warm {w.name:<19} {w.action}" + (f": {w.message}" if w.message else "") for w in m.warm
    ]
    return lines


def markdown(m: Maintenance, policy: Policy) -> str:
    """The job summary: the leases, then the reconcile's own report."""
    applied = applyreport.markdown(policy, m.applied.result, m.applied.skipped)
    return render(
        "maintain.md.j2",
        today=m.today,
        dry_run=m.dry_run,
        rows=lease_rows(m),
        backups=m.backups,
        idle=idlerelease.notice_rows(m.idle, m.idle_sent, m.dry_run, policy.timezone),
        released=idlerelease.rows(m.idle_steps),
        summary=usagesummary.said(m.summary),
        delivered=delivery_rows(m),
        warm=m.warm,
        apply=applied,
    )


def to_json(m: Maintenance, policy: Policy) -> str:
    doc = {
        "ok": m.ok,
        "today": m.today.isoformat(),
        "dry_run": m.dry_run,
        "leases": lease_rows(m),
        "backups": [
            {"name": b.name, "action": b.action, "ok": b.ok, "message": b.message}
            for b in m.backups
        ],
        "idle_gpus": idlerelease.notice_rows(m.idle, m.idle_sent, m.dry_run, policy.timezone),
        "idle_releases": idlerelease.rows(m.idle_steps),
        "monthly_summary": usagesummary.said(m.summary) or None,
        "delivered": delivery_rows(m),
        "warm": [
            {"name": w.name, "action": w.action, "ok": w.ok, "message": w.message} for w in m.warm
        ],
        "apply": json.loads(applyreport.to_json(policy, m.applied.result, m.applied.skipped)),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
