"""The usage database read back: a month's GPU-hours per member (`ssp usage`) and the GPUs
held but idle now (`ssp maintain`'s idle notices). The math is `provisioner.status.usage`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from provisioner.host.prometheus import exposition
from provisioner.host.usagedb import UsageDb
from provisioner.status.usage import (
    DAY_S,
    Chart,
    MemberUse,
    account,
    chart,
    idle_gpus,
    month_of,
    month_span,
    previous_month,
)
from provisioner.values.policymodels import Policy
from provisioner.values.usage import IdleGpu

ENV = "SSP_USAGE_DB"


def database_path(policy: Policy, env: Mapping[str, str], given: Path | None = None) -> Path:
    """--db, else $SSP_USAGE_DB, else the policy's `usage.database`."""
    return Path(given or env.get(ENV) or policy.usage.database)


def member_use(database: Path, policy: Policy, month: str) -> list[MemberUse]:
    """Held and used GPU-hours per member in MONTH (lab time); UsageDbError without a file."""
    start, end = month_span(month, policy.timezone)
    with UsageDb(database, create=False) as db:
        return account(db.readings(start, end), month)


def prometheus(rows: Sequence[MemberUse]) -> str:
    """ROWS in the Prometheus text exposition format (provisioner.host.prometheus)."""
    return exposition((r.member, r.month, r.held_hours, r.used_hours) for r in rows)


def page_chart(database: Path, policy: Policy, now: datetime) -> Chart | None:
    """Last month's and this month's GPU-hours per member for the status page; None without
    a database (no readings yet). Raises UsageDbError for one that cannot be read."""
    if not database.exists():
        return None
    months = (previous_month(now, policy.timezone), month_of(now, policy.timezone))
    last, current = (member_use(database, policy, m) for m in months)
    return chart(last, current, months)


def idle_now(database: Path, policy: Policy, now: datetime) -> list[IdleGpu]:
    """The held GPUs idle for the policy's `usage.idle_days`; [] when idle notices are off
    or no database exists yet (no readings, no notice).

    Each idle GPU's stretch begins where it really began, however long ago (the readings
    kept): a stretch that fills the whole window read is followed further back in the
    database, so the day a notice names stays the same from one day's pass to the next."""
    usage = policy.usage
    if usage.idle_days <= 0 or not database.exists():
        return []
    at = int(now.timestamp())
    # A day more than the window: the stretch must be seen to begin before it.
    with UsageDb(database, create=False) as db:
        readings = db.readings(at - (usage.idle_days + 1) * DAY_S, at + 1)
        found = idle_gpus(
            readings,
            at,
            threshold=usage.idle_utilization,
            days=usage.idle_days,
            fresh_s=3 * usage.interval_minutes * 60,
        )
        first: dict[tuple[str, str], int] = {}
        for r in readings:  # in time order
            first.setdefault((r.host, r.pci), r.at)
        out = []
        for gpu in found:
            earlier = None
            if gpu.since == first[(gpu.host, gpu.pci)]:  # it may have begun before the window
                earlier = db.quiet_from(gpu, usage.idle_utilization, gpu.since)
            if earlier is not None:
                gpu = replace(gpu, since=earlier[0], peak=max(gpu.peak, earlier[1]))  # noqa: PLW2901
            out.append(gpu)
        return out
