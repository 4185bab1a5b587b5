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
