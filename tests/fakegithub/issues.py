"""The fake GitHub's issues (not pull requests): labels, create, get, edit, list.

Issues and pull requests share one number space per repository, as on github.com, and the
issues API sees both: listing a repository's issues also returns its pull requests (with a
`pull_request` key), and `GET /issues/{n}` of a pull request's number answers it as an issue.
A label named on a new or edited issue that the repository lacks is created, as GitHub does
for callers with push access (the only callers the fake has). Filters served on the list:
`state` (open by default), `labels` (every one of them), `creator`, `sort` and `direction`.

`IssuesMixin` is part of `GitHubState`: it relies on its lock, users, repositories, pull
requests, comments, `site` and `_page`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import threading

from . import resources as r

if TYPE_CHECKING:
    from .state import Identity, Reply

Json = dict[str, Any]
_DEFAULT_COLOR = "ededed"


@dataclass
class Label:
    id: int
    name: str
    color: str = _DEFAULT_COLOR
    description: str | None = None


@dataclass
class Issue:
    repo: r.Repo
    number: int
    id: int
    author: r.User
    title: str
    body: str | None = None
    state: str = "open"
    state_reason: str | None = None
    labels: list[Label] = field(default_factory=list)
    assignees: list[r.User] = field(default_factory=list)
    closed_by: r.User | None = None
    closed_at: datetime | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def label_json(site: r.Site, repo: r.Repo, label: Label) -> Json:
    return {
        "id": label.id,
        "node_id": r.node_id("Label", label.id),
        "url": f"{site.api}/repos/{repo.full_name}/labels/{label.name}",
        "name": label.name,
        "description": label.description,
        "color": label.color,
        "default": False,
    }


def issue_json(site: r.Site, issue: Issue, comments: int) -> Json:
    return _thread_json(
        site,
        repo=issue.repo,
        number=issue.number,
        id=issue.id,
        author=issue.author,
        title=issue.title,
        body=issue.body,
        state=issue.state,
        state_reason=issue.state_reason,
        labels=[label_json(site, issue.repo, lb) for lb in issue.labels],
        assignees=issue.assignees,
        closed_by=issue.closed_by,
        closed_at=issue.closed_at,
        created_at=issue.created_at,
        updated_at=issue.updated_at,
        comments=comments,
        pull=None,
    )


def pull_as_issue(site: r.Site, pull: r.Pull, comments: int) -> Json:
    """A pull request as the issues API shows it: an issue with a `pull_request` key."""
    return _thread_json(
        site,
        repo=pull.repo,
        number=pull.number,
        id=pull.id,
        author=pull.author,
        title=pull.title,
        body=pull.body,
        state=pull.state,
        state_reason="completed" if pull.state == "closed" else None,
        labels=[],
        assignees=[],
        closed_by=pull.merged_by if pull.state == "closed" else None,
        closed_at=pull.closed_at,
        created_at=pull.created_at,
        updated_at=pull.updated_at,
        comments=comments,
        pull=pull,
    )


def _thread_json(
    site: r.Site,
    *,
    repo: r.Repo,
    number: int,
    id: int,
    author: r.User,
    title: str,
    body: str | None,
    state: str,
    state_reason: str | None,
    labels: list[Json],
    assignees: list[r.User],
    closed_by: r.User | None,
    closed_at: datetime | None,
    created_at: datetime,
    updated_at: datetime,
    comments: int,
    pull: r.Pull | None,
) -> Json:
    repo_api = f"{site.api}/repos/{repo.full_name}"
    api = f"{repo_api}/issues/{number}"
    web = f"{site.web}/{repo.full_name}/{'pull' if pull else 'issues'}/{number}"
    out: Json = {
        "id": id,
        "node_id": r.node_id("PullRequest" if pull else "Issue", id),
        "url": api,
        "repository_url": repo_api,
        "labels_url": f"{api}/labels{{/name}}",
        "comments_url": f"{api}/comments",
        "events_url": f"{api}/events",
        "html_url": web,
        "number": number,
        "state": state,
        "state_reason": state_reason,
        "title": title,
        "body": body,
        "user": r.simple_user(site, author),
        "labels": labels,
        "assignee": r.simple_user(site, assignees[0]) if assignees else None,
        "assignees": [r.simple_user(site, u) for u in assignees],
        "milestone": None,
        "locked": False,
        "active_lock_reason": None,
        "comments": comments,
        "closed_at": r.iso(closed_at) if closed_at else None,
        "closed_by": r.simple_user(site, closed_by) if closed_by else None,
        "created_at": r.iso(created_at),
        "updated_at": r.iso(updated_at),
        "author_association": "NONE" if author.type == "Bot" else "MEMBER",
        "timeline_url": f"{api}/timeline",
        "performed_via_github_app": None,
        "reactions": {
            "url": f"{api}/reactions",
            "total_count": 0,
            "+1": 0,
            "-1": 0,
            "laugh": 0,
            "hooray": 0,
            "confused": 0,
            "heart": 0,
            "rocket": 0,
            "eyes": 0,
        },
    }
    if pull is not None:
        pull_web = f"{site.web}/{repo.full_name}/pull/{number}"
        out["pull_request"] = {
            "url": f"{repo_api}/pulls/{number}",
            "html_url": pull_web,
            "diff_url": f"{pull_web}.diff",
            "patch_url": f"{pull_web}.patch",
            "merged_at": r.iso(pull.merged_at) if pull.merged_at else None,
        }
    return out


def _label_names(raw: Any) -> list[str]:
    """`labels` in a request body: names, or objects with a `name`."""
    names = []
    for item in raw or []:
        name = item if isinstance(item, str) else (item or {}).get("name")
        if isinstance(name, str) and name.strip():
            names.append(name.strip())
    return names


class IssuesMixin:
    """The issue endpoints of `GitHubState` (see the module's docstring)."""

    if TYPE_CHECKING:
        lock: threading.RLock
        site: r.Site
        me: r.User
        pulls: dict[tuple[str, int], r.Pull]
        _ids: Any

        def repo(self, full_name: str) -> r.Repo: ...
        def user(self, login: str, *, type: str = "User") -> r.User: ...
        def comments_on(self, full_name: str, number: int) -> list[r.Comment]: ...
        def _page(self, items: list[Any], path: str, query: Mapping[str, list[str]]) -> Reply: ...

    issues: dict[tuple[str, int], Issue]
    labels: dict[tuple[str, str], Label]

    def _init_issues(self) -> None:
        self.issues = {}
        self.labels = {}

    # ---- seeding and reading back ------------------------------------------------------------

    def next_number(self, full_name: str) -> int:
        """The next issue or pull request number of the repository (one space for both)."""
        key = full_name.lower()
        taken = [n for (k, n) in self.pulls if k == key] + [n for (k, n) in self.issues if k == key]
        return max(taken, default=0) + 1

    def add_issue(
        self,
        full_name: str,
        *,
        author: str,
        title: str,
        body: str | None = None,
        labels: tuple[str, ...] = (),
    ) -> Issue:
        with self.lock:
            return self._new_issue(self.repo(full_name), self.user(author), title, body, labels)

    def issues_of(self, full_name: str) -> list[Issue]:
        """Every issue of the repository (not pull requests), oldest first."""
        with self.lock:
            key = full_name.lower()
            return [i for (k, _), i in sorted(self.issues.items()) if k == key]

    def _label(self, repo: r.Repo, name: str) -> Label:
        key = (repo.full_name.lower(), name.lower())
        if key not in self.labels:
            self.labels[key] = Label(next(self._ids), name)
        return self.labels[key]

    def _new_issue(
        self, repo: r.Repo, author: r.User, title: str, body: str | None, labels: tuple[str, ...]
    ) -> Issue:
        number = self.next_number(repo.full_name)
        issue = Issue(
            repo,
            number,
            next(self._ids) + 1_000_000_000,
            author,
            title,
            body,
            labels=[self._label(repo, n) for n in labels],
        )
        self.issues[(repo.full_name.lower(), number)] = issue
        return issue

    def _issue_reply(self, issue: Issue) -> Json:
        count = len(self.comments_on(issue.repo.full_name, issue.number))
        return issue_json(self.site, issue, count)

    # ---- endpoints ---------------------------------------------------------------------------

    def _find_issue(self, p: Mapping[str, str]) -> Issue | None:
        return self.issues.get((f"{p['owner']}/{p['repo']}".lower(), int(p["issue_number"])))

    def _create_issue(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        from .state import Reply, validation_failed  # noqa: PLC0415 - state imports this module

        title = b.get("title")
        if isinstance(title, int):
            title = str(title)
        if not isinstance(title, str) or not title.strip():
            return validation_failed("Issue", "title", "missing_field")
        repo = self.repo(f"{p['owner']}/{p['repo']}")
        issue = self._new_issue(
            repo, who.user, title, b.get("body"), tuple(_label_names(b.get("labels")))
        )
        issue.assignees = [self.user(a) for a in b.get("assignees") or []]
        location = f"{self.site.api}/repos/{repo.full_name}/issues/{issue.number}"
        return Reply(201, self._issue_reply(issue), {"Location": location})

    def _get_issue(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        from .state import Reply, _not_found  # noqa: PLC0415

        issue = self._find_issue(p)
        if issue is not None:
            return Reply(200, self._issue_reply(issue))
        pull = self.pulls.get((f"{p['owner']}/{p['repo']}".lower(), int(p["issue_number"])))
        if pull is None:
            return _not_found()
        count = len(self.comments_on(pull.repo.full_name, pull.number))
        return Reply(200, pull_as_issue(self.site, pull, count))

    def _update_issue(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        from .state import Reply, _not_found, validation_failed  # noqa: PLC0415

        issue = self._find_issue(p)
        if issue is None:
            return _not_found()
        if "title" in b:
            if not isinstance(b["title"], str | int) or not str(b["title"]).strip():
                return validation_failed("Issue", "title", "missing_field")
            issue.title = str(b["title"])
        if "body" in b:
            issue.body = b["body"]
        if "labels" in b:
            issue.labels = [self._label(issue.repo, n) for n in _label_names(b["labels"])]
        now = datetime.now(UTC)
        state = b.get("state")
        if state == "closed" and issue.state != "closed":
            issue.state, issue.closed_at, issue.closed_by = "closed", now, who.user
            issue.state_reason = b.get("state_reason") or "completed"
        elif state == "open" and issue.state != "open":
            issue.state, issue.closed_at, issue.closed_by = "open", None, None
            issue.state_reason = "reopened"
        elif b.get("state_reason") and issue.state == "closed":
            issue.state_reason = b["state_reason"]
        issue.updated_at = now
        return Reply(200, self._issue_reply(issue))

    def _list_issues(
        self, p: Mapping[str, str], q: Mapping[str, list[str]], b: Any, who: Identity
    ) -> Reply:
        key = f"{p['owner']}/{p['repo']}".lower()
        state = q.get("state", ["open"])[0]
        wanted = {n.strip().lower() for n in q.get("labels", [""])[0].split(",") if n.strip()}
        creator = q.get("creator", [""])[0].lower()
        found: list[tuple[datetime, datetime, Json]] = []
        for (k, _), issue in self.issues.items():
            names = {lb.name.lower() for lb in issue.labels}
            if (
                k == key
                and state in ("all", issue.state)
                and wanted <= names
                and creator in ("", issue.author.login.lower())
            ):
                found.append((issue.created_at, issue.updated_at, self._issue_reply(issue)))
        if not wanted:  # pull requests have no labels in the fake
            for (k, _), pull in self.pulls.items():
                if (
                    k == key
                    and state in ("all", pull.state)
                    and creator in ("", pull.author.login.lower())
                ):
                    count = len(self.comments_on(pull.repo.full_name, pull.number))
                    found.append(
                        (pull.created_at, pull.updated_at, pull_as_issue(self.site, pull, count))
                    )
        by = 1 if q.get("sort", ["created"])[0] == "updated" else 0
        ascending = q.get("direction", ["desc"])[0] == "asc"
        found.sort(key=lambda t: (t[by], t[2]["number"]), reverse=not ascending)
        return self._page([t[2] for t in found], f"/repos/{p['owner']}/{p['repo']}/issues", q)


HANDLERS = {
    "issues/create": IssuesMixin._create_issue,
    "issues/get": IssuesMixin._get_issue,
    "issues/update": IssuesMixin._update_issue,
    "issues/list-for-repo": IssuesMixin._list_issues,
}
