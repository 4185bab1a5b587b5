"""A pull request's changes and commits as values: what the git and GitHub adapters read and
`provisioner.validation.authz` judges.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.values.requestpaths import owner_folder


@dataclass(frozen=True)
class FileChange:
    """One changed path between the merge base and the PR head (renames split in two)."""

    status: str  # "A", "M" or "D"
    path: str

    @property
    def owner_folder(self) -> str | None:
        return owner_folder(self.path)


@dataclass(frozen=True)
class CommitBy:
    """One commit of a PR and the GitHub accounts GitHub links to it (None: no account)."""

    sha: str
    author: str | None
    committer: str | None
