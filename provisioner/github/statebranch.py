"""The GitHub adapter's part for the state branch: publish files as the branch's one commit.

`ssp publish` writes the host's snapshot and status page to a branch (`ssp-state`) through
GitHub's git database API, never with git on the host: a tree with the files' content, a
commit with no parent, and the branch moved onto it (`force`: the branch holds only the
latest state, so it never grows, and a fetch of depth 1 is all a reader needs). The first
run creates the branch. Every step is safe to redo, so the whole publish is retried as one
(`GitHubClient`'s retry: transient failures, bounded waits); a create that reached GitHub
although its answer did not is found as "already exists" and becomes a move.

Needs `contents: write` on the repository (the maintenance workflow's publishing job only).
"""

from __future__ import annotations

from collections.abc import Mapping

from github import GithubException, InputGitTreeElement
from github.Repository import Repository

from provisioner.github.client import GitHubClient

_BRANCH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./")


def _branch_ok(branch: str) -> bool:
    return (
        0 < len(branch) <= 100
        and set(branch) <= _BRANCH_CHARS
        and not branch.startswith(("/", "-", "."))
        and ".." not in branch
        and not branch.endswith((".", "/", ".lock"))
    )


class StateBranch(GitHubClient):
    """A `GitHubClient` that can also replace a branch's content with one commit."""

    def publish(self, branch: str, files: Mapping[str, str], message: str) -> str:
        """Make BRANCH hold exactly FILES (path → UTF-8 text) in one new commit; its sha."""
        if not _branch_ok(branch):
            raise ValueError(f"{branch!r} is not a branch name ssp publishes to")

        def once() -> str:
            repo = self._repo()
            tree = repo.create_git_tree(
                [
                    InputGitTreeElement(path, "100644", "blob", content=text)
                    for path, text in sorted(files.items())
                ]
            )
            commit = repo.create_git_commit(message, tree, [])
            try:
                move(repo, commit.sha)
            except GithubException as e:
                if e.status != 404:  # 404: no such branch yet
                    raise
                try:
                    repo.create_git_ref(f"refs/heads/{branch}", commit.sha)
                except GithubException as again:
                    if again.status != 422:  # made meanwhile (or by our own lost answer)
                        raise
                    move(repo, commit.sha)
            return str(commit.sha)

        def move(repo: Repository, sha: str) -> None:
            ref = repo.get_git_ref(f"heads/{branch}")
            # Read it first: a lazy ref would PATCH the address it was read from (git/ref/…),
            # the one GitHub describes for moving it is git/refs/…, which the read returns.
            _ = ref.object.sha
            ref.edit(sha, force=True)

        return self._attempt(f"publish to branch {branch}", once)
