"""The fake GitHub is held to GitHub's published contract, and that hold can fail.

These tests talk HTTP to the fake directly (with requests, no PyGithub) so that they can send
what a well-behaved client never would.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from fakegithub import FAKE_REPO, ContractViolationError, FakeGitHub, OpenApiContract, PullFile
from fakegithub.contract import to_json_schema
from fakegithub.events import (
    InvalidPayloadError,
    PushCommit,
    pull_request_event,
    push_event,
    validate_event,
)
from fakegithub.state import GitHubState, Reply
from jsonschema import Draft202012Validator

pytest_plugins = ["fakegithub.fixtures"]  # fake_github

API = "application/vnd.github+json"


def call(gh: FakeGitHub, method: str, path: str, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"token {gh.token}", "Accept": API} | kw.pop("headers", {})
    return requests.request(method, gh.url + path, headers=headers, timeout=10, **kw)


# ---- the checker itself ---------------------------------------------------------------------

COMMENT = {
    "id": 1,
    "node_id": "IC_1",
    "url": "https://api.github.com/repos/lab/x/issues/comments/1",
    "html_url": "https://github.com/lab/x/pull/1#issuecomment-1",
    "issue_url": "https://api.github.com/repos/lab/x/issues/1",
    "user": None,
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}


def test_a_response_missing_a_required_field_is_rejected() -> None:
    contract = OpenApiContract.load()
    op, _ = contract.match("GET", "/repos/lab/x/issues/comments/1")
    assert op is not None
    assert contract.check_response(op, 200, COMMENT) == []
    complete = COMMENT

    problems = contract.check_response(
        op, 200, {k: v for k, v in complete.items() if k != "html_url"}
    )
    assert problems == ["response issues/get-comment 200: $: 'html_url' is a required property"]


def test_formats_and_undescribed_statuses_are_checked() -> None:
    contract = OpenApiContract.load()
    op, _ = contract.match("GET", "/repos/lab/x/pulls/1")
    assert op is not None
    assert contract.check_response(op, 201, {}) == [
        "response pulls/get 201: status 201 is not described "
        "(has ['200', '304', '404', '406', '500', '503'])"
    ]
    # 401 is not listed for this operation, but GitHub sends it anywhere: a Basic Error.
    assert contract.check_response(op, 401, {"message": "Bad credentials"}) == []
    assert contract.check_response(op, 401, {"message": 7}) != []
    op, _ = contract.match("GET", "/repos/lab/x/issues/comments/1")
    assert op is not None
    assert contract.check_response(op, 200, COMMENT | {"created_at": "yesterday"}) == [
        "response issues/get-comment 200: $.created_at: 'yesterday' is not a 'date-time'"
    ]
    assert contract.check_response(op, 200, COMMENT | {"url": "not a url"}) == [
        "response issues/get-comment 200: $.url: 'not a url' is not a 'uri'"
    ]


def test_requests_are_checked_against_the_description() -> None:
    contract = OpenApiContract.load()

    assert contract.match("PUT", "/repos/lab/x/issues/comments/1")[1] == [
        "request: PUT /repos/lab/x/issues/comments/1: method not described for this path"
    ]
    assert contract.match("GET", "/repos/lab/x/actions/runs")[1] == [
        "request: GET /repos/lab/x/actions/runs: path not in the description"
    ]
    op, _ = contract.match("POST", "/repos/lab/x/issues/1/comments")
    assert op is not None
    assert contract.check_request(op, {}, b'{"body": "hi"}', "application/json") == []
    assert contract.check_request(op, {}, b'{"text": "hi"}', "application/json") == [
        "request issues/create-comment body: $: 'body' is a required property"
    ]
    assert contract.check_request(op, {}, b'{"body": 5}', "application/json") == [
        "request issues/create-comment body: $.body: 5 is not of type 'string'"
    ]
    assert contract.check_request(op, {}, b"", None) == [
        "request issues/create-comment: a JSON body is required"
    ]
    op, _ = contract.match("GET", "/repos/lab/x/issues/abc/comments")
    assert op is not None
    assert contract.check_request(op, {"per_page": ["100"], "sort": ["asc"]}, b"", None) == [
        "request issues/list-comments: parameter 'issue_number'='abc' is not integer",
        "request issues/list-comments: query parameter 'sort' is not described",
    ]


def test_openapi_nullable_becomes_json_schema_null() -> None:
    def accepts(schema: dict[str, Any], value: Any) -> bool:
        return Draft202012Validator(to_json_schema(schema)).is_valid(value)

    assert accepts({"type": "string", "nullable": True}, None)
    assert not accepts({"type": "string"}, None)
    assert accepts({"type": "string", "enum": ["a"], "nullable": True}, None)
    assert not accepts({"type": "string", "enum": ["a"], "nullable": True}, "b")
    branches = {"oneOf": [{"type": "string"}, {"type": "integer"}], "nullable": True}
    assert accepts(branches, None)
    assert not accepts(branches, 1.5)
    # A property *named* like an OpenAPI keyword is kept.
    named = {"type": "object", "properties": {"example": {"type": "integer"}}}
    assert not accepts(named, {"example": "x"})


@pytest.mark.slow
def test_the_converted_schemas_of_served_operations_are_valid_json_schemas() -> None:
    contract = OpenApiContract.load()
    served = [
        ("GET", "/repos/{owner}/{repo}", 200),
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", 200),
        ("GET", "/repos/{owner}/{repo}/commits/{commit_sha}/pulls", 200),
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", 200),
        ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", 200),
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files", 200),
        ("GET", "/user", 200),
        ("GET", "/repos/{owner}/{repo}/installation", 200),
    ]
    for method, template, status in served:
        Draft202012Validator.check_schema(contract.response_schema(method, template, status))


# ---- the server enforces it ----------------------------------------------------------------


def test_a_bad_request_body_is_answered_500_and_recorded() -> None:
    with FakeGitHub() as gh:
        gh.add_repo(FAKE_REPO)
        gh.add_pull(FAKE_REPO, author="alice", title="t")

        answer = call(gh, "POST", f"/repos/{FAKE_REPO}/issues/1/comments", json={"text": "hi"})

        assert answer.status_code == 500
        assert "'body' is a required property" in answer.json()["message"]
        assert gh.comments_on(FAKE_REPO, 1) == []
        with pytest.raises(ContractViolationError, match="'body' is a required property"):
            gh.assert_no_violations()


class _DropsNodeId(FakeGitHub):
    """A fake with a bug: its answers lack a field GitHub always sends."""

    def handle(self, *args: Any, **kwargs: Any) -> Reply | None:
        reply = super().handle(*args, **kwargs)
        if reply is not None and isinstance(reply.body, dict):
            body = {k: v for k, v in reply.body.items() if k != "node_id"}
            return Reply(reply.status, body, reply.headers)
        return reply


def test_a_response_breaking_the_schema_is_answered_500_and_recorded() -> None:
    with _DropsNodeId() as gh:
        gh.add_repo(FAKE_REPO)
        gh.add_pull(FAKE_REPO, author="alice", title="t")

        answer = call(gh, "GET", f"/repos/{FAKE_REPO}/pulls/1")

        assert answer.status_code == 500
        assert "response pulls/get 200: $: 'node_id' is a required property" in answer.text
        assert len(gh.violations) == 1


def test_undescribed_paths_methods_and_parameters_are_violations() -> None:
    with FakeGitHub() as gh:
        gh.add_repo(FAKE_REPO)
        assert call(gh, "GET", f"/repos/{FAKE_REPO}/actions/runs").status_code == 500
        assert call(gh, "PUT", f"/repos/{FAKE_REPO}/issues/comments/1", json={}).status_code == 500
        assert call(gh, "GET", f"/repos/{FAKE_REPO}/pulls/1?state=open").status_code == 500
        assert call(gh, "GET", f"/repos/{FAKE_REPO}/pulls/one").status_code == 500
        assert len(gh.violations) == 4


def test_described_but_not_served_is_a_failure_too() -> None:
    with FakeGitHub() as gh:
        gh.add_repo(FAKE_REPO)
        answer = call(gh, "GET", f"/repos/{FAKE_REPO}/pulls")
        assert answer.status_code == 500
        assert gh.violations == ["fake GitHub does not serve pulls/list"]


def test_authentication_like_github(fake_github: FakeGitHub) -> None:
    anonymous = requests.get(f"{fake_github.url}/repos/{FAKE_REPO}", timeout=10)
    wrong = call(fake_github, "GET", f"/repos/{FAKE_REPO}", headers={"Authorization": "token x"})
    bearer = call(
        fake_github,
        "GET",
        f"/repos/{FAKE_REPO}",
        headers={"Authorization": f"Bearer {fake_github.token}"},
    )

    assert (anonymous.status_code, anonymous.json()["message"]) == (401, "Requires authentication")
    assert (wrong.status_code, wrong.json()["message"]) == (401, "Bad credentials")
    assert bearer.status_code == 200
    assert bearer.json()["full_name"] == FAKE_REPO
    assert call(fake_github, "GET", "/repos/lab/elsewhere").status_code == 404


def test_comments_are_paginated_with_link_headers(fake_github: FakeGitHub) -> None:
    fake_github.add_pull(FAKE_REPO, author="alice", title="t")
    for i in range(150):
        fake_github.add_comment(FAKE_REPO, 1, f"comment {i}", author="alice")
    path = f"/repos/{FAKE_REPO}/issues/1/comments"

    first = call(fake_github, "GET", path, params={"per_page": 100})
    second = requests.get(
        first.links["next"]["url"],
        headers={"Authorization": f"token {fake_github.token}"},
        timeout=10,
    )

    assert [len(first.json()), len(second.json())] == [100, 50]
    assert first.links["last"]["url"] == first.links["next"]["url"]
    assert set(second.links) == {"prev", "first"}
    bodies = [c["body"] for c in first.json() + second.json()]
    assert bodies == [f"comment {i}" for i in range(150)]
    # GitHub's default page size is 30, and it never gives more than 100.
    assert len(call(fake_github, "GET", path).json()) == 30
    assert len(call(fake_github, "GET", path, params={"per_page": 500}).json()) == 100


def test_pull_request_files(fake_github: FakeGitHub) -> None:
    fake_github.add_pull(
        FAKE_REPO,
        author="alice",
        title="t",
        files=["requests/alice/alice-thesis.yaml", PullFile("requests/alice/old.yaml", "removed")],
    )
    files = call(fake_github, "GET", f"/repos/{FAKE_REPO}/pulls/1/files").json()
    assert [(f["filename"], f["status"]) for f in files] == [
        ("requests/alice/alice-thesis.yaml", "added"),
        ("requests/alice/old.yaml", "removed"),
    ]


def test_fail_next_narrows_by_path_and_counts_down(fake_github: FakeGitHub) -> None:
    fake_github.add_pull(FAKE_REPO, author="alice", title="t")
    fake_github.fail_next(2, status=503, retry_after=5, path_prefix=f"/repos/{FAKE_REPO}/pulls")

    assert call(fake_github, "GET", f"/repos/{FAKE_REPO}").status_code == 200
    failed = call(fake_github, "GET", f"/repos/{FAKE_REPO}/pulls/1")
    assert (failed.status_code, failed.headers["Retry-After"]) == (503, "5")
    assert call(fake_github, "GET", f"/repos/{FAKE_REPO}/pulls/1").status_code == 503
    assert call(fake_github, "GET", f"/repos/{FAKE_REPO}/pulls/1").status_code == 200
    assert [q.status for q in fake_github.requests] == [200, 503, 503, 200]


def test_a_primary_rate_limit_looks_like_githubs(fake_github: FakeGitHub) -> None:
    fake_github.fail_next(1, status=403)
    answer = call(fake_github, "GET", f"/repos/{FAKE_REPO}")
    assert answer.status_code == 403
    assert answer.json()["message"].startswith("API rate limit exceeded")
    assert answer.headers["X-RateLimit-Remaining"] == "0"
    assert int(answer.headers["X-RateLimit-Reset"]) > time.time()


# ---- webhook payloads -----------------------------------------------------------------------


def test_pull_request_events_validate_against_the_webhook_schema() -> None:
    gh = GitHubState()
    gh.add_repo(FAKE_REPO)
    pull = gh.add_pull(FAKE_REPO, author="alice", title="Add alice-thesis")

    opened = pull_request_event("opened", pull)
    synced = pull_request_event("synchronize", pull, before="a" * 40)
    gh.merge_pull(FAKE_REPO, pull.number, merged_by="admin")
    closed = pull_request_event("closed", pull)

    assert (opened["action"], opened["pull_request"]["user"]["login"]) == ("opened", "alice")
    assert (synced["before"], synced["after"]) == ("a" * 40, pull.head_sha)
    assert closed["pull_request"]["merged"] is True
    assert closed["pull_request"]["merge_commit_sha"] == pull.merge_commit_sha
    assert closed["sender"]["login"] == "admin"


def test_push_event_validates_against_the_webhook_schema() -> None:
    gh = GitHubState()
    repo = gh.add_repo(FAKE_REPO)
    commit = PushCommit("c" * 40, "Merge pull request #1", added=["requests/alice/a.yaml"])

    event = push_event(repo, before="b" * 40, after="c" * 40, commits=[commit])

    assert (event["ref"], event["after"]) == ("refs/heads/main", "c" * 40)
    assert event["head_commit"]["added"] == ["requests/alice/a.yaml"]


def test_the_webhook_check_can_fail() -> None:
    gh = GitHubState()
    repo = gh.add_repo(FAKE_REPO)
    event = push_event(repo, before="b" * 40, after="c" * 40)

    with pytest.raises(InvalidPayloadError, match="'after' is a required property"):
        validate_event("push$event", {k: v for k, v in event.items() if k != "after"})
    with pytest.raises(InvalidPayloadError, match="Additional properties are not allowed"):
        validate_event("push$event", event | {"pull_request": {}})
    pull = gh.add_pull(FAKE_REPO, author="alice", title="t")
    with pytest.raises(InvalidPayloadError, match="'closed' event for a pull request that is open"):
        pull_request_event("closed", pull)


# ---- the git database (the state branch) ----------------------------------------------------


def test_the_git_database_answers_as_github_describes_and_refuses_what_github_refuses(
    fake_github: FakeGitHub,
) -> None:
    base = f"/repos/{FAKE_REPO}/git"
    assert call(fake_github, "GET", f"{base}/ref/heads/ssp-state").status_code == 404
    tree = call(
        fake_github,
        "POST",
        f"{base}/trees",
        json={"tree": [{"path": "a/b.txt", "mode": "100644", "type": "blob", "content": "x"}]},
    )
    assert tree.status_code == 201 and [e["path"] for e in tree.json()["tree"]] == ["a"]
    both = {"path": "c", "mode": "100644", "type": "blob", "content": "x", "sha": "1" * 40}
    assert call(fake_github, "POST", f"{base}/trees", json={"tree": [both]}).status_code == 422
    bad_parent = {"message": "m", "tree": tree.json()["sha"], "parents": ["2" * 40]}
    assert call(fake_github, "POST", f"{base}/commits", json=bad_parent).status_code == 422
    first = call(
        fake_github, "POST", f"{base}/commits", json={"message": "1", "tree": tree.json()["sha"]}
    )
    assert first.status_code == 201
    made = call(
        fake_github,
        "POST",
        f"{base}/refs",
        json={"ref": "refs/heads/ssp-state", "sha": first.json()["sha"]},
    )
    assert made.status_code == 201 and made.json()["url"].endswith("/git/refs/heads/ssp-state")
    again = call(
        fake_github,
        "POST",
        f"{base}/refs",
        json={"ref": "refs/heads/ssp-state", "sha": first.json()["sha"]},
    )
    assert again.status_code == 422 and again.json()["message"] == "Reference already exists"
    # an unrelated commit is not a fast-forward: refused unless forced
    other = call(
        fake_github, "POST", f"{base}/commits", json={"message": "2", "tree": tree.json()["sha"]}
    )
    moved = call(
        fake_github, "PATCH", f"{base}/refs/heads/ssp-state", json={"sha": other.json()["sha"]}
    )
    assert moved.status_code == 422 and moved.json()["message"] == "Update is not a fast forward"
    forced = {"sha": other.json()["sha"], "force": True}
    assert (
        call(fake_github, "PATCH", f"{base}/refs/heads/ssp-state", json=forced).status_code == 200
    )
    got = call(fake_github, "GET", f"{base}/ref/heads/ssp-state").json()
    assert got["object"]["sha"] == other.json()["sha"]


def test_a_git_request_outside_the_description_is_a_violation() -> None:
    with FakeGitHub() as gh:
        gh.add_repo(FAKE_REPO)
        # `tree` is required by GitHub's description of git/create-tree
        answer = call(gh, "POST", f"/repos/{FAKE_REPO}/git/trees", json={"base_tree": "x"})
        assert answer.status_code == 500
        assert len(gh.violations) == 1 and "git/create-tree" in gh.violations[0]
