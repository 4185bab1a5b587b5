"""Lease notices on GitHub: one sticky issue per container, one comment per notice.

Each container whose owner has been told something has one issue, labelled `ssp-lease`,
found again by the hidden marker `<!-- ssp:lease NAME -->` in its body (never by its
title, which anyone with triage rights could change). The issue mentions the owner and says
where the lease stands; it is edited in place as that changes, reopened when a closed one
is needed again (a renewed lease that ends anyway), and closed when the lease is renewed or
the container is gone. Every notice due (a reminder, the expiry, the final warning before
deletion) is a comment on it that mentions the owner and carries its own marker, so a rerun
finds it and never posts it twice; its text depends only on the lease, so a rerun edits
nothing either.

GitHub is reached only through the `NoticeClient` handed in (provisioner.github.client implements
it). A GitHub failure for one container is recorded in its `Sent` and the others go on;
nothing here raises for GitHub's sake, so host work never waits on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from provisioner.planning.leases import Lease, Stage
from provisioner.values.errors import GithubError
from provisioner.values.issues import LEASE_LABEL, LEASE_MARKER, IssueRef, lease_marker
from provisioner.values.models import LOGIN_PATTERN
from provisioner.values.policymodels import Policy
from provisioner.values.requestpaths import under_requests

LABEL = LEASE_LABEL
_LOGIN = re.compile(LOGIN_PATTERN)


class CommentLike(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def created(self) -> bool: ...


class NoticeClient(Protocol):
    """What `send` needs from GitHub (provisioner.github.client's GitHubClient has it)."""

    def our_issues(self, label: str) -> Sequence[IssueRef]:
        """Open and closed issues with LABEL written by these credentials."""
        ...

    def create_issue(self, title: str, body: str, label: str, marker: str) -> IssueRef:
        """A new issue; one whose create reached GitHub unanswered is found by MARKER."""
        ...

    def edit_issue(self, number: int, body: str, open_: bool) -> IssueRef: ...

    def upsert_comment(self, number: int, body: str, marker: str) -> CommentLike: ...


@dataclass(frozen=True)
class Sent:
    """What became of one container's issue in this run."""

    name: str
    notice: str = ""  # the notice delivered (or tried), "" when the issue was only closed
    issue: int | None = None
    url: str = ""
    new: bool = False  # the notice's comment was posted now (False: it was there already)
    closed: str = ""  # why the issue was closed now: "renewed" | "gone"
    error: str = ""


def issue_marker(name: str) -> str:
    return lease_marker(name)


def notice_marker(lease: Lease) -> str:
    return f"<!-- ssp:lease-notice {lease.name} {lease.notice} -->"


def _mention(login: str) -> str:
    return f"@{login}" if _LOGIN.fullmatch(login) else "the owner"


def _renew(lease: Lease) -> str:
    where = f"`{lease.request_path}`" if under_requests(lease.request_path) else "its file"
    if lease.given_back:  # the file is gone: changing `expires:` in it is not possible
        return f"open a pull request that adds {where} back (with a later `expires:`)"
    return f"open a pull request that changes `expires:` in {where} to a later date"


def _after_retirement(lease: Lease, policy: Policy) -> str:
    if lease.delete_on is None:
        return "It is kept until an admin deletes it."
    kept = " after an export the admins keep" if policy.retention.export_dir else ""
    return f"Unless it is renewed, it will be deleted{kept} on or after {lease.delete_on}."


def notice_text(lease: Lease, policy: Policy) -> str:
    """The comment for the notice due on LEASE (mentions the owner)."""
    who, zone = _mention(lease.owner), policy.timezone
    if lease.stage is Stage.REMINDER and lease.expires is not None:
        ended = lease.expires + timedelta(days=1)
        return (
            f"{who}: the lease of container `{lease.name}` ends with **{lease.expires}** "
            f"({zone}). To keep it, {_renew(lease)}. Otherwise it is stopped and snapshotted "
            f"on {ended} and kept for {policy.retention_days} days.\n"
        )
    if lease.stage is Stage.FINAL_NOTICE:
        kept = ", after an export the admins keep," if policy.retention.export_dir else ""
        return (
            f"{who}: **last notice.** Container `{lease.name}` (retired on "
            f"{lease.retired_on}) will be deleted{kept} on or after **{lease.delete_on}**. "
            f"To keep it, {_renew(lease)} before then; the next apply starts it again as it "
            "was.\n"
        )
    return (
        f"{who}: the lease of container `{lease.name}` ended with {lease.expires} ({zone}). "
        "It was stopped and snapshotted; your data is kept. To use it again, "
        f"{_renew(lease)}: the next apply starts it with everything as it was. "
        f"{_after_retirement(lease, policy)}\n"
    )


_PAGE = "The lab's status page:"


def page_line(policy: Policy) -> str:
    """Where the lab's status page is (the policy's snapshot.page_url), as the last paragraph
    of a notice on GitHub; "" when the policy does not say."""
    url = policy.snapshot.page_url
    return f"\n{_PAGE} [{url}]({url})\n" if url else ""


def issue_title(lease: Lease) -> str:
    return f"Lease of container {lease.name} ({lease.owner})"


def issue_body(lease: Lease, policy: Policy, closed: str = "") -> str:
    """Where the lease stands: the issue's text, edited in place as that changes."""
    lines = [
        issue_marker(lease.name),
        f"This issue follows the lease of container `{lease.name}`, which belongs to "
        f"{_mention(lease.owner)}. Notices about it are posted here as comments.",
        "",
        f"- **Last day of the lease:** {lease.expires or 'unknown'} ({policy.timezone})",
    ]
    if closed == "renewed":
        lines.append("- **State:** renewed; nothing is due, so this issue is closed.")
    elif closed == "gone":
        lines.append("- **State:** the container no longer exists, so this issue is closed.")
    elif lease.stage is Stage.REMINDER:
        lines.append("- **State:** running; the lease ends soon.")
    elif lease.stage is Stage.ACTIVE:
        lines.append("- **State:** running.")
    else:
        lines.append(f"- **State:** stopped and kept (retired on {lease.retired_on or '-'}).")
        if lease.delete_on is not None:
            lines.append(f"- **Deletion:** on or after {lease.delete_on}.")
        else:
            lines.append("- **Deletion:** not planned; an admin decides.")
    lines += ["", f"To keep it, {_renew(lease)}."] if not closed else []
    return "\n".join(lines) + "\n" + page_line(policy)


def _gone_body(name: str, body: str) -> str:
    lines = [line for line in body.splitlines() if not line.startswith("- **State:**")]
    lines = [line for line in lines if not line.startswith(("- **Deletion:**", "To keep it"))]
    # the status page's line stays last
    page = [line for line in lines if line.startswith(_PAGE)]
    lines = [line for line in lines if not line.startswith(_PAGE)]
    text = "\n".join(lines).rstrip("\n")
    if issue_marker(name) not in text:
        text = issue_marker(name) + "\n" + text
    text += "\n- **State:** the container no longer exists, so this issue is closed.\n"
    return text + "".join(f"\n{line}\n" for line in page[:1])


def _by_name(issues: Sequence[IssueRef]) -> dict[str, IssueRef]:
    """Each container's issue: the oldest one carrying its marker."""
    found: dict[str, IssueRef] = {}
    for issue in sorted(issues, key=lambda i: i.number):
        match = LEASE_MARKER.search(issue.body)
        if match:
            found.setdefault(match.group(1), issue)
    return found


def send(
    client: NoticeClient,
    leases: Sequence[Lease],
    policy: Policy,
    log: Callable[[str], None] = lambda _line: None,
    keep_open: Collection[str] = (),
) -> list[Sent]:
    """Post the notices due on LEASES, close the issues of renewed and vanished containers.

    LEASES is every managed container that exists now; an issue whose container is not among
    them is closed as gone. The issues of containers in KEEP_OPEN (an idle-GPU notice is
    due on them) are not closed as renewed.
    """
    try:
        issues = _by_name(client.our_issues(LABEL))
    except GithubError as e:
        return [Sent(lease.name, lease.notice, error=str(e)) for lease in leases if lease.notice]
    done: list[Sent] = []
    for lease in leases:
        issue = issues.get(lease.name)
        try:
            if lease.notice:
                done.append(_deliver(client, lease, policy, issue))
            elif (
                lease.stage is Stage.ACTIVE
                and issue is not None
                and issue.open
                and lease.name not in keep_open
            ):
                client.edit_issue(issue.number, issue_body(lease, policy, "renewed"), False)
                log(f"{lease.name}: renewed; closed #{issue.number}")
                done.append(Sent(lease.name, issue=issue.number, url=issue.url, closed="renewed"))
        except GithubError as e:
            done.append(Sent(lease.name, lease.notice, error=str(e)))
    present = {lease.name for lease in leases}
    for name, issue in sorted(issues.items()):
        if name in present or not issue.open:
            continue
        try:
            client.edit_issue(issue.number, _gone_body(name, issue.body), False)
            log(f"{name}: gone; closed #{issue.number}")
            done.append(Sent(name, issue=issue.number, url=issue.url, closed="gone"))
        except GithubError as e:
            done.append(Sent(name, error=str(e)))
    return done


def _deliver(client: NoticeClient, lease: Lease, policy: Policy, issue: IssueRef | None) -> Sent:
    body = issue_body(lease, policy)
    if issue is None:
        issue = client.create_issue(issue_title(lease), body, LABEL, issue_marker(lease.name))
    if not issue.open or issue.body != body:
        issue = client.edit_issue(issue.number, body, True)
    text = notice_text(lease, policy) + page_line(policy)
    posted = client.upsert_comment(issue.number, text, notice_marker(lease))
    return Sent(lease.name, lease.notice, issue.number, posted.url, posted.created)
