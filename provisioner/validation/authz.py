"""Who may change what in a pull request. Pure: the changes, the author and the admins in.

The author comes from the PR event, never from a request file; so do the others involved:
whoever pushed (the event's sender) and whoever GitHub says wrote or committed each of the PR's
commits. EVERY one of them must be allowed each change, so a member who pushes to another
member's PR branch is judged as themselves, not as the PR's opener. A member may add, change,
rename (a delete plus an add) or delete files only under `requests/<their login>/`; anything
outside `requests/` is an infra change only an admin may make. Admins come from the BASE
branch's policy, so a PR cannot make its own author an admin. An admin may do anything, and
the report says "admin override" where it mattered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from provisioner.values.changes import CommitBy, FileChange
from provisioner.values.problems import Position, Problem
from provisioner.values.requestpaths import under_requests

STATUS_WORDS = {"A": "add", "M": "change", "D": "delete"}


def authorize(
    changes: Iterable[FileChange],
    author: str,
    admins: frozenset[str],
    others: Mapping[str, str] | None = None,
) -> tuple[list[Problem], tuple[str, ...]]:
    """Problems for changes someone involved may not make, and notes for admin overrides.

    `author` opened the PR; `others` maps every other login involved (pushers, commit authors
    and committers) to what they did, for the message."""
    involved = {author.casefold(): (author, "")}
    for login, why in sorted((others or {}).items()):
        involved.setdefault(login.casefold(), (login, why))
    admin_set = {a.casefold() for a in admins}
    problems: list[Problem] = []
    notes: list[str] = []
    for change in sorted(changes, key=lambda c: c.path):
        verb = STATUS_WORDS.get(change.status, "change")
        folder = change.owner_folder
        outsiders = [
            (login, why)
            for key, (login, why) in involved.items()
            if folder is None or folder.casefold() != key
        ]
        refused = [(login, why) for login, why in outsiders if login.casefold() not in admin_set]
        if not refused:
            for login, _why in outsiders:
                what = f"{folder}'s request" if folder else "infrastructure"
                notes.append(f"admin override: {login} may {verb} {change.path} ({what})")
            continue
        who = ", ".join(login + (f" ({why})" if why else "") for login, why in refused)
        if folder is not None:
            own = (
                f"requests/{author}/"
                if len(refused) == 1 and not refused[0][1]
                else "their own requests/<login>/"
            )
            problems.append(
                Problem(
                    change.path,
                    Position(1, 1),
                    "authz.other_owner",
                    f"{who} may not {verb} {folder}'s request; members change only {own}",
                )
            )
        else:
            where = (
                "is not in a member's folder requests/<login>/"
                if under_requests(change.path)
                else "is outside requests/"
            )
            not_admin = f"{who} is not an admin" if len(refused) == 1 else f"{who} are not admins"
            problems.append(
                Problem(
                    change.path,
                    Position(1, 1),
                    "authz.infra",
                    f"{change.path} {where}: an infra change only an admin may make ({not_admin})",
                )
            )
    return problems, tuple(notes)


# GitHub's own account for commits made in its web interface (edits, "Update branch"):
# GitHub is the committer there, not a member.
WEB_FLOW = "web-flow"


def commit_people(
    listed: Iterable[CommitBy], in_git: Iterable[str]
) -> tuple[dict[str, str], list[Problem]]:
    """Who wrote or committed the commits a merge brings in, as GitHub reports them.

    `in_git` are the commits git says the merge brings in; `listed` what GitHub's pull request
    commits endpoint says about them. A commit GitHub does not list, or that no GitHub account
    is linked to, cannot be attributed, and is a finding: the check cannot tell who wrote it."""
    by_sha = {c.sha: c for c in listed}
    people: dict[str, str] = {}
    problems: list[Problem] = []
    for sha in in_git:
        commit = by_sha.get(sha)
        if commit is None:
            problems.append(
                Problem(
                    "(commits)",
                    Position(1, 1),
                    "authz.unknown_commit",
                    f"commit {sha[:12]} is in the merge but not among the pull request's commits "
                    "on GitHub (over 250 commits, or pushed since this check started): push "
                    "again or split the PR",
                )
            )
            continue
        logins = [
            (login, f"{role} {sha[:7]}")
            for login, role in ((commit.author, "wrote"), (commit.committer, "committed"))
            if login and login != WEB_FLOW
        ]
        if not logins:
            problems.append(
                Problem(
                    "(commits)",
                    Position(1, 1),
                    "authz.unknown_author",
                    f"commit {sha[:12]} is linked to no GitHub account (its author's e-mail is "
                    "not on any account), so the check cannot tell who wrote it: commit with "
                    "the e-mail of your GitHub account",
                )
            )
        for login, why in logins:
            people.setdefault(login, why)
    return people, problems
