"""The fake's reactions on issue comments, as GitHub's reactions API keeps them.

`POST …/issues/comments/{id}/reactions` adds one (201), or, when this user already reacted
with that content, answers 200 with the existing one and adds nothing (so a retried reaction
never doubles); `GET` lists them, optionally only one `content`. A comment's `reactions`
summary counts them. `reactions_on(comment_id)` reads them back for tests: (login, content).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import resources as r
from .gitdata import Reply

DOCS = "https://docs.github.com/rest/reactions/reactions"


class ReactionsMixin:
    """Part of GitHubState: reactions on the comments it holds."""

    if TYPE_CHECKING:
        comments: dict[int, r.Comment]
        site: r.Site
        _ids: Any

        def _comment(self, p: Mapping[str, str]) -> r.Comment | None: ...
        def _page(self, items: list[Any], path: str, query: Mapping[str, list[str]]) -> Reply: ...

    def reactions_on(self, comment_id: int) -> list[tuple[str, str]]:
        """Who reacted how to comment COMMENT_ID, in order."""
        comment = self.comments[comment_id]
        return [(m.user.login, m.content) for m in comment.reactions]

    def _create_reaction(self, p: Mapping[str, str], q: Any, b: Any, who: Any) -> Reply:
        comment = self._comment(p)
        if comment is None:
            return Reply(404, r.error("Not Found", DOCS, 404))
        for made in comment.reactions:
            if made.user.login == who.user.login and made.content == b["content"]:
                return Reply(200, r.reaction(self.site, made))
        made = r.Reaction(next(self._ids), who.user, b["content"], datetime.now(UTC))
        comment.reactions.append(made)
        return Reply(201, r.reaction(self.site, made))

    def _list_reactions(self, p: Mapping[str, str], q: Any, b: Any, who: Any) -> Reply:
        comment = self._comment(p)
        if comment is None:
            return Reply(404, r.error("Not Found", DOCS, 404))
        wanted = (q.get("content") or [None])[0]
        items = [r.reaction(self.site, m) for m in comment.reactions if wanted in (None, m.content)]
        path = f"/repos/{p['owner']}/{p['repo']}/issues/comments/{comment.id}/reactions"
        return self._page(items, path, q)


HANDLERS = {
    "reactions/create-for-issue-comment": ReactionsMixin._create_reaction,
    "reactions/list-for-issue-comment": ReactionsMixin._list_reactions,
}
