"""GPU-hours per member and idle GPUs, from the sampler's readings. Pure.

Definitions (the guides repeat them):
- **held** GPU-hours: the time a GPU was attached to one of the member's managed containers,
  summed over GPUs. Each reading stands for its `seconds` (the time since the previous pass,
  capped at the sampling interval), so time the sampler did not see counts nothing.
- **used** GPU-hours: held time weighted by utilisation: a reading at 40 % for 5 minutes adds
  2 minutes. A GPU busy all month at 100 % uses what it holds; one left idle uses nothing.
- **idle**: a held GPU whose utilisation stayed at or below the policy's
  `usage.idle_utilization` in every reading of its current holder for `usage.idle_days`.
  A reading NVML could not give a utilisation for never counts as idle.

Months are calendar months in the lab's time zone. The Prometheus text exposition format is
`prometheus_client`'s (provisioner.host.prometheus), a GPU host's library.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from provisioner.reporting.escape import code
from provisioner.values.errors import UsageError
from provisioner.values.usage import IdleGpu, Reading

_MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
DAY_S = 86_400


def month_span(month: str, timezone: str) -> tuple[int, int]:
    """[start, end) of MONTH ("2026-11") in Unix seconds, midnight to midnight in TIMEZONE."""
    match = _MONTH.fullmatch(month)
    if not match:
        raise UsageError(f"--month {month!r}: write the month as YYYY-MM, e.g. 2026-11")
    year, number = int(match.group(1)), int(match.group(2))
    zone = ZoneInfo(timezone)
    start = datetime(year, number, 1, tzinfo=zone)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    return int(start.timestamp()), int(end.timestamp())


def month_of(now: datetime, timezone: str) -> str:
    return now.astimezone(ZoneInfo(timezone)).strftime("%Y-%m")


@dataclass(frozen=True)
class MemberUse:
    """One member's GPU-hours in one month."""

    month: str
    member: str
    held_hours: float
    used_hours: float
    containers: tuple[str, ...]

    @property
    def used_share(self) -> float:
        """Used over held, 0..1 (0 when nothing was held)."""
        return self.used_hours / self.held_hours if self.held_hours else 0.0


def account(readings: Iterable[Reading], month: str) -> list[MemberUse]:
    """Held and used GPU-hours per member over READINGS (one month's), by member."""
    held: dict[str, float] = {}
    used: dict[str, float] = {}
    containers: dict[str, set[str]] = {}
    for r in readings:
        if not r.owner:
            continue
        held[r.owner] = held.get(r.owner, 0.0) + r.seconds
        used[r.owner] = used.get(r.owner, 0.0) + r.seconds * (r.utilization or 0) / 100
        containers.setdefault(r.owner, set()).add(r.container)
    return [
        MemberUse(
            month,
            member,
            round(held[member] / 3600, 3),
            round(used[member] / 3600, 3),
            tuple(sorted(containers[member])),
        )
        for member in sorted(held)
    ]


def previous_month(now: datetime, timezone: str) -> str:
    """The month before NOW's, in the lab's time zone: "2026-11" on any day of 2026-12."""
    first = now.astimezone(ZoneInfo(timezone)).replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


# --- output ------------------------------------------------------------------------------


def text(rows: Sequence[MemberUse], month: str) -> str:
    if not rows:
        return f"{month}: no GPU was held by a member's container in this month's readings\n"
    width = max(len("MEMBER"), *(len(r.member) for r in rows))
    lines = [f"GPU-hours in {month}", f"{'MEMBER':<{width}}  {'HELD':>9}  {'USED':>9}  USED/HELD"]
    for r in rows:
        lines.append(
            f"{r.member:<{width}}  {r.held_hours:>9.2f}  {r.used_hours:>9.2f}  {r.used_share:>8.0%}"
        )
    total_held = sum(r.held_hours for r in rows)
    total_used = sum(r.used_hours for r in rows)
    lines.append(f"{'total':<{width}}  {total_held:>9.2f}  {total_used:>9.2f}")
    return "\n".join(lines) + "\n"


def to_json(rows: Sequence[MemberUse], month: str) -> str:
    doc = {
        "month": month,
        "members": [{**asdict(r), "containers": list(r.containers)} for r in rows],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def to_csv(rows: Sequence[MemberUse]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["month", "member", "held_gpu_hours", "used_gpu_hours", "containers"])
    for r in rows:
        # A login cannot start with = + - @, so no cell reads as a spreadsheet formula.
        writer.writerow([r.month, r.member, r.held_hours, r.used_hours, " ".join(r.containers)])
    return out.getvalue()


@dataclass(frozen=True)
class Bar:
    """One member's month on the status page's chart: hours, and bar widths in percent."""

    month: str
    held_hours: float
    used_hours: float
    held_pct: float  # of the widest bar on the chart
    used_pct: float  # of this bar (used over held)


@dataclass(frozen=True)
class Chart:
    """Held vs used GPU-hours per member, last month and this one (the status page's)."""

    months: tuple[str, str]
    members: tuple[tuple[str, tuple[Bar, Bar]], ...]


def chart(
    last: Sequence[MemberUse], current: Sequence[MemberUse], months: tuple[str, str]
) -> Chart:
    """The chart's bars: every member who held a GPU in either month, by name."""
    by_month = [{r.member: r for r in rows} for rows in (last, current)]
    widest = max((r.held_hours for rows in (last, current) for r in rows), default=0.0) or 1.0
    members = []
    for member in sorted({*by_month[0], *by_month[1]}):
        bars = []
        for month, rows in zip(months, by_month, strict=True):
            r = rows.get(member)
            held, used = (r.held_hours, r.used_hours) if r else (0.0, 0.0)
            share = min(100.0, 100 * used / held) if held else 0.0
            bars.append(Bar(month, held, used, round(100 * held / widest, 1), round(share, 1)))
        members.append((member, (bars[0], bars[1])))
    return Chart(months, tuple(members))


def summary_marker(month: str) -> str:
    return f"<!-- ssp:usage-month {month} -->"


def summary_title(month: str) -> str:
    return f"GPU-hours in {month}"


def summary_body(rows: Sequence[MemberUse], month: str, top: int = 3) -> str:
    """The monthly summary issue: held and used GPU-hours per member, then the members who
    held the most GPU-hours without using them (held minus used). Logins are not mentioned
    (no @): a summary is no reason to notify anyone."""
    lines = [
        summary_marker(month),
        f"GPU-hours held and used per member in **{month}** (the lab's time zone), from the "
        "sampler's readings (`ssp usage --month " + month + "`). **Held**: a GPU attached to "
        "the member's container; **used**: held time weighted by utilisation.",
        "",
    ]
    if not rows:
        return "\n".join([*lines, "No GPU was held by a member's container this month.", ""])
    lines += ["| member | held | used | used/held |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {code(r.member)} | {r.held_hours:.1f} | {r.used_hours:.1f} | {r.used_share:.0%} |"
        )
    total_held = sum(r.held_hours for r in rows)
    total_used = sum(r.used_hours for r in rows)
    lines.append(f"| **total** | {total_held:.1f} | {total_used:.1f} | |")
    idle = sorted(rows, key=lambda r: (-(r.held_hours - r.used_hours), r.member))
    idle = [r for r in idle if r.held_hours - r.used_hours > 0][:top]
    if idle:
        lines += ["", "Top idle holders (GPU-hours held but not used):", ""]
        lines += [f"1. {code(r.member)}: {r.held_hours - r.used_hours:.1f}" for r in idle]
    return "\n".join(lines) + "\n"


# --- idle GPUs ---------------------------------------------------------------------------


def idle_gpus(
    readings: Iterable[Reading], now: int, *, threshold: int, days: int, fresh_s: int
) -> list[IdleGpu]:
    """The GPUs whose latest reading (no older than FRESH_S) has a holder, and whose readings
    under that holder stayed at or below THRESHOLD for DAYS or more, back from now.

    READINGS must reach back further than DAYS for a GPU to be found idle. A stale sampler
    (no reading within FRESH_S) finds nothing: no notice rests on old readings.
    """
    if days <= 0:
        return []
    by_gpu: dict[tuple[str, str], list[Reading]] = {}
    for r in readings:
        by_gpu.setdefault((r.host, r.pci), []).append(r)
    found = []
    for (host, pci), seen in sorted(by_gpu.items()):
        seen.sort(key=lambda r: r.at)
        latest = seen[-1]
        if not latest.container or latest.at < now - fresh_s:
            continue
        since: int | None = None
        peak = 0
        for r in reversed(seen):
            quiet = r.utilization is not None and r.utilization <= threshold
            if r.container != latest.container or r.owner != latest.owner or not quiet:
                break
            since, peak = r.at, max(peak, r.utilization or 0)
        if since is not None and since <= now - days * DAY_S:
            found.append(IdleGpu(host, pci, latest.container, latest.owner, since, peak))
    return found
