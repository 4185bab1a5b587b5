"""A fake GitHub for tests: a local REST server held to GitHub's OpenAPI description, and
webhook event payloads held to GitHub's webhook schemas.

    with FakeGitHub() as gh:
        gh.add_repo("lab/super-server")
        gh.add_pull("lab/super-server", author="alice", title="Add alice-thesis")
        client = GithubClient(repository="lab/super-server", token=gh.token, api_url=gh.url)
"""

from __future__ import annotations

from .contract import OpenApiContract
from .resources import PullFile
from .server import FAKE_REPO, ContractViolationError, FakeGitHub, LoggedRequest

__all__ = [
    "FAKE_REPO",
    "ContractViolationError",
    "FakeGitHub",
    "LoggedRequest",
    "OpenApiContract",
    "PullFile",
]
