"""Webhook / Actions event payloads (`pull_request`, `push`, `issue_comment`) as GitHub
delivers them.

What a workflow finds in `$GITHUB_EVENT_PATH`. Each builder validates its result against the
webhook schemas in tests/contracts (`@octokit/webhooks-schemas`, one definition per event and
action, e.g. `pull_request$opened`, `push$event`) and raises `InvalidPayloadError` when it does not
validate, so a test can never feed the code an event GitHub would not send.

Build from the fake's state, so that the event and the API agree:

    pull = gh.add_pull("lab/super-server", author="alice", title="Add alice-thesis")
    event = pull_request_event("opened", pull, site=gh.site)
    gh.merge_pull("lab/super-server", pull.number, merged_by="admin")
    event = pull_request_event("closed", pull, site=gh.site)            # merged
    event = push_event(pull.repo, before=pull.base_sha, after=pull.merge_commit_sha,
                       commits=[PushCommit(pull.merge_commit_sha, "Merge #1", added=[...])])
    comment = gh.add_comment("lab/super-server", issue.number, "/ssp stop", author="alice")
    event = issue_comment_event(issue, comment, site=gh.site)         # or a pull request

Without a running fake, `GitHubState()` (from state.py) makes the Repo and Pull objects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match

from . import resources as r
from .contract import CONTRACTS
from .issues import Issue, issue_json, pull_as_issue

WEBHOOKS_FILE = CONTRACTS / "github-webhooks-schema.json"
GITHUB = r.Site(api="https://api.github.com", web="https://github.com")

PullAction = Literal["opened", "synchronize", "reopened", "closed", "edited"]


class InvalidPayloadError(ValueError):
    """A built payload does not validate against GitHub's webhook schema."""


@cache
def _definitions() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(WEBHOOKS_FILE.read_text(encoding="utf-8"))
    return document


@cache
def _validator(definition: str) -> Draft7Validator:
    document = _definitions()
    if definition not in document["definitions"]:
        raise KeyError(f"no webhook schema {definition!r}")
    # A root whose only job is to point at one event's definition; the other $refs inside it
    # resolve against the same root, which carries all the definitions.
    root = {"$ref": f"#/definitions/{definition}", "definitions": document["definitions"]}
    return Draft7Validator(root, format_checker=Draft7Validator.FORMAT_CHECKER)


def validate_event(definition: str, payload: dict[str, Any]) -> None:
    """Raise InvalidPayloadError unless PAYLOAD is valid for DEFINITION (e.g. "push$event")."""
    error = best_match(_validator(definition).iter_errors(payload))
    if error is not None:
        raise InvalidPayloadError(f"{definition}: {error.json_path}: {error.message[:500]}")


def _user(site: r.Site, user: r.User) -> dict[str, Any]:
    # Webhook user objects do not carry the REST API's newer `user_view_type`.
    out = r.simple_user(site, user)
    del out["user_view_type"]
    return out


def _repository(site: r.Site, repo: r.Repo, *, push: bool = False) -> dict[str, Any]:
    out = r.repository(site, repo)
    out["owner"] = _user(site, repo.owner)
    out["custom_properties"] = {}
    if push:
        # Push payloads carry these two as Unix timestamps, plus a few extra fields.
        out["created_at"] = int(repo.created_at.timestamp())
        out["pushed_at"] = int(datetime.now(UTC).timestamp())
        out |= {
            "stargazers": 0,
            "master_branch": repo.default_branch,
            "organization": repo.owner.login,
        }
    return out


def _pull_request(site: r.Site, pull: r.Pull) -> dict[str, Any]:
    out = r.pull_request(site, pull, full=True)
    out["user"] = _user(site, pull.author)
    out["merged_by"] = _user(site, pull.merged_by) if pull.merged_by else None
    for side in ("head", "base"):
        out[side]["user"] = _user(site, pull.repo.owner)
        out[side]["repo"] = _repository(site, pull.repo)
    return out


def pull_request_event(
    action: PullAction,
    pull: r.Pull,
    *,
    site: r.Site = GITHUB,
    sender: r.User | None = None,
    before: str | None = None,
    installation_id: int | None = None,
) -> dict[str, Any]:
    """A `pull_request` event for PULL as it stands now.

    For "closed", PULL must be closed (merged or not) in the state; for "synchronize",
    BEFORE is the previous head commit (its `after` is the PR's current head).
    """
    if (action == "closed") != (pull.state == "closed"):
        raise InvalidPayloadError(f"a {action!r} event for a pull request that is {pull.state}")
    default_sender = pull.merged_by if action == "closed" and pull.merged_by else pull.author
    payload: dict[str, Any] = {
        "action": action,
        "number": pull.number,
        "pull_request": _pull_request(site, pull),
        "repository": _repository(site, pull.repo),
        "sender": _user(site, sender or default_sender),
    }
    if action == "synchronize":
        payload["before"] = before or r.fake_sha(f"{pull.head_sha}^")
        payload["after"] = pull.head_sha
    if action == "edited":
        payload["changes"] = {}
    if installation_id is not None:
        payload["installation"] = {
            "id": installation_id,
            "node_id": r.node_id("Integration", installation_id),
        }
    validate_event(f"pull_request${action}", payload)
    return payload


@dataclass(frozen=True)
class PushCommit:
    """One commit of a push: what changed, by whom."""

    sha: str
    message: str
    added: Sequence[str] = ()
    modified: Sequence[str] = ()
    removed: Sequence[str] = ()
    author_name: str = "Lab Admin"
    author_email: str = "admin@example.org"
    author_login: str | None = None
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))


def _commit(site: r.Site, repo: r.Repo, commit: PushCommit) -> dict[str, Any]:
    person: dict[str, Any] = {"name": commit.author_name, "email": commit.author_email}
    if commit.author_login:
        person["username"] = commit.author_login
    return {
        "id": commit.sha,
        "tree_id": r.fake_sha(f"tree:{commit.sha}"),
        "distinct": True,
        "message": commit.message,
        "timestamp": commit.timestamp.astimezone(UTC).isoformat(timespec="seconds"),
        "url": f"{site.web}/{repo.full_name}/commit/{commit.sha}",
        "author": person,
        "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
        "added": list(commit.added),
        "removed": list(commit.removed),
        "modified": list(commit.modified),
    }


def push_event(
    repo: r.Repo,
    *,
    before: str,
    after: str,
    commits: Sequence[PushCommit] = (),
    ref: str | None = None,
    pusher: r.User | None = None,
    site: r.Site = GITHUB,
    forced: bool = False,
) -> dict[str, Any]:
    """A `push` event to REF (default: the repository's default branch)."""
    ref = ref or f"refs/heads/{repo.default_branch}"
    who = pusher or r.User("lab-admin", 4242)
    zero = "0" * 40
    payload: dict[str, Any] = {
        "ref": ref,
        "before": before,
        "after": after,
        "repository": _repository(site, repo, push=True),
        "pusher": {"name": who.login, "email": f"{who.login}@users.noreply.github.com"},
        "sender": _user(site, who),
        "created": before == zero,
        "deleted": after == zero,
        "forced": forced,
        "base_ref": None,
        "compare": f"{site.web}/{repo.full_name}/compare/{before[:12]}...{after[:12]}",
        # GitHub sends at most 20 commits; the rest are only in the compare view.
        "commits": [_commit(site, repo, c) for c in commits[-20:]],
        "head_commit": _commit(site, repo, commits[-1]) if commits else None,
    }
    validate_event("push$event", payload)
    return payload


def _strip_users(value: Any) -> Any:
    """Webhook user objects lack the REST API's `user_view_type`; drop it at any depth."""
    if isinstance(value, dict):
        if "login" in value and "user_view_type" in value:
            value = {k: v for k, v in value.items() if k != "user_view_type"}
        return {k: _strip_users(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_users(v) for v in value]
    return value


def issue_comment_event(
    thread: r.Pull | Issue,
    comment: r.Comment,
    *,
    site: r.Site = GITHUB,
    comments: int = 1,
) -> dict[str, Any]:
    """An `issue_comment` "created" event for COMMENT on THREAD (an Issue of the fake's
    issues, or a Pull: GitHub sends pull request comments as issue comments too), as the
    fake's state has them now. The comment's author is the sender."""
    if isinstance(thread, r.Pull):
        issue = pull_as_issue(site, thread, comments)
    else:
        issue = issue_json(site, thread, comments)
    # what the REST API shows of an issue beyond the webhook's issue (e.g. `closed_by`)
    described = _definitions()["definitions"]["issue"]["properties"]
    issue = {k: v for k, v in _strip_users(issue).items() if k in described}
    issue.setdefault("reactions", r.reaction_rollup(f"{issue['url']}/reactions", []))
    issue.setdefault("active_lock_reason", None)
    issue.setdefault("locked", False)
    payload: dict[str, Any] = {
        "action": "created",
        "issue": issue,
        "comment": _strip_users(r.issue_comment(site, comment)),
        "repository": _repository(site, comment.repo),
        "sender": _user(site, comment.author),
    }
    validate_event("issue_comment$created", payload)
    return payload
