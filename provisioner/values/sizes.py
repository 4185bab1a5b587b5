"""Sizes: the `32GiB` form requests and the policy write, and sizes shown to people.

`size_bytes` and `format_size` are exact (a request's memory, a quota); `human_size` rounds
what LXD and NVML report, which is rarely a whole unit. One place, so every report agrees.
"""

from __future__ import annotations

import re

_UNITS = {"MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
_SIZE = re.compile(r"^([1-9][0-9]*)(MiB|GiB|TiB)$")


def size_bytes(size: str) -> int:
    """`32GiB` → 34359738368. The schema has already checked the form."""
    match = _SIZE.match(size)
    if not match:
        raise ValueError(f"not a size: {size!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_size(n: int) -> str:
    """Bytes → the largest unit that divides them exactly (34359738368 → 32GiB)."""
    for unit in ("TiB", "GiB", "MiB"):
        if n % _UNITS[unit] == 0 and n >= _UNITS[unit]:
            return f"{n // _UNITS[unit]}{unit}"
    return f"{max(1, n // _UNITS['MiB'])}MiB"


def format_mib(n: int) -> str:
    """Bytes in whole MiB, the way NVML's card memory is recorded: 25757220864 → 24564MiB."""
    return f"{n // _UNITS['MiB']}MiB"


def human_size(n: int) -> str:
    """Bytes for a reader: 245123456789 → "228.3GiB" (sizes LXD reports are not round)."""
    for unit in ("TiB", "GiB", "MiB"):
        if n >= _UNITS[unit]:
            return f"{n / _UNITS[unit]:.1f}{unit}".replace(".0" + unit, unit)
    return f"{n}B" if n else "0"


def amount(resource: str, n: int, *, exact: bool = False) -> str:
    """A resource's quantity: memory and disk as sizes (`exact` for sums of requests, which
    are whole units), the rest (cpu, gpus, instances) as counts."""
    if resource not in ("memory", "disk"):
        return str(n)
    return format_size(n) if exact else human_size(n)
