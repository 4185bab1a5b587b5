"""GPU use as plain data: one reading of one GPU at one time, with who held it.

`ssp sample` makes these (from NVML's readings and LXD's gpu devices), the usage database
(`provisioner.host.usagedb`) keeps them, and the accounting (`provisioner.status.usage`)
turns them into GPU-hours and idle GPUs. Times are Unix seconds (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Reading:
    """One GPU at one sampling pass.

    `seconds` is the stretch of time this reading stands for: the time since the previous
    pass, capped at the sampling interval, so a host that was down counts nothing for the
    gap and an extra manual pass does not count a stretch twice.
    """

    at: int  # Unix seconds
    pci: str  # LXD's form, 0000:4b:00.0
    seconds: int
    utilization: int | None  # percent; None when NVML cannot tell
    memory_used: int  # bytes
    memory_total: int
    processes: int
    owner: str = ""  # the holder's owner login, "" when no managed container holds it
    container: str = ""  # the holder's name
    host: str = ""  # the cluster member that sampled it ("" on a single host)


@dataclass(frozen=True)
class IdleGpu:
    """A held GPU idle for at least the policy's days: who holds it and since when."""

    host: str
    pci: str
    container: str
    owner: str
    since: int  # Unix seconds: the first reading of the idle stretch
    peak: int  # the highest utilisation seen in the stretch (percent)

    def since_day(self, timezone: str) -> date:
        return datetime.fromtimestamp(self.since, UTC).astimezone(ZoneInfo(timezone)).date()


@dataclass(frozen=True)
class IdleHold:
    """A running container all of whose GPUs are idle, where the policy consents to release
    them (`usage.idle_action: release`), and what is due for it on the lab's day.

    due: `final` (the final notice is due; it names `release_on`), `wait` (the final notice
    reached the owner on `final_on`; the release comes on `release_on`), `release` (now).
    """

    container: str
    owner: str
    pcis: tuple[str, ...]
    since: date  # the day the idle stretch began (the latest of its GPUs')
    due: str  # final | wait | release
    release_on: date
    final_on: date | None = None


@dataclass(frozen=True)
class IdleStep:
    """What a maintenance pass did (or would do) about one idle container's GPUs."""

    container: str
    owner: str
    action: str  # released | would release | final notice | would send the final notice | ...
    on: date | None = None  # the release day
    ok: bool = True
    message: str = ""
