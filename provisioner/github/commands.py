"""The GitHub adapter's part in the comment commands: a reaction on the member's comment, and
ssp's answer in the same thread.

`CommandsClient` is a `GitHubClient` (same credentials, retries and error translation). A
reaction is idempotent on GitHub (the same one again answers 200 and adds nothing), so a
retry never doubles it. The answer is one comment per command, found again by a hidden marker
naming the command's comment (`<!-- ssp:command ID -->`), so a retried or re-run job edits
its answer instead of posting a second one.
"""

from __future__ import annotations

from provisioner.github.client import CommentRef, GitHubClient

# The reactions GitHub offers that ssp uses: seen, done, refused or not understood, failed.
REACTIONS = frozenset({"eyes", "+1", "rocket", "confused", "-1"})


def answer_marker(comment_id: int) -> str:
    return f"<!-- ssp:command {int(comment_id)} -->"


class CommandsClient(GitHubClient):
    """GitHubClient plus reactions on issue comments and answers to commands."""

    def react(self, comment_id: int, content: str) -> None:
        """Add reaction CONTENT (one of REACTIONS) to the issue comment COMMENT_ID."""
        if content not in REACTIONS:
            raise ValueError(f"not a reaction ssp uses: {content!r}")
        url = f"{self._api_url}/repos/{self.repository}/issues/comments/{int(comment_id)}/reactions"

        def once() -> None:
            self._client().requester.requestJsonAndCheck(
                "POST",
                url,
                input={"content": content},
                headers={"Accept": "application/vnd.github+json"},
            )

        self._attempt(f"react to comment {comment_id}", once)

    def answer(self, number: int, comment_id: int, body: str) -> CommentRef:
        """ssp's answer to the command in COMMENT_ID, on issue or pull request NUMBER."""
        return self.upsert_comment(number, body, answer_marker(comment_id))
