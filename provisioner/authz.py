"""Who may change what in a pull request. Pure: the changes, the author and the admins in.

The author comes from the PR event, never from a request file. A member may add, change,
rename (a delete plus an add) or delete files only under `requests/<their login>/`; anything
outside `requests/` is an infra change only an admin may make. Admins come from the BASE
branch's policy, so a PR cannot make its own author an admin. An admin may do anything, and
the report says "admin override" where it mattered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from provisioner.problems import Position, Problem

STATUS_WORDS = {"A": "add", "M": "change", "D": "delete"}


@dataclass(frozen=True)
class Change:
    """One changed path between the merge base and the PR head (renames split in two)."""

    status: str  # "A", "M" or "D"
    path: str

    @property
    def owner_folder(self) -> str | None:
        parts = self.path.split("/")
        return parts[1] if len(parts) >= 3 and parts[0] == "requests" else None


def authorize(
    changes: Iterable[Change], author: str, admins: frozenset[str]
) -> tuple[list[Problem], tuple[str, ...]]:
    """Problems for changes the author may not make, and notes for admin overrides."""
    is_admin = author.casefold() in {a.casefold() for a in admins}
    problems: list[Problem] = []
    notes: list[str] = []
    for change in sorted(changes, key=lambda c: c.path):
        verb = STATUS_WORDS.get(change.status, "change")
        folder = change.owner_folder
        if folder is not None and folder.casefold() == author.casefold():
            continue
        if is_admin:
            what = f"{folder}'s request" if folder else "infrastructure"
            notes.append(f"admin override: {author} may {verb} {change.path} ({what})")
            continue
        if folder is not None:
            problems.append(
                Problem(
                    change.path,
                    Position(1, 1),
                    "authz.other_owner",
                    f"{author} may not {verb} {folder}'s request; members change only "
                    f"requests/{author}/",
                )
            )
        else:
            where = (
                "is not in a member's folder requests/<login>/"
                if change.path.startswith("requests/")
                else "is outside requests/"
            )
            problems.append(
                Problem(
                    change.path,
                    Position(1, 1),
                    "authz.infra",
                    f"{change.path} {where}: an infra change only an admin may "
                    f"make ({author} is not an admin)",
                )
            )
    return problems, tuple(notes)
