"""The git adapter's history side: merge bases and test merges, what a PR changed and who
committed it, how old each request is and when it first landed, refs and the checkout's top
level.

git runs with argv lists (never a shell); `git` raises `UsageError` with git's own message.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from provisioner.values.changes import FileChange
from provisioner.values.errors import UsageError
from provisioner.values.waitlist import Landed

# What validation and apply read from a checkout: the request files and the lab's config.
ROOTS = ("requests", "config")


def git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], input=stdin, capture_output=True, check=False
        )
    except FileNotFoundError as e:
        raise UsageError("git is not installed") from e
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UsageError(f"git {args[0]}: {message[-1] if message else 'failed'}")
    return done.stdout


def merge_bases(repo: Path, base: str, head: str = "HEAD") -> list[str]:
    """Every merge base of `base` and `head` (a criss-cross history has more than one)."""
    return git(repo, "merge-base", "--all", base, head).decode().split()


@dataclass(frozen=True)
class Merge:
    """What merging `head` into `base` gives: the tree, and the paths that conflict."""

    tree: str
    conflicts: tuple[str, ...] = ()


def merge(repo: Path, base: str, head: str = "HEAD") -> Merge:
    """The tree a merge of `head` into `base` would make, built the way `git merge` does from
    EVERY merge base (a virtual one when there are several), so nothing a second merge base
    brings in is missed. Nothing is checked out or committed."""
    try:
        out = _git_status(repo, "merge-tree", "--write-tree", "-z", "--name-only", base, head)
    except _TooOldError:
        return _merge_in_worktree(repo, base, head)
    # Clean: "<tree>\0". Conflicts (exit 1): "<tree>\0<path>\0...\0\0<messages>".
    head_part = out.split(b"\0\0", 1)[0]
    tree, *paths = head_part.split(b"\0")
    return Merge(
        tree.decode().strip(),
        tuple(sorted({p.decode("utf-8", "replace") for p in paths if p})),
    )


class _TooOldError(Exception):
    """This git has no `merge-tree --write-tree` (before 2.38)."""


def _git_status(repo: Path, *args: str) -> bytes:
    """`git ARGS`, where exit 1 means conflicts (the output still holds the tree)."""
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    except FileNotFoundError as e:
        raise UsageError("git is not installed") from e
    if done.returncode in (0, 1) and done.stdout:
        return done.stdout
    if b"write-tree" in done.stderr or done.returncode == 129:
        raise _TooOldError
    message = done.stderr.decode("utf-8", "replace").strip().splitlines()
    raise UsageError(f"git {args[0]}: {message[-1] if message else 'failed'}")


def _merge_in_worktree(repo: Path, base: str, head: str) -> Merge:
    """The same merge for an older git: in a temporary worktree (hooks off), then removed."""
    # resolved here: inside the temporary worktree, HEAD is the base
    head = head_sha(repo, head)
    with tempfile.TemporaryDirectory(prefix="ssp-merge-") as scratch:
        where = Path(scratch) / "merge"
        git(repo, "worktree", "add", "-q", "--detach", str(where), base)
        try:
            done = subprocess.run(
                [
                    "git",
                    "-C",
                    str(where),
                    "-c",
                    "core.hooksPath=/dev/null",
                    "-c",
                    "user.name=ssp",
                    "-c",
                    "user.email=ssp@invalid",
                    "merge",
                    "-q",
                    "--no-commit",
                    "--no-ff",
                    head,
                ],
                capture_output=True,
                check=False,
            )
            conflicts: tuple[str, ...] = ()
            if done.returncode != 0:
                raw = git(where, "diff", "--name-only", "-z", "--diff-filter=U")
                conflicts = tuple(
                    sorted(p.decode("utf-8", "replace") for p in raw.split(b"\0") if p)
                )
                if not conflicts:
                    message = done.stderr.decode("utf-8", "replace").strip().splitlines()
                    raise UsageError(f"git merge: {message[-1] if message else 'failed'}")
                git(where, "add", "-A")
            tree = git(where, "write-tree").decode().strip()
        finally:
            git(repo, "worktree", "remove", "--force", str(where))
    return Merge(tree, conflicts)


def changes(repo: Path, base: str, head: str = "HEAD") -> list[FileChange]:
    """Paths changed from `base` to `head` (commits or trees); renames split in two.

    For a pull request, `head` is the tree of the merge (see `merge`): what merging would
    change on the base, whatever the merge bases, is exactly what the PR must be allowed."""
    raw = git(repo, "diff", "--raw", "--no-renames", "-z", base, head)
    fields = raw.split(b"\0")
    out = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta:
            continue
        status = meta.decode().split()[-1][0]
        out.append(FileChange("M" if status in "MT" else status, path.decode("utf-8", "replace")))
    return out


def new_commits(repo: Path, base: str, head: str = "HEAD") -> list[str]:
    """The commits a merge of `head` into `base` brings in (on `head`, not on `base`)."""
    return git(repo, "rev-list", head, "--not", base).decode().split()


def head_sha(repo: Path, rev: str = "HEAD") -> str:
    return git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()


def ages(repo: Path, rev: str = "HEAD") -> dict[str, int]:
    """How new each request file's current form is on `rev`: the place, counted from the
    oldest (1), of the commit on the first-parent history of `rev` that last changed it.

    First-parent history is `main`'s own sequence of merges (and direct commits), so this is
    merge order, whatever dates the PR's own commits carry; a merge counts as changing what
    its PR changed. Apply refuses competing requests newest first by it.

    A shallow clone has no history to count: every file would look as old as every other,
    path order would decide in place of merge order, and a later pass could reverse what
    apply decided (a container apply refused over a quota made by `maintain`). So a shallow
    clone is refused (UsageError) rather than judged: every job that plans fetches the
    whole history (actions/checkout's `fetch-depth: 0`).
    """
    if git(repo, "rev-parse", "--is-shallow-repository").strip() == b"true":
        raise UsageError(
            f"{repo} is a shallow clone: which competing request is newest depends on main's "
            "whole history, so nothing is judged from it; fetch it all (`git fetch "
            "--unshallow`, or `fetch-depth: 0` for actions/checkout) and run again"
        )
    raw = git(
        repo,
        "log",
        "--first-parent",
        "--diff-merges=first-parent",
        "--name-only",
        "-z",
        "--format=%x01",
        rev,
        "--",
        "requests",
    )
    commits = raw.split(b"\x01")[1:]  # newest first
    found: dict[str, int] = {}
    for i, chunk in enumerate(commits):
        for name in chunk.split(b"\0"):
            path = name.strip(b"\n").decode("utf-8", "replace")
            if path:
                found.setdefault(path, len(commits) - i)
    return found


def landings(repo: Path, rev: str = "HEAD") -> dict[str, Landed]:
    """When each request file on `rev` first landed on main, in its current life: the
    newest commit on the first-parent history of `rev` that added it, and that commit's place
    among those that added request files (1: the oldest). The waitlist's merge order.

    Why this source: first-parent history is main's own sequence of merges, so the order is
    the order PRs were merged, whatever dates their commits carry (author and committer dates
    are whatever the member's clock said; a rebase rewrites them) and without asking GitHub
    (merged_at needs the network and a PR per file; a direct push has none). The ADD, not the
    last change (`ages`): editing a waiting request (a typo, a later `expires`) keeps its
    place; deleting and adding it again is a new request that joins at the back. A merge
    counts as adding what its PR added. Callers read `ages` first, which refuses a shallow
    clone (whose history would make every file look equally old).
    """
    raw = git(
        repo,
        "log",
        "--first-parent",
        "--diff-merges=first-parent",
        "--diff-filter=A",
        "--name-only",
        "-z",
        "--format=%x01%H",
        rev,
        "--",
        "requests",
    )
    commits = raw.split(b"\x01")[1:]  # newest first: "<sha>\0\n<path>\0<path>\0..."
    found: dict[str, Landed] = {}
    for i, chunk in enumerate(commits):
        sha, *names = chunk.split(b"\0")
        for name in names:
            path = name.strip(b"\n").decode("utf-8", "replace")
            if path:
                found.setdefault(path, Landed(len(commits) - i, sha.decode().strip()))
    return found


def worktree_commit(repo: Path) -> str:
    """A commit of the working tree as it is now (tracked and untracked files git does not
    ignore), on top of HEAD, made in a throwaway index: nothing is staged or committed on any
    branch. `ssp validate` judges a member's uncommitted change with it as a PR would be."""
    with tempfile.TemporaryDirectory(prefix="ssp-index-") as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}

        def in_index(*args: str) -> bytes:
            done = subprocess.run(
                ["git", "-C", str(repo), *args], env=env, capture_output=True, check=False
            )
            if done.returncode != 0:
                message = done.stderr.decode("utf-8", "replace").strip().splitlines()
                raise UsageError(f"git {args[0]}: {message[-1] if message else 'failed'}")
            return done.stdout

        in_index("read-tree", "HEAD")
        in_index("add", "--all", "--", *[r for r in ROOTS if (repo / r).exists()])
        tree = in_index("write-tree").decode().strip()
        identity = ["-c", "user.name=ssp", "-c", "user.email=ssp@localhost"]
        return (
            in_index(*identity, "commit-tree", tree, "-p", "HEAD", "-m", "working tree")
            .decode()
            .strip()
        )


def ref_exists(repo: Path, ref: str) -> bool:
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def branch_name(repo: Path, ref: str) -> str:
    """`origin/HEAD` → `origin/main`: the branch a symbolic ref points at (else `ref`)."""
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--abbrev-ref", ref], capture_output=True, check=False
    )
    name = done.stdout.decode("utf-8", "replace").strip()
    return name if done.returncode == 0 and name and name != "HEAD" else ref


def config_value(repo: Path, key: str) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(repo), "config", "--get", key], capture_output=True, check=False
    )
    value = done.stdout.decode("utf-8", "replace").strip()
    return value if done.returncode == 0 and value else None


def fetched_at(repo: Path, ref: str) -> datetime | None:
    """When this clone last brought REF (a remote branch) up to date: the later of its last
    fetch (FETCH_HEAD's time) and its reflog's last entry (a clone writes no FETCH_HEAD; a fetch
    that changed nothing writes no reflog entry). None when git keeps neither."""
    times = []
    # A clone logs only `<remote>/HEAD`; a fetch that moves REF logs REF.
    for logged in {ref, ref.split("/", 1)[0] + "/HEAD"}:
        log = subprocess.run(
            ["git", "-C", str(repo), "log", "-g", "-1", "--format=%ct", logged, "--"],
            capture_output=True,
            check=False,
        )
        stamp = log.stdout.decode("ascii", "replace").strip()
        if log.returncode == 0 and stamp.isdigit():
            times.append(datetime.fromtimestamp(int(stamp), tz=UTC))
    where = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--git-path", "FETCH_HEAD"],
        capture_output=True,
        check=False,
    )
    if where.returncode == 0:
        path = Path(where.stdout.decode("utf-8", "replace").strip())
        path = path if path.is_absolute() else repo / path
        with contextlib.suppress(OSError):
            times.append(datetime.fromtimestamp(path.stat().st_mtime, tz=UTC))
    return max(times) if times else None


def remote_url(repo: Path, remote: str = "origin") -> str | None:
    done = subprocess.run(
        ["git", "-C", str(repo), "remote", "get-url", remote], capture_output=True, check=False
    )
    url = done.stdout.decode("utf-8", "replace").strip()
    return url if done.returncode == 0 and url else None
