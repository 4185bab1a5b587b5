"""REST API objects as GitHub sends them: users, repositories, pull requests, comments, files.

Pure builders from the fake's state to JSON-ready dicts, shaped like github.com's answers
(every field the OpenAPI description requires, URLs that point back at the fake's API so that
PyGithub can follow them, HTML URLs on the web host). The contract checker in `contract.py`
is what proves them right: every object here goes out through it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

Json = dict[str, Any]


def iso(moment: datetime) -> str:
    """GitHub's timestamp format: UTC, seconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(kind: str, number: int) -> str:
    """An opaque GraphQL node id like GitHub's legacy ones (`MDQ6VXNlcjE=` is `04:User1`)."""
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode()


def fake_sha(text: str) -> str:
    """A stable 40-hex commit/blob id for test data."""
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Site:
    """Where the fake lives: `api` is what clients use as base URL, `web` is for html_url."""

    api: str
    web: str = "https://github.com"


@dataclass
class User:
    login: str
    id: int
    type: str = "User"  # "Bot" for GitHub Apps' and Actions' identities
    name: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC))


@dataclass
class Repo:
    owner: User
    name: str
    id: int
    default_branch: str = "main"
    private: bool = True
    created_at: datetime = field(default_factory=lambda: datetime(2024, 1, 1, tzinfo=UTC))

    @property
    def full_name(self) -> str:
        return f"{self.owner.login}/{self.name}"


@dataclass
class PullFile:
    filename: str
    status: str = "added"  # added | removed | modified | renamed | ...
    additions: int = 1
    deletions: int = 0
    patch: str | None = None
    previous_filename: str | None = None


@dataclass
class PullCommit:
    """One commit of a pull request; `author`/`committer` are None when GitHub links the
    commit's e-mail to no account (the API then sends `null` there)."""

    sha: str
    author: User | None
    committer: User | None
    message: str = "change"
    email: str = "someone@example.invalid"
    parents: tuple[str, ...] = ()


@dataclass
class Pull:
    repo: Repo
    number: int
    id: int
    author: User
    title: str
    head_sha: str
    head_ref: str
    base_sha: str
    base_ref: str
    body: str | None = None
    state: str = "open"
    merged_at: datetime | None = None
    merged_by: User | None = None
    merge_commit_sha: str | None = None
    closed_at: datetime | None = None
    files: list[PullFile] = field(default_factory=list)
    commits: list[PullCommit] = field(default_factory=list)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def merged(self) -> bool:
        return self.merged_at is not None


@dataclass(frozen=True)
class Reaction:
    """One person's reaction on a comment (GitHub keeps one per person and content)."""

    id: int
    user: User
    content: str
    created_at: datetime


@dataclass
class Comment:
    repo: Repo
    issue_number: int
    id: int
    author: User
    body: str
    created_at: datetime
    updated_at: datetime
    on_issue: bool = False  # on an issue rather than a pull request (its web address)
    reactions: list[Reaction] = field(default_factory=list)
    # how GitHub relates the author to the repository (webhooks and the API say it)
    association: str = ""


REACTION_CONTENTS = ("+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes")


def reaction(site: Site, made: Reaction) -> Json:
    return {
        "id": made.id,
        "node_id": node_id("Reaction", made.id),
        "user": simple_user(site, made.user),
        "content": made.content,
        "created_at": iso(made.created_at),
    }


def reaction_rollup(url: str, made: Sequence[Reaction]) -> Json:
    """The `reactions` summary a comment carries: how many of each content."""
    counts = {c: sum(1 for m in made if m.content == c) for c in REACTION_CONTENTS}
    return {"url": url, "total_count": len(made), **counts}


def simple_user(site: Site, user: User) -> Json:
    # Bot logins end in "[bot]", which GitHub percent-encodes in URLs; their page is the App's.
    api = f"{site.api}/users/{quote(user.login)}"
    html = (
        f"{site.web}/apps/{user.login.removesuffix('[bot]')}"
        if user.type == "Bot"
        else f"{site.web}/{user.login}"
    )
    return {
        "login": user.login,
        "id": user.id,
        "node_id": node_id("User" if user.type == "User" else "Bot", user.id),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": html,
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": user.type,
        "user_view_type": "public",
        "site_admin": False,
    }


def private_user(site: Site, user: User) -> Json:
    """GET /user for a token's own user (the "Private User" schema)."""
    return {
        **simple_user(site, user),
        "name": user.name,
        "company": None,
        "blog": "",
        "location": None,
        "email": None,
        "hireable": None,
        "bio": None,
        "twitter_username": None,
        "notification_email": None,
        "public_repos": 0,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "created_at": iso(user.created_at),
        "updated_at": iso(user.created_at),
        "private_gists": 0,
        "total_private_repos": 1,
        "owned_private_repos": 1,
        "disk_usage": 10,
        "collaborators": 0,
        "two_factor_authentication": True,
        "plan": {"name": "free", "space": 976562499, "collaborators": 0, "private_repos": 10000},
    }


def repository(site: Site, repo: Repo, *, full: bool = False) -> Json:
    api = f"{site.api}/repos/{repo.full_name}"
    stamp = iso(repo.created_at)
    out: Json = {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": repo.private,
        "owner": simple_user(site, repo.owner),
        "html_url": f"{site.web}/{repo.full_name}",
        "description": "Self-service containers on the lab's GPU server",
        "fork": False,
        "url": api,
        "forks_url": f"{api}/forks",
        "keys_url": f"{api}/keys{{/key_id}}",
        "collaborators_url": f"{api}/collaborators{{/collaborator}}",
        "teams_url": f"{api}/teams",
        "hooks_url": f"{api}/hooks",
        "issue_events_url": f"{api}/issues/events{{/number}}",
        "events_url": f"{api}/events",
        "assignees_url": f"{api}/assignees{{/user}}",
        "branches_url": f"{api}/branches{{/branch}}",
        "tags_url": f"{api}/tags",
        "blobs_url": f"{api}/git/blobs{{/sha}}",
        "git_tags_url": f"{api}/git/tags{{/sha}}",
        "git_refs_url": f"{api}/git/refs{{/sha}}",
        "trees_url": f"{api}/git/trees{{/sha}}",
        "statuses_url": f"{api}/statuses/{{sha}}",
        "languages_url": f"{api}/languages",
        "stargazers_url": f"{api}/stargazers",
        "contributors_url": f"{api}/contributors",
        "subscribers_url": f"{api}/subscribers",
        "subscription_url": f"{api}/subscription",
        "commits_url": f"{api}/commits{{/sha}}",
        "git_commits_url": f"{api}/git/commits{{/sha}}",
        "comments_url": f"{api}/comments{{/number}}",
        "issue_comment_url": f"{api}/issues/comments{{/number}}",
        "contents_url": f"{api}/contents/{{+path}}",
        "compare_url": f"{api}/compare/{{base}}...{{head}}",
        "merges_url": f"{api}/merges",
        "archive_url": f"{api}/{{archive_format}}{{/ref}}",
        "downloads_url": f"{api}/downloads",
        "issues_url": f"{api}/issues{{/number}}",
        "pulls_url": f"{api}/pulls{{/number}}",
        "milestones_url": f"{api}/milestones{{/number}}",
        "notifications_url": f"{api}/notifications{{?since,all,participating}}",
        "labels_url": f"{api}/labels{{/name}}",
        "releases_url": f"{api}/releases{{/id}}",
        "deployments_url": f"{api}/deployments",
        "created_at": stamp,
        "updated_at": stamp,
        "pushed_at": stamp,
        "git_url": f"git://github.com/{repo.full_name}.git",
        "ssh_url": f"git@github.com:{repo.full_name}.git",
        "clone_url": f"{site.web}/{repo.full_name}.git",
        "svn_url": f"{site.web}/{repo.full_name}",
        "homepage": None,
        "size": 108,
        "stargazers_count": 0,
        "watchers_count": 0,
        "language": "Python",
        "has_issues": True,
        "has_projects": False,
        "has_downloads": True,
        "has_wiki": False,
        "has_pages": False,
        "has_discussions": False,
        "forks_count": 0,
        "mirror_url": None,
        "archived": False,
        "disabled": False,
        "open_issues_count": 0,
        "license": None,
        "allow_forking": False,
        "is_template": False,
        "web_commit_signoff_required": False,
        "topics": [],
        "visibility": "private" if repo.private else "public",
        "forks": 0,
        "open_issues": 0,
        "watchers": 0,
        "default_branch": repo.default_branch,
    }
    if full:
        out |= {
            "permissions": {
                "admin": False,
                "maintain": False,
                "push": True,
                "triage": True,
                "pull": True,
            },
            "allow_squash_merge": True,
            "allow_merge_commit": True,
            "allow_rebase_merge": False,
            "allow_auto_merge": False,
            "delete_branch_on_merge": True,
            "network_count": 0,
            "subscribers_count": 1,
        }
    return out


def _link(href: str) -> Json:
    return {"href": href}


def pull_request(site: Site, pull: Pull, *, full: bool, comments: int = 0) -> Json:
    """A pull request: the "Pull Request" schema when `full`, else "Pull Request Simple"."""
    repo_api = f"{site.api}/repos/{pull.repo.full_name}"
    api = f"{repo_api}/pulls/{pull.number}"
    html = f"{site.web}/{pull.repo.full_name}/pull/{pull.number}"
    issue_api = f"{repo_api}/issues/{pull.number}"
    repo_json = repository(site, pull.repo)
    owner = pull.repo.owner.login

    def ref(label_owner: str, ref: str, sha: str) -> Json:
        return {
            "label": f"{label_owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": simple_user(site, pull.repo.owner),
            "repo": repo_json,
        }

    out: Json = {
        "url": api,
        "id": pull.id,
        "node_id": node_id("PullRequest", pull.id),
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": issue_api,
        "number": pull.number,
        "state": pull.state,
        "locked": False,
        "title": pull.title,
        "user": simple_user(site, pull.author),
        "body": pull.body,
        "created_at": iso(pull.created_at),
        "updated_at": iso(pull.updated_at),
        "closed_at": iso(pull.closed_at) if pull.closed_at else None,
        "merged_at": iso(pull.merged_at) if pull.merged_at else None,
        "merge_commit_sha": pull.merge_commit_sha,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "labels": [],
        "milestone": None,
        "draft": False,
        "commits_url": f"{api}/commits",
        "review_comments_url": f"{api}/comments",
        "review_comment_url": f"{repo_api}/pulls/comments{{/number}}",
        "comments_url": f"{issue_api}/comments",
        "statuses_url": f"{repo_api}/statuses/{pull.head_sha}",
        # Same-repository branches: the lab's members push to the repository itself.
        "head": ref(owner, pull.head_ref, pull.head_sha),
        "base": ref(owner, pull.base_ref, pull.base_sha),
        "_links": {
            "self": _link(api),
            "html": _link(html),
            "issue": _link(issue_api),
            "comments": _link(f"{issue_api}/comments"),
            "review_comments": _link(f"{api}/comments"),
            "review_comment": _link(f"{repo_api}/pulls/comments{{/number}}"),
            "commits": _link(f"{api}/commits"),
            "statuses": _link(f"{repo_api}/statuses/{pull.head_sha}"),
        },
        "author_association": "MEMBER",
        "auto_merge": None,
        "active_lock_reason": None,
    }
    if full:
        additions = sum(f.additions for f in pull.files)
        deletions = sum(f.deletions for f in pull.files)
        out |= {
            "merged": pull.merged,
            "mergeable": None if pull.state == "closed" else True,
            "rebaseable": None if pull.state == "closed" else True,
            "mergeable_state": "unknown" if pull.state == "closed" else "clean",
            "merged_by": simple_user(site, pull.merged_by) if pull.merged_by else None,
            "comments": comments,
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": 1,
            "additions": additions,
            "deletions": deletions,
            "changed_files": len(pull.files),
        }
    return out


def issue_comment(site: Site, comment: Comment) -> Json:
    repo_api = f"{site.api}/repos/{comment.repo.full_name}"
    kind = "issues" if comment.on_issue else "pull"
    html = f"{site.web}/{comment.repo.full_name}/{kind}/{comment.issue_number}"
    return {
        "url": f"{repo_api}/issues/comments/{comment.id}",
        "html_url": f"{html}#issuecomment-{comment.id}",
        "issue_url": f"{repo_api}/issues/{comment.issue_number}",
        "id": comment.id,
        "node_id": node_id("IssueComment", comment.id),
        "user": simple_user(site, comment.author),
        "created_at": iso(comment.created_at),
        "updated_at": iso(comment.updated_at),
        "author_association": comment.association
        or ("NONE" if comment.author.type == "Bot" else "MEMBER"),
        "body": comment.body,
        "reactions": reaction_rollup(
            f"{repo_api}/issues/comments/{comment.id}/reactions", comment.reactions
        ),
        "performed_via_github_app": None,
    }


def diff_entry(site: Site, pull: Pull, entry: PullFile) -> Json:
    blob = fake_sha(f"{pull.head_sha}:{entry.filename}")
    web = f"{site.web}/{pull.repo.full_name}"
    out: Json = {
        "sha": blob if entry.status != "removed" else fake_sha(f"{pull.base_sha}:{entry.filename}"),
        "filename": entry.filename,
        "status": entry.status,
        "additions": entry.additions,
        "deletions": entry.deletions,
        "changes": entry.additions + entry.deletions,
        "blob_url": f"{web}/blob/{pull.head_sha}/{entry.filename}",
        "raw_url": f"{web}/raw/{pull.head_sha}/{entry.filename}",
        "contents_url": (
            f"{site.api}/repos/{pull.repo.full_name}/contents/{entry.filename}?ref={pull.head_sha}"
        ),
    }
    if entry.patch is not None:
        out["patch"] = entry.patch
    if entry.previous_filename is not None:
        out["previous_filename"] = entry.previous_filename
    return out


def pull_commit(site: Site, repo: Repo, commit: PullCommit) -> Json:
    """An item of GET /repos/{owner}/{repo}/pulls/{pull_number}/commits."""
    api = f"{site.api}/repos/{repo.full_name}"
    web = f"{site.web}/{repo.full_name}"
    stamp = iso(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))

    def person(user: User | None) -> Json:
        name = user.login if user is not None else "Someone"
        return {"name": name, "email": commit.email, "date": stamp}

    return {
        "url": f"{api}/commits/{commit.sha}",
        "sha": commit.sha,
        "node_id": node_id("Commit", int(commit.sha[:6], 16)),
        "html_url": f"{web}/commit/{commit.sha}",
        "comments_url": f"{api}/commits/{commit.sha}/comments",
        "commit": {
            "url": f"{api}/git/commits/{commit.sha}",
            "author": person(commit.author),
            "committer": person(commit.committer),
            "message": commit.message,
            "comment_count": 0,
            "tree": {"sha": fake_sha(f"tree:{commit.sha}"), "url": f"{api}/git/trees/x"},
        },
        "author": simple_user(site, commit.author) if commit.author is not None else None,
        "committer": simple_user(site, commit.committer) if commit.committer is not None else None,
        "parents": [
            {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{web}/commit/{p}"}
            for p in commit.parents
        ],
    }


def installation(
    site: Site, *, installation_id: int, app_id: int, app_slug: str, account: User
) -> Json:
    stamp = iso(datetime(2024, 1, 1, tzinfo=UTC))
    return {
        "id": installation_id,
        "account": simple_user(site, account),
        "repository_selection": "selected",
        "access_tokens_url": f"{site.api}/app/installations/{installation_id}/access_tokens",
        "repositories_url": f"{site.api}/installation/repositories",
        "html_url": f"{site.web}/settings/installations/{installation_id}",
        "app_id": app_id,
        "app_slug": app_slug,
        "target_id": account.id,
        "target_type": account.type,
        "permissions": {"issues": "write", "pull_requests": "write", "metadata": "read"},
        "events": ["pull_request", "push"],
        "created_at": stamp,
        "updated_at": stamp,
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": None,
        "suspended_at": None,
    }


def error(
    message: str, docs: str = "https://docs.github.com/rest", status: int | None = None
) -> Json:
    """GitHub's "Basic Error" body."""
    out: Json = {"message": message, "documentation_url": docs}
    if status is not None:
        out["status"] = str(status)
    return out
