"""Everyone involved in a PR is judged: its opener, whoever pushed, and each commit's author and
committer as GitHub reports them (the pull request commits endpoint, on the fake GitHub).

A member with write access can push to another member's PR branch; judged as the PR's opener,
their change to the opener's request would pass. Real git histories; the commits GitHub lists
are the ones git says the merge brings in.
"""

from __future__ import annotations

import json
from pathlib import Path

from fakegithub import FAKE_REPO, FakeGitHub
from helpers import GitRepo, key, valid_request, validate

ALICE = "requests/alice/alice-box.yaml"
BOB = "requests/bob/bob-common.yaml"
ENV = {"SSP_NOW": "2026-11-28T12:00:00+00:00"}


def alice_pr(tmp_path: Path) -> tuple[GitRepo, str, str]:
    """alice's PR adds a second box; then bob pushes a commit adding his key to alice's box."""
    repo = GitRepo.create(
        tmp_path / "repo", {ALICE: valid_request(), BOB: valid_request("account")}
    )
    repo.branch("pr")
    mine = repo.commit(
        {"requests/alice/alice-two.yaml": valid_request(name="alice-two", gpus="0")}, "alice"
    )
    theirs = repo.commit(
        {ALICE: valid_request(ssh_keys=[key("alice"), key("bob-laptop")])}, "bob: let me in too"
    )
    return repo, mine, theirs


def github_env(gh: FakeGitHub, **extra: str) -> dict[str, str]:
    return {
        **ENV,
        "GITHUB_TOKEN": gh.token,
        "GITHUB_REPOSITORY": FAKE_REPO,
        "GITHUB_API_URL": gh.url,
        **extra,
    }


def check(repo: GitRepo, gh: FakeGitHub, number: int, *extra: str) -> tuple[int, str]:
    result = validate(
        repo.root,
        "--base",
        "main",
        "--author",
        "alice",
        "--pull",
        str(number),
        *extra,
        env=github_env(gh),
    )
    assert "Traceback" not in result.both
    return result.code, result.both


def test_a_commit_pushed_by_another_member_is_judged_as_that_member(
    tmp_path: Path, fake_github: FakeGitHub
) -> None:
    repo, mine, theirs = alice_pr(tmp_path)
    pull = fake_github.add_pull(
        FAKE_REPO,
        author="alice",
        title="alice's second box",
        commits=[(mine, "alice", "alice"), (theirs, "bob", "bob")],
    )
    code, out = check(repo, fake_github, pull.number)
    assert code == 1, out
    assert f"{ALICE}:1:1: error: bob (wrote {theirs[:7]}) may not change alice's request" in out
    # a PR is judged as one change: everyone involved must be allowed all of it
    assert f"alice-two.yaml:1:1: error: bob (wrote {theirs[:7]}) may not add alice's" in out
    # the commits were read from GitHub, once
    assert fake_github.requests_matching("GET", f"/repos/{FAKE_REPO}/pulls/{pull.number}/commits")


def test_the_same_pr_with_only_alices_commits_passes(
    tmp_path: Path, fake_github: FakeGitHub
) -> None:
    repo, mine, theirs = alice_pr(tmp_path)
    pull = fake_github.add_pull(
        FAKE_REPO,
        author="alice",
        title="alice's boxes",
        # committed through GitHub's web editor: GitHub itself ("web-flow") is the committer
        commits=[(mine, "alice", "alice"), (theirs, "alice", "web-flow")],
    )
    code, out = check(repo, fake_github, pull.number)
    assert code == 0, out


def test_an_admin_fixing_a_members_pr_is_an_override_not_an_error(
    tmp_path: Path, fake_github: FakeGitHub
) -> None:
    repo, mine, theirs = alice_pr(tmp_path)
    pull = fake_github.add_pull(
        FAKE_REPO,
        author="alice",
        title="alice's boxes",
        commits=[(mine, "alice", "alice"), (theirs, "lab-admin", "lab-admin")],
    )
    code, out = check(repo, fake_github, pull.number)
    assert code == 0, out
    assert f"admin override: lab-admin may change {ALICE}" in out


def test_a_commit_linked_to_no_account_cannot_be_attributed(
    tmp_path: Path, fake_github: FakeGitHub
) -> None:
    repo, mine, theirs = alice_pr(tmp_path)
    pull = fake_github.add_pull(
        FAKE_REPO,
        author="alice",
        title="alice's boxes",
        commits=[(mine, "alice", "alice"), (theirs, None, None)],
    )
    code, out = check(repo, fake_github, pull.number)
    assert code == 1, out
    assert f"commit {theirs[:12]} is linked to no GitHub account" in out
    assert "[authz.unknown_author]" in out


def test_a_commit_in_the_merge_that_github_does_not_list_is_refused(
    tmp_path: Path, fake_github: FakeGitHub
) -> None:
    repo, mine, theirs = alice_pr(tmp_path)
    pull = fake_github.add_pull(
        FAKE_REPO, author="alice", title="alice's boxes", commits=[(mine, "alice", "alice")]
    )
    code, out = check(repo, fake_github, pull.number)
    assert code == 1, out
    assert f"commit {theirs[:12]} is in the merge but not among the pull request's commits" in out


def test_the_pusher_from_the_event_is_judged_too(tmp_path: Path, fake_github: FakeGitHub) -> None:
    # bob forged alice as the author of his commit, but the push event's sender is bob
    repo, mine, theirs = alice_pr(tmp_path)
    pull = fake_github.add_pull(
        FAKE_REPO,
        author="alice",
        title="alice's boxes",
        commits=[(mine, "alice", "alice"), (theirs, "alice", "alice")],
    )
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps(
            {
                "number": pull.number,
                "pull_request": {"user": {"login": "alice"}},
                "sender": {"login": "bob"},
            }
        ),
        encoding="utf-8",
    )
    result = validate(
        repo.root, "--base", "main", env=github_env(fake_github, GITHUB_EVENT_PATH=str(event))
    )
    assert result.code == 1, result.both
    assert "bob (pushed to the PR) may not change alice's request" in result.out


def test_pull_without_a_token_is_a_usage_error(tmp_path: Path) -> None:
    repo, _, _ = alice_pr(tmp_path)
    result = validate(repo.root, "--base", "main", "--author", "alice", "--pull", "1", env=ENV)
    assert result.code == 2
    assert "--pull 1 needs GITHUB_TOKEN and GITHUB_REPOSITORY" in result.err
