"""The monthly GPU-hours summary issue, posted by `ssp maintain`.

On a pass with GitHub access, when the issue for the month before the lab's current one does
not exist yet, one is opened (label `ssp-usage`, title "GPU-hours in YYYY-MM", found again by
the hidden marker `<!-- ssp:usage-month YYYY-MM -->` in its body, never by its title): held and
used GPU-hours per member and the top idle holders (provisioner.status.usage). So the first
pass of a month opens it, and a pass whose GitHub call failed leaves it to the next one;
reruns find it and post nothing. GitHub is reached only through the client handed in; a
failure is recorded, never raised. Without a usage database there is nothing to sum, and
nothing is posted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from provisioner.flows.usage import member_use
from provisioner.reporting.notices import NoticeClient
from provisioner.status.usage import (
    MemberUse,
    previous_month,
    summary_body,
    summary_marker,
    summary_title,
)
from provisioner.values.errors import GithubError
from provisioner.values.policymodels import Policy

LABEL = "ssp-usage"


@dataclass(frozen=True)
class MonthUse:
    """A finished month's GPU-hours per member, to be summed up in its issue."""

    month: str
    rows: tuple[MemberUse, ...]


@dataclass(frozen=True)
class Summary:
    """What became of the month's summary issue in this run."""

    month: str
    issue: int | None = None
    url: str = ""
    new: bool = False  # opened now (False: it was there already)
    error: str = ""


def last_month(database: Path, policy: Policy, now: datetime) -> MonthUse | None:
    """The month before NOW's (lab time) from the usage database; None without one.
    Raises UsageDbError for a database that cannot be read."""
    if not database.exists():
        return None
    month = previous_month(now, policy.timezone)
    return MonthUse(month, tuple(member_use(database, policy, month)))


def post(
    client: NoticeClient, use: MonthUse, log: Callable[[str], None] = lambda _l: None
) -> Summary:
    """Open the month's summary issue unless it exists; see the module's docstring."""
    marker = summary_marker(use.month)
    try:
        for issue in client.our_issues(LABEL):
            if marker in issue.body:
                return Summary(use.month, issue.number, issue.url)
        made = client.create_issue(
            summary_title(use.month), summary_body(use.rows, use.month), LABEL, marker
        )
    except GithubError as e:
        return Summary(use.month, error=str(e))
    log(f"GPU-hours of {use.month}: opened #{made.number}")
    return Summary(use.month, made.number, made.url, new=True)


def said(summary: Summary | None) -> str:
    """One line for the report ("" when there was nothing to post)."""
    if summary is None:
        return ""
    if summary.error:
        return f"GPU-hours of {summary.month}: summary issue not opened: {summary.error}"
    how = "opened" if summary.new else "already open"
    return f"GPU-hours of {summary.month}: summary issue {how} (#{summary.issue})"
