"""The fake GitHub's issues, over HTTP, as GitHub's contract describes them: create with
labels (made when missing), get, edit (body, close with a reason, reopen), list with the
`state`, `labels` and `creator` filters, comments on an issue, and one number space shared
with pull requests. Every request and answer goes through the contract checker (the fixture
fails the test on any violation).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from fakegithub import FAKE_REPO, FakeGitHub

pytest_plugins = ["fakegithub.fixtures"]

API = "application/vnd.github+json"
ISSUES = f"/repos/{FAKE_REPO}/issues"


def call(gh: FakeGitHub, method: str, path: str, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"token {gh.token}", "Accept": API}
    return requests.request(method, gh.url + path, headers=headers, timeout=10, **kw)


def test_an_issue_is_created_read_edited_closed_and_reopened(fake_github: FakeGitHub) -> None:
    made = call(
        fake_github,
        "POST",
        ISSUES,
        json={"title": "Lease of alice-thesis", "body": "hello @alice", "labels": ["ssp-lease"]},
    )
    assert made.status_code == 201, made.text
    issue = made.json()
    assert made.headers["Location"].endswith(f"{ISSUES}/{issue['number']}")
    assert (issue["state"], issue["body"], issue["closed_at"]) == ("open", "hello @alice", None)
    assert [lb["name"] for lb in issue["labels"]] == ["ssp-lease"]
    assert issue["html_url"].endswith(f"/{FAKE_REPO}/issues/{issue['number']}")
    assert "pull_request" not in issue

    path = f"{ISSUES}/{issue['number']}"
    edited = call(fake_github, "PATCH", path, json={"body": "renewed"}).json()
    assert (edited["body"], edited["state"]) == ("renewed", "open")

    closed = call(fake_github, "PATCH", path, json={"state": "closed"}).json()
    assert (closed["state"], closed["state_reason"]) == ("closed", "completed")
    assert closed["closed_at"] and closed["closed_by"]["login"] == fake_github.me.login

    reopened = call(fake_github, "PATCH", path, json={"state": "open"}).json()
    assert (reopened["state"], reopened["state_reason"], reopened["closed_at"]) == (
        "open",
        "reopened",
        None,
    )
    got = call(fake_github, "GET", path).json()
    assert got == reopened
    assert call(fake_github, "GET", f"{ISSUES}/999").status_code == 404


def test_a_new_issue_without_a_title_is_refused(fake_github: FakeGitHub) -> None:
    answer = call(fake_github, "POST", ISSUES, json={"title": " ", "body": "x"})
    assert answer.status_code == 422
    assert fake_github.issues_of(FAKE_REPO) == []


def test_issues_and_pull_requests_share_numbers_and_the_list(fake_github: FakeGitHub) -> None:
    fake_github.add_pull(FAKE_REPO, author="alice", title="a pull")
    issue = fake_github.add_issue(FAKE_REPO, author="bob", title="an issue", labels=("ssp-lease",))
    assert issue.number == 2
    pull = fake_github.add_pull(FAKE_REPO, author="alice", title="another pull")
    assert pull.number == 3

    listed = call(fake_github, "GET", ISSUES).json()
    assert [(i["number"], "pull_request" in i) for i in listed] == [
        (3, True),
        (2, False),
        (1, True),
    ]
    as_issue = call(fake_github, "GET", f"{ISSUES}/1").json()
    assert as_issue["pull_request"]["url"].endswith(f"/{FAKE_REPO}/pulls/1")


def test_the_list_filters_by_state_labels_and_creator(fake_github: FakeGitHub) -> None:
    a = fake_github.add_issue(FAKE_REPO, author="bob", title="a", labels=("ssp-lease",))
    b = fake_github.add_issue(FAKE_REPO, author="ssp-bot", title="b", labels=("ssp-lease", "x"))
    fake_github.add_issue(FAKE_REPO, author="ssp-bot", title="c")
    call(fake_github, "PATCH", f"{ISSUES}/{b.number}", json={"state": "closed"})

    def numbers(**params: str) -> list[int]:
        answer = call(fake_github, "GET", ISSUES, params=params)
        assert answer.status_code == 200
        return [i["number"] for i in answer.json()]

    assert numbers(labels="ssp-lease") == [a.number]  # open only, by default
    assert numbers(labels="ssp-lease", state="all") == [b.number, a.number]
    assert numbers(labels="ssp-lease,x", state="all") == [b.number]
    assert numbers(labels="SSP-LEASE", state="closed") == [b.number]
    assert numbers(creator="ssp-bot", state="all", direction="asc") == [b.number, 3]
    assert numbers(labels="nothing") == []


def test_comments_on_an_issue_are_listed_and_point_at_the_issue(
    fake_github: FakeGitHub,
) -> None:
    issue = fake_github.add_issue(FAKE_REPO, author="ssp-bot", title="t")
    path = f"{ISSUES}/{issue.number}/comments"
    made = call(fake_github, "POST", path, json={"body": "@alice: 3 days left"})
    assert made.status_code == 201
    anchor = f"/issues/{issue.number}#issuecomment-{made.json()['id']}"
    assert made.json()["html_url"].endswith(anchor)
    assert [c["body"] for c in call(fake_github, "GET", path).json()] == ["@alice: 3 days left"]
    assert call(fake_github, "GET", f"{ISSUES}/{issue.number}").json()["comments"] == 1


@pytest.mark.parametrize("labels", [["a", {"name": "b"}], []])
def test_labels_are_replaced_on_edit(fake_github: FakeGitHub, labels: list[Any]) -> None:
    issue = fake_github.add_issue(FAKE_REPO, author="ssp-bot", title="t", labels=("old",))
    edited = call(fake_github, "PATCH", f"{ISSUES}/{issue.number}", json={"labels": labels})
    assert edited.status_code == 200, edited.text
    assert [lb["name"] for lb in edited.json()["labels"]] == [
        x if isinstance(x, str) else x["name"] for x in labels
    ]
