"""The PR check: a pull request (or a member's change in a clone) judged against its base, as
`ssp validate` runs it in CI and on a member's machine.

What is judged is what merging would make, built from every merge base, and who is judged is
everyone involved: the author, whoever pushed, and whoever GitHub says wrote or committed each
commit. With a published state snapshot, the plan preview says what apply would give the PR's
requests now. The command hands in what it read from the environment and the event; this flow
reads git and (through the client it is handed) GitHub, and prints nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.git import files as gitfiles
from provisioner.git import history as gitrepo
from provisioner.reporting import validationreport
from provisioner.validation.authz import commit_people
from provisioner.validation.config import load_config
from provisioner.validation.validate import Validation, load_request, validate_pull, validate_tree
from provisioner.values.changes import CommitBy, FileChange
from provisioner.values.errors import GithubError, UsageError
from provisioner.values.held import Held
from provisioner.values.models import LOGIN_MAX, LOGIN_PATTERN
from provisioner.values.problems import Position, Problem

# The snapshot and the preview (their models, planning) load only with --snapshot: a plain
# check does not pay for them at start-up (issue 27).
if TYPE_CHECKING:
    from provisioner.status import preview
    from provisioner.status.snapshot import Snapshot

# Where a clone's main is, in the order tried: a fork's `upstream` (the lab's repository)
# first, then the remote's default branch.
LOCAL_BASES = ("upstream/main", "origin/HEAD", "origin/main", "origin/master")
# A base fetched longer ago than this may not be the main the PR will be judged against.
STALE_AFTER = timedelta(days=3)


@dataclass(frozen=True, kw_only=True)
class Asked:
    """What the command read from its arguments, the environment and the event."""

    repo: Path
    now: datetime
    base: str | None = None  # the PR's base (--base): a PR check; None: a local run
    every: bool = False  # --all: every request on its own, no change
    author: str | None = None  # --author, or the event's PR author
    # Who the member may be on a local run, in the order tried, each with how it was found
    # (SSP_AUTHOR, gh's login); git's `github.user` is read here, between the two.
    env_author: str | None = None
    gh_login: str | None = None
    pusher: str | None = None  # who pushed (the event's sender)
    pull: int | None = None  # the PR's number: its commits' people are read from GitHub
    pull_commits: Callable[[int], Sequence[CommitBy]] | None = None
    snapshot: Path | None = None  # the published state, for the preview


@dataclass(frozen=True, kw_only=True)
class Judged:
    """The verdict, the changes it judged, the base it judged them against (None for --all)
    and the preview (None unless a snapshot was given)."""

    result: Validation
    changes: tuple[FileChange, ...]
    base: str | None
    preview: preview.Preview | None


def judge(asked: Asked) -> Judged:
    """A pull request (base given), the member's change (in a clone), or every request; with
    a snapshot, judged again knowing what the host holds, and previewed."""
    result, changes, base = _judge(asked)
    shown = None
    if asked.snapshot is not None:
        from provisioner.status import snapshot as snapshots  # noqa: PLC0415  (see the imports)

        read = _read_snapshot(asked.snapshot, result, asked.now)
        if read[0] is not None:
            # What the host holds (a retired container's name, an account's login, ssp's
            # images) stays its owners': judged again knowing it.
            result, changes, base = _judge(asked, snapshots.held(read[0]))
        shown = _preview(asked, read, result, changes, base)
        problems = sorted([*result.problems, *shown.problems], key=Problem.sort_key)
        result = replace(result, problems=tuple(problems))
    return Judged(result=result, changes=tuple(changes), base=base, preview=shown)


def _judge(
    asked: Asked, held: Held | None = None
) -> tuple[Validation, list[FileChange], str | None]:
    """The verdict, its changes and the base they were judged against (None for --all).
    HELD: what the host holds, from its snapshot."""
    if asked.base:
        return (*_check_pull(asked, asked.base, held=held), asked.base)
    base = None if asked.every else _local_base(asked.repo)
    if base is not None:
        return (*_check_local(asked, base, held), base)
    return validate_tree(gitfiles.worktree(asked.repo), asked.now, held=held), [], None


def _commit_people(asked: Asked, base: str) -> tuple[dict[str, str], list[Problem]]:
    """Who wrote and committed what the merge brings in, as GitHub's API reports it."""
    if asked.pull is None or asked.pull_commits is None:  # a local run: only the author
        return {}, []
    try:
        listed = asked.pull_commits(asked.pull)
    except GithubError as e:
        raise UsageError(f"cannot read who wrote the commits of #{asked.pull}: {e}") from e
    in_git = gitrepo.new_commits(asked.repo, base, "HEAD")
    return commit_people(listed, in_git)


def _merge_problems(conflicts: Sequence[str], base: str) -> list[Problem]:
    return [
        Problem(
            path,
            Position(1, 1),
            "merge.conflict",
            f"this file conflicts with the base ({base}): merge or rebase the base into the PR "
            "and push again; the check judges what the merge would make",
        )
        for path in conflicts
    ]


def _check_pull(
    asked: Asked, base: str, head_rev: str = "HEAD", held: Held | None = None
) -> tuple[Validation, list[FileChange]]:
    author = asked.author
    if not author:
        raise UsageError("--base needs --author LOGIN (or GITHUB_EVENT_PATH of a pull_request)")
    # The author is named in findings ("x may not change bob's request"): only a real login.
    if len(author) > LOGIN_MAX or not re.fullmatch(LOGIN_PATTERN, author):
        raise UsageError("the PR author is not a GitHub login (letters, digits and '-')")
    repo = asked.repo
    base_tree = gitfiles.revision(repo, base)
    base_config, problems = load_config(
        base_tree.files.get("config/policy.yaml"), base_tree.files.get("config/hosts.yaml")
    )
    if base_config is None:
        raise UsageError(
            f"the base ({base}) has no valid config/policy.yaml: "
            + "; ".join(str(p) for p in problems[:3])
        )
    # What is judged is what merging would make, built from every merge base, and what it
    # changes on the base: a criss-cross history cannot hide a change behind one merge base.
    merged = gitrepo.merge(repo, base, head_rev)
    changes = gitrepo.changes(repo, base, merged.tree)
    head = gitfiles.revision(repo, merged.tree)
    others: dict[str, str] = {}
    if asked.pusher:
        others[asked.pusher] = "pushed to the PR"
    people, extra = _commit_people(asked, base)
    for login, why in people.items():
        others.setdefault(login, why)
    extra += _merge_problems(merged.conflicts, base)
    notes: tuple[str, ...] = ()
    bases = gitrepo.merge_bases(repo, base, head_rev)
    if len(bases) > 1:
        notes += (f"the PR and the base have {len(bases)} merge bases; judged on the merge",)
    admins = frozenset(base_config.policy.admins)
    # What the merge is compared with: the base as it is now, so that the base having moved
    # on since the PR branched is neither blamed on the PR nor credited to it.
    result = validate_pull(
        head, changes, author, admins, asked.now, before=base_tree, others=others, held=held
    )
    return (
        replace(
            result,
            problems=tuple(sorted([*result.problems, *extra], key=Problem.sort_key)),
            notes=(*result.notes, *notes),
        ),
        changes,
    )


def _local_base(repo: Path) -> str | None:
    if not (repo / ".git").exists():
        return None
    found = next((ref for ref in LOCAL_BASES if gitrepo.ref_exists(repo, ref)), None)
    return None if found is None else gitrepo.branch_name(repo, found)


def _local_author(asked: Asked, changed: Sequence[FileChange]) -> tuple[str, str]:
    """Who the member is, and how that was found (said in a note)."""
    if asked.author:
        return asked.author, "--author"
    for found, how in (
        (asked.env_author, "SSP_AUTHOR"),
        (gitrepo.config_value(asked.repo, "github.user"), "git config github.user"),
        (asked.gh_login, "gh's login"),
    ):
        if found:
            return found, how
    owners = sorted({c.owner_folder for c in changed if c.owner_folder})
    if len(owners) == 1:
        return owners[0], "the folder you changed; say --author LOGIN if you are someone else"
    raise UsageError(
        "who are you on GitHub? say --author LOGIN (or `git config github.user LOGIN`), "
        "or use --all to check every request on its own"
    )


def _check_local(
    asked: Asked, base: str, held: Held | None = None
) -> tuple[Validation, list[FileChange]]:
    """The member's change, committed or not, judged as its pull request will be."""
    head = gitrepo.worktree_commit(asked.repo)
    changed = gitrepo.changes(asked.repo, base, head)
    stale = _stale_note(asked, base)
    if not changed:  # nothing of the member's to judge: say how main stands instead
        result = validate_tree(gitfiles.worktree(asked.repo), asked.now, held=held)
        note = f"nothing changed against {base}; every request checked as it is (as --all)"
        return replace(result, notes=(note, *stale, *result.notes)), []
    author, how = _local_author(asked, changed)
    local = replace(asked, author=author, pull=None, pusher=None)
    result, changes = _check_pull(local, base, head_rev=head, held=held)
    note = f"judged as your pull request into {base} will be, as {author} ({how})"
    return replace(result, notes=(note, *stale, *result.notes)), changes


def _stale_note(asked: Asked, base: str) -> tuple[str, ...]:
    """A note when the clone's copy of main may be old: the PR is judged against the real one."""
    when = gitrepo.fetched_at(asked.repo, base)
    if when is None or asked.now - when <= STALE_AFTER:
        return ()
    remote, days = base.split("/", 1)[0], (asked.now - when).days
    return (
        f"{base} was last fetched {days} days ago; `git fetch {remote}` first to be judged "
        "against today's main",
    )


def _read_snapshot(path: Path, result: Validation, now: datetime) -> tuple[Snapshot | None, str]:
    """The snapshot and where it came from, or None and why it cannot be used.

    The status page beside it (index.html) must be the one its digest names: the branch is
    data anyone with push access could have written.
    """
    from provisioner.status import preview  # noqa: PLC0415  (see the imports)
    from provisioner.status import snapshot as snapshots  # noqa: PLC0415

    if result.config is None:
        return None, "config/ is not valid after this PR, so nothing can be planned"
    hours = result.config.policy.snapshot.max_age_hours
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, "no state snapshot was found (the host has not published one yet)"
    except OSError as e:
        return None, f"the state snapshot could not be read ({e.strerror or e})"
    try:
        page: bytes | None = path.with_name(snapshots.PAGE_FILE).read_bytes()
    except OSError:
        page = None
    try:
        found = snapshots.parse(raw, now, timedelta(hours=hours))
        snapshots.check_page(found, page)
    except snapshots.SnapshotError as e:
        return None, f"the published state snapshot cannot be used: {e}"
    return found, preview.describe(found, "the published snapshot", now)


def _preview(
    asked: Asked,
    read: tuple[Snapshot | None, str],
    result: Validation,
    changes: Sequence[FileChange],
    base: str | None,
) -> preview.Preview:
    """What apply would do with the change's requests now, from the snapshot READ (or why
    there is none)."""
    from provisioner.status import preview  # noqa: PLC0415  (see the imports)

    if base is None:
        return preview.Preview(
            "the preview is of a change: run it in a clone or with --base (not --all)",
            usable=False,
            rows=(),
        )
    found, source = read
    before_tree = gitfiles.revision(asked.repo, base)
    before = {}
    for change in changes:
        raw = before_tree.files.get(change.path)
        if raw is not None and change.status != "A":
            loaded, _ = load_request(change.path, raw)
            if loaded is not None:
                before[change.path] = loaded
    members = validationreport.summary_data(result, changes)["members"]
    quotas = {m.login: f"{m.gpus} GPUs, {m.containers} containers, {m.disk} disk" for m in members}
    if found is not None:
        try:
            return _shown(preview.build(result, changes, before, found, source, quotas, asked.now))
        # The preview is advice from data a member could have written: whatever in it trips
        # planning or rendering is a note, and the verdict stays validation's alone.
        except Exception as e:
            source = (
                f"the published state snapshot cannot be used ({type(e).__name__} in the preview)"
            )
    return preview.build(result, changes, before, None, source, quotas, asked.now)


def _shown(made: preview.Preview) -> preview.Preview:
    """MADE, once every form the command prints it in has been made from it without error."""
    from provisioner.status import preview  # noqa: PLC0415  (see the imports)

    for text in (
        *preview.text_lines(made),
        json.dumps(preview.to_dict(made), ensure_ascii=False),
        preview.markdown(made),
    ):
        text.encode("utf-8")
    return made
