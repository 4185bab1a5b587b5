"""A GitHub issue as the lease notices read it and the GitHub adapter returns it, and how a
container's lease issue is known: its label and the hidden marker in its body."""

from __future__ import annotations

import re
from dataclasses import dataclass

LEASE_LABEL = "ssp-lease"
# Found by this marker in the body, never by the title (anyone with triage rights can edit it).
LEASE_MARKER = re.compile(r"<!-- ssp:lease ([a-z][a-z0-9-]{1,30}[a-z0-9]) -->")


def lease_marker(name: str) -> str:
    return f"<!-- ssp:lease {name} -->"


@dataclass(frozen=True)
class IssueRef:
    """One issue: its number, body, whether it is open, and its address."""

    number: int
    body: str
    open: bool
    url: str = ""
