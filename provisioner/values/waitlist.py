"""The waitlist as values: where a request stands in line, and the one wording of it.

A merged container request whose GPUs are taken waits (plandata.Wait) in merge order: the
order in which requests first landed on `main` (`Landed`, read from git by
provisioner.git.history.landings). The PR comment, the preview, `ssp status`, the page and
the notices all say a place with `line_text`, so they agree word for word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Landed:
    """When a request file first landed on `main` in its current life: the place (1 is the
    oldest) of that commit on main's first-parent history, and the commit itself."""

    position: int
    sha: str


def ordinal(n: int) -> str:
    """1 → "1st", 2 → "2nd", 11 → "11th", 23 → "23rd"."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def frees_text(gpus: Sequence[int], frees: date | None) -> str:
    """ "GPU 3 frees on 2027-01-20" (the first of the GPUs waited for to come free), or ""
    when no lease says when (a GPU held outside any request)."""
    if frees is None or not gpus:
        return ""
    return f"GPU {gpus[0]} frees on {frees}"


def line_text(place: int, gpus: Sequence[int] = (), frees: date | None = None) -> str:
    """ "2nd in line; GPU 3 frees on 2027-01-20": the place and when the next GPU frees."""
    said = f"{ordinal(place)} in line"
    when = frees_text(gpus, frees)
    return f"{said}; {when}" if when else said
