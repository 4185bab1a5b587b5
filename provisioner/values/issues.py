"""A GitHub issue as the lease notices read it and the GitHub adapter returns it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IssueRef:
    """One issue: its number, body, whether it is open, and its address."""

    number: int
    body: str
    open: bool
    url: str = ""
