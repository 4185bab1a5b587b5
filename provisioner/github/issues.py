"""The GitHub adapter's issues: what provisioner.reporting.notices needs (`NoticeClient`).

`IssuesClient` is a `GitHubClient` (same credentials, retries and error translation) that
also lists, creates and edits issues. Like the sticky comment, a create that failed is not
simply sent again (it may have reached GitHub although the answer did not reach us): each
attempt first looks for the issue by its marker among ours, and only creates when none is
there, so a retried create can never leave two issues for one container.

"""

from __future__ import annotations

from typing import Any

from provisioner.github.client import GitHubClient
from provisioner.values.issues import IssueRef


def _ref(issue: Any) -> IssueRef:
    return IssueRef(issue.number, issue.body or "", issue.state == "open", issue.html_url)


class IssuesClient(GitHubClient):
    """GitHubClient plus the repository's issues (`provisioner.reporting.notices.NoticeClient`)."""

    def our_issues(self, label: str) -> list[IssueRef]:
        def once() -> list[IssueRef]:
            found: Any = self._repo().get_issues(state="all", labels=[label])
            return [_ref(i) for i in found if i.pull_request is None and self._is_ours(i)]

        return self._attempt(f"list the issues labelled {label}", once)

    def create_issue(self, title: str, body: str, label: str, marker: str) -> IssueRef:
        if marker not in body:
            raise ValueError("the issue's body must carry its marker")

        def once() -> IssueRef:
            found: Any = self._repo().get_issues(state="all", labels=[label])
            for issue in found:
                if marker in (issue.body or "") and self._is_ours(issue):
                    return _ref(issue)
            return _ref(self._repo().create_issue(title=title, body=body, labels=[label]))

        return self._attempt(f"create the issue {title!r}", once)

    def edit_issue(self, number: int, body: str, open_: bool) -> IssueRef:
        def once() -> IssueRef:
            issue = self._repo().get_issue(number)
            state = "open" if open_ else "closed"
            if (issue.body or "") != body or issue.state != state:
                if open_:
                    issue.edit(body=body, state=state)
                else:
                    issue.edit(body=body, state=state, state_reason="completed")
            return _ref(issue)

        return self._attempt(f"edit issue #{number}", once)
