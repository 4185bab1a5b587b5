"""Leases and retention as calendar days: where each managed container stands on a given day.

Pure: the day is handed in (`lab_today` turns a clock reading into the lab's day), nothing is
read from the clock, LXD or GitHub here. `ssp maintain` acts on what `review` says.

The rules, in the lab's time zone (the policy's `timezone`):
- `expires` is the LAST day of the lease, inclusive: the lease runs through that whole day
  and has ended from the next day on (`lease_ended`).
- A reminder is due when the days left (0 on the last day) are at most one of the policy's
  `reminders`; the smallest such number names it (`reminder-14`, `reminder-3`). So each
  reminder is sent once, even when maintenance skipped the very day.
- A container whose lease ended is stopped and snapshotted by the reconcile (state
  `expired`, kept, restarted by a renewal); its owner gets one notice of the expiry.
- A retired container (lease ended, or its request removed) is kept `retention_days` after
  the day it was retired. Only where the policy consents (`retention.delete`) is it deleted
  then, and only once its owner was sent the final notice at least
  `retention.final_notice_days` earlier: the notice goes out that many days before the
  deletion day, or late (pushing the deletion back) when maintenance missed that day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from provisioner.values import state
from provisioner.values.policymodels import Policy
from provisioner.values.state import Instance

# Set on a retired container once its owner was sent the final notice (the lab's day).
WARNED = "user.ssp.warned"


class Stage(StrEnum):
    ACTIVE = "active"  # the lease runs; nothing is due
    REMINDER = "reminder"  # the lease runs; a reminder is due
    EXPIRED = "expired"  # the lease ended: stopped, snapshotted, kept
    RETIRED = "retired"  # given back (request removed): stopped, snapshotted, kept
    KEPT = "kept"  # past retention, but the policy does not allow deletion
    FINAL_NOTICE = "final-notice"  # past (or near) retention: the last warning is due
    DELETE = "delete"  # past retention, warned long enough ago: delete it now


@dataclass(frozen=True)
class Lease:
    """What is due for one managed container on `today`."""

    name: str
    owner: str
    request_path: str
    stage: Stage
    expires: date | None
    retired_on: date | None = None
    delete_on: date | None = None  # the day deletion is due (only with the policy's consent)
    notice: str = ""  # the notice due now ("" for none), unique per lease and stage
    given_back: bool = False  # retired because its request was removed, not because it ended


def lab_today(now: datetime, timezone: str) -> date:
    """The lab's calendar day at the instant NOW (an aware datetime)."""
    return now.astimezone(ZoneInfo(timezone)).date()


def lease_ended(expires: date, today: date) -> bool:
    """True from the day after the last day of the lease."""
    return today > expires


def days_left(expires: date, today: date) -> int:
    """Whole days after today that the lease still runs: 0 on its last day."""
    return (expires - today).days


def reminder_due(expires: date, today: date, reminders: Sequence[int]) -> int | None:
    """The reminder that is due (its number of days), or None. On the last day and before
    it only: once the lease ended, the expiry notice takes over."""
    left = days_left(expires, today)
    if left < 0:
        return None
    due = [days for days in reminders if left <= days]
    return min(due) if due else None


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _retired(inst: Instance, policy: Policy, today: date, expires: date | None) -> Lease:
    retired_on = _date(inst.config.get(state.RETIRED)) or today
    ended = expires is not None and expires < retired_on
    base = Lease(
        inst.name,
        inst.config.get(state.OWNER, ""),
        inst.config.get(state.REQUEST, ""),
        Stage.EXPIRED if ended else Stage.RETIRED,
        expires,
        retired_on,
        notice=f"expired-{expires}" if ended else "",
        given_back=not ended,
    )
    keep_until = retired_on + timedelta(days=policy.retention_days)
    if not policy.retention.delete:
        if today >= keep_until:
            return replace(base, stage=Stage.KEPT)
        return base
    notice_days = timedelta(days=policy.retention.final_notice_days)
    warned = _date(inst.config.get(WARNED))
    if warned is not None and warned >= retired_on:
        delete_on = max(keep_until, warned + notice_days)
        stage = Stage.DELETE if today >= delete_on else base.stage
        return replace(base, stage=stage, delete_on=delete_on)
    if today >= keep_until - notice_days:
        delete_on = max(keep_until, today + notice_days)
        return replace(
            base, stage=Stage.FINAL_NOTICE, delete_on=delete_on, notice=f"final-{retired_on}"
        )
    return replace(base, delete_on=keep_until)


def review(instances: Sequence[Instance], policy: Policy, today: date) -> tuple[Lease, ...]:
    """Where every managed, finished container stands on TODAY, by name.

    Half-made containers (`creating`) are left out: the reconcile makes them again. A
    container with no readable lease label is reported active, never stopped or deleted.
    """
    out = []
    for inst in sorted(instances, key=lambda i: i.name):
        if not inst.managed or inst.config.get(state.STATE) == "creating":
            continue
        expires = _date(inst.config.get(state.EXPIRES))
        if inst.config.get(state.RETIRED):
            out.append(_retired(inst, policy, today, expires))
            continue
        owner = inst.config.get(state.OWNER, "")
        request = inst.config.get(state.REQUEST, "")
        due = None if expires is None else reminder_due(expires, today, policy.reminders)
        if expires is not None and lease_ended(expires, today):
            # Not retired yet (the reconcile does that): its expiry is what is due.
            notice = f"expired-{expires}"
            out.append(Lease(inst.name, owner, request, Stage.EXPIRED, expires, notice=notice))
        elif due is not None:
            out.append(
                Lease(
                    inst.name,
                    owner,
                    request,
                    Stage.REMINDER,
                    expires,
                    notice=f"reminder-{due}-{expires}",
                )
            )
        else:
            out.append(Lease(inst.name, owner, request, Stage.ACTIVE, expires))
    return tuple(out)
