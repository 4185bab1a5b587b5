"""The usage database read back: a month's GPU-hours per member (`ssp usage`) and the GPUs
held but idle now (`ssp maintain`'s idle notices). The math is `provisioner.status.usage`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

    Each idle GPU's stretch begins where it really began, however long ago (within
    `usage.keep_days`): a stretch that fills the whole window read is read further back, so
    the day a notice names stays the same from one day's pass to the next."""
    usage = policy.usage
    if usage.idle_days <= 0 or not database.exists():
        return []
    at = int(now.timestamp())
    # A day more than the window: the stretch must be seen to begin before it.
    days = usage.idle_days + 1
    with UsageDb(database, create=False) as db:
        while True:
            readings = db.readings(at - days * DAY_S, at + 1)
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
            if days >= usage.keep_days or all(g.since > first[(g.host, g.pci)] for g in found):
                return found
            days = min(days * 2, usage.keep_days)
