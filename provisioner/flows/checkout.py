"""`main` as every host command reads it: the checkout validated again, in git's merge order.

Apply never trusts that the PR check ran: apply, maintain, plan, status and publish all start
here. Where requests compete (a GPU, a quota, the host's capacity), the newest by git history
are refused and the rest applied; outside git, path order decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from provisioner.git import files as gitfiles
from provisioner.git import history as gitrepo
from provisioner.validation.config import Config
from provisioner.validation.validate import Validation, blocking, validate_tree
from provisioner.values.errors import SspError
from provisioner.values.problems import Problem
from provisioner.values.waitlist import Landed


def load_main(repo: Path, now: datetime) -> tuple[Validation, str]:
    """The whole checkout validated, and its commit ("" outside git)."""
    if not (repo / ".git").exists():
        return validate_tree(gitfiles.worktree(repo), now), ""
    ages = gitrepo.ages(repo)
    return validate_tree(gitfiles.worktree(repo), now, ages=ages), gitrepo.head_sha(repo)


@dataclass(frozen=True, kw_only=True)
class MainCheckout:
    """`main` as a host command sees it: validated again, its commit, the time it was read,
    and the problems that stop a whole pass (an invalid config)."""

    validation: Validation
    sha: str
    now: datetime
    blocking: tuple[Problem, ...]
    # When each request first landed on main (the waitlist's merge order); empty outside git.
    landed: Mapping[str, Landed] = field(default_factory=dict)

    @property
    def merged(self) -> dict[str, int]:
        """Request path → its place in merge order, as planning reads it (`Inputs.merged`)."""
        return {path: landed.position for path, landed in self.landed.items()}

    @property
    def config(self) -> Config:
        config = self.validation.config
        if config is None:  # callers look at `blocking` first; it is never empty then
            raise SspError("config/ is not valid")
        return config


def read_main(repo: Path, now: datetime) -> MainCheckout:
    """The checkout for apply, maintain and plan, with what would stop them."""
    validation, sha = load_main(repo, now)
    return MainCheckout(
        validation=validation,
        sha=sha,
        now=now,
        blocking=tuple(blocking(validation)),
        landed=landed_on_main(repo),
    )


def landed_on_main(repo: Path) -> dict[str, Landed]:
    """When each request file first landed on main (see `gitrepo.landings`); outside git,
    nothing (path order then decides the waitlist)."""
    return gitrepo.landings(repo) if (repo / ".git").exists() else {}
