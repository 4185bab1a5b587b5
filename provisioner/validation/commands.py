"""Members' comment commands, judged: what a comment asks, who may ask it, and how often.

`/ssp restart`, `/ssp stop`, `/ssp start` and `/ssp snapshot`, written by a container's owner
(or a policy admin) on its lease issue or merged pull request, are run on the host by the
commands workflow. Everything here is pure: the event's payload, the policy and the times
come in; a `Command`, a refusal's words or a yes/no go out.

The comment is untrusted text. Only its first line is read, and only as one of four fixed
verbs (`VERBS`): nothing else of it is ever handed on, so nothing a member writes reaches
LXD, a shell or a host path. Who wrote it is GitHub's word (the event's `comment.user.login`
and `comment.author_association`), compared case-insensitively with the owner and the
admins of main's policy, as logins are on GitHub.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from provisioner.values.issues import LEASE_LABEL, LEASE_MARKER
from provisioner.values.models import LOGIN_PATTERN

VERBS = ("restart", "stop", "start", "snapshot")
PREFIX = "/ssp "  # what the workflow's `if:` lets through; anything else is not for us
_COMMAND = re.compile(r"/ssp (restart|stop|start|snapshot)\s*")
# Who may even reach the host: people GitHub calls the repository's owner, an organisation
# member or an invited collaborator (a stranger's comment never takes the runner).
ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
# The snapshots `/ssp snapshot` takes, and the only ones it ever deletes to make room.
SNAPSHOT_PREFIX = "ssp-cmd-"
HOUR_S = 3600.0
_LOGIN = re.compile(LOGIN_PATTERN)
_WORD = re.compile(r"[A-Z_]{1,40}")
USAGE = (
    "ssp understands one command per comment, alone on its first line: `/ssp restart`, "
    "`/ssp stop` (hand the GPUs back and stop; the lease stays), `/ssp start` (start again "
    "and queue for the GPUs) or `/ssp snapshot`."
)


class EventError(ValueError):
    """The event file is not an issue comment GitHub would send."""


@dataclass(frozen=True)
class CommentEvent:
    """What ssp reads of an `issue_comment` event; the body only ever as `verb`."""

    comment_id: int
    number: int  # the issue or pull request the comment is on
    on_pull: bool
    commenter: str
    association: str
    verb: str | None  # one of VERBS, or None: not a command ssp understands
    addressed: bool  # the comment starts with "/ssp ": it was meant for ssp
    lease_name: str | None  # the container whose lease issue this is (marker and label)


def parse_verb(body: str) -> str | None:
    """The verb of a comment whose first line is exactly `/ssp VERB` (trailing blanks
    allowed), else None."""
    first = body.split("\n", 1)[0].rstrip("\r")
    found = _COMMAND.fullmatch(first)
    return found.group(1) if found else None


def _text(payload: Mapping[str, Any], *path: str) -> str:
    value: Any = payload
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    if not isinstance(value, str):
        raise EventError(f"the event has no {'.'.join(path)}")
    return value


def _number(payload: Mapping[str, Any], *path: str) -> int:
    value: Any = payload
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise EventError(f"the event has no {'.'.join(path)}")
    return value


def read_event(payload: Mapping[str, Any]) -> CommentEvent:
    """The comment event in PAYLOAD (what $GITHUB_EVENT_PATH holds), or EventError."""
    if payload.get("action") != "created":
        raise EventError("not a new comment (only `created` comments are commands)")
    body = _text(payload, "comment", "body")
    issue = payload.get("issue")
    if not isinstance(issue, Mapping):
        raise EventError("the event has no issue")
    labels = issue.get("labels") or []
    names = {str(label.get("name")) for label in labels if isinstance(label, Mapping)}
    # ssp's lease issues are written by the workflow's token or ssp's App: a bot. A person's
    # issue with the label and a copied marker names no container.
    author = issue.get("user")
    by_bot = isinstance(author, Mapping) and author.get("type") == "Bot"
    marked = LEASE_MARKER.search(str(issue.get("body") or ""))
    lease = marked if by_bot and LEASE_LABEL in names else None
    return CommentEvent(
        comment_id=_number(payload, "comment", "id"),
        number=_number(payload, "issue", "number"),
        on_pull=isinstance(issue.get("pull_request"), Mapping),
        commenter=_text(payload, "comment", "user", "login"),
        association=_text(payload, "comment", "author_association"),
        verb=parse_verb(body),
        addressed=body.startswith(PREFIX),
        lease_name=lease.group(1) if lease else None,
    )


def refusal(event: CommentEvent, owner: str, admins: Iterable[str]) -> str | None:
    """Why EVENT's author may not command OWNER's container (None: they may). Both must
    hold: the login is the owner's or an admin's, and GitHub associates them with the
    repository (a renamed or removed account keeps neither)."""
    who = event.commenter.casefold()
    allowed = who == owner.casefold() or who in {a.casefold() for a in admins}
    if not allowed:
        return f"only @{owner} (its owner) or an admin may `/ssp {event.verb}` this container"
    if event.association not in ASSOCIATIONS:
        named = f"@{event.commenter}" if _LOGIN.fullmatch(event.commenter) else "this account"
        association = event.association if _WORD.fullmatch(event.association) else "another"
        return (
            f"{named} is not a member or collaborator of this repository "
            f"(GitHub says {association}), so the host takes no commands from them"
        )
    return None


def recent(times: Sequence[float], now: float) -> list[float]:
    """The times within the last hour (a ledger's entries worth keeping)."""
    return sorted(t for t in times if now - HOUR_S < t <= now)


def rate_refusal(times: Sequence[float], now: float, per_hour: int) -> str | None:
    """Why one more command is refused now, given the container's earlier ones (None: it
    is not)."""
    last_hour = recent(times, now)
    if len(last_hour) < per_hour:
        return None
    wait_min = max(1, round((last_hour[0] + HOUR_S - now) / 60))
    return (
        f"this container was given {len(last_hour)} commands in the last hour, the most the "
        f"lab's policy allows (`commands.per_hour: {per_hour}`); try again in {wait_min} min"
    )


def lease_container(event: CommentEvent) -> str | None:
    """The container whose lease issue the comment is on (its label and marker say so)."""
    return None if event.on_pull else event.lease_name


def pull_container(touched: Collection[str], containers: Mapping[str, str]) -> list[str]:
    """The containers whose request files (path -> name, on main) a merged pull request
    added or changed, sorted."""
    return sorted({name for path, name in containers.items() if path in touched})


def snapshot_name(now: datetime) -> str:
    """The name `/ssp snapshot` gives: ssp's prefix and the time, to the second (UTC)."""
    return f"{SNAPSHOT_PREFIX}{now:%Y%m%d-%H%M%S}"


def snapshots_to_drop(existing: Sequence[str], keep: int) -> list[str]:
    """Which of `/ssp snapshot`'s earlier snapshots go so that one more leaves KEEP of them
    (the oldest first); other snapshots (retirement, the schedule, an admin's) are never
    touched."""
    ours = sorted(s for s in existing if s.startswith(SNAPSHOT_PREFIX))
    extra = len(ours) + 1 - keep
    return ours[:extra] if extra > 0 else []
