"""The git adapter: a revision's (or the working tree's) request and config files as a Tree.

PR validation reads the head's files as git blobs, never through the checkout: a symlink in
a PR must not make the validator read a host file, so only regular blobs (mode 100644) are
read and everything else is refused with a Problem. Renames are seen as a delete plus an
add, so moving someone else's file is judged like deleting it. git runs with argv lists.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provisioner.authz import Change
from provisioner.errors import UsageError
from provisioner.problems import Position, Problem
from provisioner.sources import MAX_BYTES
from provisioner.tree import Tree

ROOTS = ("requests", "config")
_KINDS = {
    "120000": "a symbolic link (never followed)",
    "160000": "a git submodule",
    "100755": "an executable file",
    "040000": "a folder",
}


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
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


def _wanted(path: str) -> bool:
    return path.startswith("requests/") or path in ("config/policy.yaml", "config/hosts.yaml")


def _refuse(path: str, what: str) -> Problem:
    return Problem(
        path,
        Position(1, 1),
        "file.mode",
        f"{what} is not allowed here; only regular files are read",
    )


def _too_big(path: str, size: int) -> Problem:
    return Problem(
        path, Position(1, 1), "yaml.size", f"file is {size} bytes; the limit is {MAX_BYTES}"
    )


def revision(repo: Path, rev: str) -> Tree:
    """The files of `rev`, read as blobs; links, submodules and executables refused."""
    listing = _git(repo, "ls-tree", "-r", "-z", "-l", "--full-tree", rev, "--", *ROOTS)
    wanted: list[tuple[str, str]] = []
    problems: list[Problem] = []
    deep: set[str] = set()
    for count, entry in enumerate(filter(None, listing.split(b"\0"))):
        if count >= MAX_ENTRIES:
            problems.append(_too_many("requests"))
            break
        meta, _, raw_path = entry.partition(b"\t")
        mode, kind, sha, size = meta.decode().split()
        path = raw_path.decode("utf-8", "replace")
        # `requests` or `config` itself as a link or submodule would hide every file under it
        if path in ROOTS and mode != "100644":
            problems.append(_refuse(path, _KINDS.get(mode, f"mode {mode}")))
            continue
        if not _wanted(path):
            continue
        parts = path.split("/")
        if parts[0] == "requests" and len(parts) > MAX_DEPTH + 2:
            # once per too-deep folder, on a file in it: the PR's diff shows files, not folders
            folder = "/".join(parts[: MAX_DEPTH + 2])
            if folder not in deep:
                deep.add(folder)
                problems.append(_too_deep(path, "file"))
            continue
        if mode != "100644" or kind != "blob":
            problems.append(_refuse(path, _KINDS.get(mode, f"mode {mode}")))
        elif int(size) > MAX_BYTES:
            problems.append(_too_big(path, int(size)))
        else:
            wanted.append((path, sha))
    return Tree(_read_blobs(repo, wanted), tuple(problems))


def _read_blobs(repo: Path, wanted: list[tuple[str, str]]) -> dict[str, bytes]:
    if not wanted:
        return {}
    out = _git(repo, "cat-file", "--batch", stdin="".join(f"{s}\n" for _, s in wanted).encode())
    files: dict[str, bytes] = {}
    offset = 0
    for path, _sha in wanted:
        header_end = out.index(b"\n", offset)
        size = int(out[offset:header_end].split()[2])
        files[path] = out[header_end + 1 : header_end + 1 + size]
        offset = header_end + 1 + size + 1
    return files


# Request files sit at requests/<login>/<name>.yaml. A folder nested deeper is reported once
# and not entered, and a tree with more entries than any lab writes stops the walk with a
# finding: a 1000-deep folder or a million files must not crash or stall every command.
MAX_DEPTH = 3  # folders below requests/: <login>/ and one more, shown as a layout problem
MAX_ENTRIES = 20_000


def _too_deep(path: str, what: str = "folder") -> Problem:
    return Problem(
        path,
        Position(1, 1),
        "tree.depth",
        f"this {what} is nested too deep to be read: request files live at "
        "requests/<your login>/<name>.yaml",
    )


def _too_many(path: str) -> Problem:
    return Problem(
        path,
        Position(1, 1),
        "tree.size",
        f"more than {MAX_ENTRIES} files and folders under requests/; the rest were not read",
    )


def _shown(repo: Path, path: Path) -> str:
    # A file name that is not UTF-8 must still print (and become a finding, not a crash).
    return (
        path.relative_to(repo)
        .as_posix()
        .encode("utf-8", "surrogateescape")
        .decode("utf-8", "replace")
    )


def _walk(repo: Path, top: Path) -> tuple[list[Path], list[Problem]]:
    """Every entry under `top` but folders (links to folders are entries), sorted, without
    recursion: at most MAX_DEPTH folders deep and MAX_ENTRIES entries in all."""
    found: list[Path] = []
    problems: list[Problem] = []
    stack = [(top, 0)]
    seen = 0
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError:
            continue
        below = []
        for entry in entries:
            seen += 1
            if seen > MAX_ENTRIES:
                problems.append(_too_many("requests"))
                return sorted(found), problems
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if depth + 1 > MAX_DEPTH:
                    problems.append(_too_deep(_shown(repo, path)))
                else:
                    below.append((path, depth + 1))
            else:
                found.append(path)
        stack += reversed(below)
    return sorted(found), problems


def worktree(repo: Path) -> Tree:
    """The files on disk (for pre-commit and `ssp validate` without --base)."""
    files: dict[str, bytes] = {}
    problems: list[Problem] = []
    candidates = [repo / "config" / "policy.yaml", repo / "config" / "hosts.yaml"]
    for root in ROOTS:
        if (repo / root).is_symlink():
            problems.append(_refuse(root, _KINDS["120000"]))
            candidates = [c for c in candidates if not c.is_relative_to(repo / root)]
    top = repo / "requests"
    if top.is_dir() and not top.is_symlink():
        found, walked = _walk(repo, top)
        candidates += found
        problems += walked
    for path in candidates:
        rel = _shown(repo, path)
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            problems.append(_refuse(rel, _KINDS["120000"]))
        elif not stat.S_ISREG(info.st_mode):
            problems.append(_refuse(rel, "a special file"))
        elif info.st_size > MAX_BYTES:
            problems.append(_too_big(rel, info.st_size))
        else:
            files[rel] = path.read_bytes()
    return Tree(files, tuple(problems))


def merge_bases(repo: Path, base: str, head: str = "HEAD") -> list[str]:
    """Every merge base of `base` and `head` (a criss-cross history has more than one)."""
    return _git(repo, "merge-base", "--all", base, head).decode().split()


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
        _git(repo, "worktree", "add", "-q", "--detach", str(where), base)
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
                raw = _git(where, "diff", "--name-only", "-z", "--diff-filter=U")
                conflicts = tuple(
                    sorted(p.decode("utf-8", "replace") for p in raw.split(b"\0") if p)
                )
                if not conflicts:
                    message = done.stderr.decode("utf-8", "replace").strip().splitlines()
                    raise UsageError(f"git merge: {message[-1] if message else 'failed'}")
                _git(where, "add", "-A")
            tree = _git(where, "write-tree").decode().strip()
        finally:
            _git(repo, "worktree", "remove", "--force", str(where))
    return Merge(tree, conflicts)


def changes(repo: Path, base: str, head: str = "HEAD") -> list[Change]:
    """Paths changed from `base` to `head` (commits or trees); renames split in two.

    For a pull request, `head` is the tree of the merge (see `merge`): what merging would
    change on the base, whatever the merge bases, is exactly what the PR must be allowed."""
    raw = _git(repo, "diff", "--raw", "--no-renames", "-z", base, head)
    fields = raw.split(b"\0")
    out = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta:
            continue
        status = meta.decode().split()[-1][0]
        out.append(Change("M" if status in "MT" else status, path.decode("utf-8", "replace")))
    return out


def new_commits(repo: Path, base: str, head: str = "HEAD") -> list[str]:
    """The commits a merge of `head` into `base` brings in (on `head`, not on `base`)."""
    return _git(repo, "rev-list", head, "--not", base).decode().split()


def head_sha(repo: Path, rev: str = "HEAD") -> str:
    return _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()


def ages(repo: Path, rev: str = "HEAD") -> dict[str, int]:
    """How new each request file's current form is on `rev`: the place, counted from the
    oldest (1), of the commit on the first-parent history of `rev` that last changed it.

    First-parent history is `main`'s own sequence of merges (and direct commits), so this is
    merge order, whatever dates the PR's own commits carry; a merge counts as changing what
    its PR changed. Apply refuses competing requests newest first by it. A shallow clone has
    no history to count: every file then looks as new as its oldest commit, and ties are
    broken by path (apply.yml fetches the whole history for this).
    """
    raw = _git(
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


def worktree_commit(repo: Path) -> str:
    """A commit of the working tree as it is now (tracked and untracked files git does not
    ignore), on top of HEAD, made in a throwaway index: nothing is staged or committed on any
    branch. `ssp validate` judges a member's uncommitted change with it as a PR would be."""
    with tempfile.TemporaryDirectory(prefix="ssp-index-") as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}

        def git(*args: str) -> bytes:
            done = subprocess.run(
                ["git", "-C", str(repo), *args], env=env, capture_output=True, check=False
            )
            if done.returncode != 0:
                message = done.stderr.decode("utf-8", "replace").strip().splitlines()
                raise UsageError(f"git {args[0]}: {message[-1] if message else 'failed'}")
            return done.stdout

        git("read-tree", "HEAD")
        git("add", "--all", "--", *[r for r in ROOTS if (repo / r).exists()])
        tree = git("write-tree").decode().strip()
        identity = ["-c", "user.name=ssp", "-c", "user.email=ssp@localhost"]
        return (
            git(*identity, "commit-tree", tree, "-p", "HEAD", "-m", "working tree").decode().strip()
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


def top_level(path: Path) -> Path | None:
    """The root of the git checkout holding `path`, or None outside one."""
    done = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, check=False
    )
    return Path(done.stdout.decode().strip()) if done.returncode == 0 else None
