"""Publishing the state branch through GitHub's git database: real PyGithub, the HTTP fake.

The fake hashes objects as git does, so what was published is compared with what real git
makes of the same files; the fake holds every request and answer to GitHub's published
description (a violation fails the test at teardown).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fakegithub import FAKE_REPO, FakeGitHub

from provisioner.github.statebranch import StateBranch
from provisioner.values.errors import GithubError

pytest_plugins = ["fakegithub.fixtures"]  # fake_github

REF = "refs/heads/ssp-state"
FILES = {"snapshot.json": '{"format": 1}\n', "index.html": "<!doctype html><p>状态</p>\n"}


def client(gh: FakeGitHub, sleeps: list[float] | None = None) -> StateBranch:
    return StateBranch(
        repository=FAKE_REPO,
        token=gh.token,
        api_url=gh.url,
        sleep=(sleeps if sleeps is not None else []).append,
    )


def published(gh: FakeGitHub) -> dict[str, bytes]:
    db = gh.git[FAKE_REPO.lower()]
    commit = db.objects[db.refs[REF]]
    return db.files(commit.data["tree"])


def git_tree(tmp_path: Path, files: dict[str, str]) -> str:
    """The tree id real git gives FILES."""
    repo = tmp_path / "real"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for name, text in files.items():
        (repo / name).write_text(text, encoding="utf-8")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    done = subprocess.run(
        ["git", "-C", str(repo), "write-tree"], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def test_the_first_publish_creates_the_branch_with_exactly_the_files(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    sha = client(fake_github).publish("ssp-state", FILES, "ssp state")

    db = fake_github.git[FAKE_REPO.lower()]
    assert db.refs[REF] == sha
    assert published(fake_github) == {k: v.encode() for k, v in FILES.items()}
    assert db.objects[sha].data["tree"] == git_tree(tmp_path, FILES)  # git's own ids
    assert db.objects[sha].data["parents"] == []


def test_a_later_publish_replaces_the_branch_with_one_new_commit(
    fake_github: FakeGitHub,
) -> None:
    publisher = client(fake_github)
    first = publisher.publish("ssp-state", FILES, "one")
    second = publisher.publish("ssp-state", {"snapshot.json": "{}\n"}, "two")

    db = fake_github.git[FAKE_REPO.lower()]
    assert db.refs[REF] == second != first
    assert published(fake_github) == {"snapshot.json": b"{}\n"}  # index.html is gone
    assert db.objects[second].data["parents"] == []  # the branch never grows
    patches = fake_github.requests_matching("PATCH", f"/repos/{FAKE_REPO}/git/refs/")
    assert [p.body for p in patches] == [{"sha": second, "force": True}]


def test_a_transient_failure_is_retried_and_a_lost_create_becomes_a_move(
    fake_github: FakeGitHub,
) -> None:
    sleeps: list[float] = []
    fake_github.fail_next(1, 502, path_prefix=f"/repos/{FAKE_REPO}/git/trees")
    # the branch is made, but the answer is lost: the retry must not fail on "already exists"
    fake_github.fail_next(
        1, 502, path_prefix=f"/repos/{FAKE_REPO}/git/refs", method="POST", after_processing=True
    )

    sha = client(fake_github, sleeps).publish("ssp-state", FILES, "ssp state")

    assert fake_github.git[FAKE_REPO.lower()].refs[REF] == sha
    assert published(fake_github) == {k: v.encode() for k, v in FILES.items()}
    assert sleeps == [1.0, 2.0]


def test_a_token_that_cannot_write_is_a_clear_error(fake_github: FakeGitHub) -> None:
    fake_github.fail_next(
        1,
        403,
        path_prefix=f"/repos/{FAKE_REPO}/git/",
        message="Resource not accessible by integration",
    )
    with pytest.raises(GithubError, match=r"publish to branch ssp-state: .*not accessible"):
        client(fake_github).publish("ssp-state", FILES, "ssp state")
    assert fake_github.requests_matching("POST", f"/repos/{FAKE_REPO}/git/refs") == []


@pytest.mark.parametrize("branch", ["", "../main", "-x", "a..b", "x.lock", "a b", "refs/heads/"])
def test_a_bad_branch_name_is_refused_before_any_request(
    fake_github: FakeGitHub, branch: str
) -> None:
    with pytest.raises(ValueError, match="not a branch name"):
        client(fake_github).publish(branch, FILES, "x")
    assert fake_github.requests == []
