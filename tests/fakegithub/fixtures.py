"""pytest fixtures for the fake GitHub; import them into tests/conftest.py.

fake_github    a started FakeGitHub with the repository FAKE_REPO; at teardown it fails
               the test if any request or response broke GitHub's contract
github_sleeps  the waits the client asked for (a list of seconds; nothing really sleeps)
github_client  a provisioner GitHubClient on FAKE_REPO, talking to fake_github
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provisioner.github.client import GitHubClient

from .server import FAKE_REPO, FakeGitHub


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        gh.add_repo(FAKE_REPO)
        yield gh
    gh.assert_no_violations()


@pytest.fixture
def github_sleeps() -> list[float]:
    return []


@pytest.fixture
def github_client(fake_github: FakeGitHub, github_sleeps: list[float]) -> GitHubClient:
    return GitHubClient(
        repository=FAKE_REPO,
        token=fake_github.token,
        api_url=fake_github.url,
        sleep=github_sleeps.append,
    )
