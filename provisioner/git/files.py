"""The git adapter: a revision's (or the working tree's) request and config files as a Tree.

PR validation reads the head's files as git blobs, never through the checkout: a symlink in
a PR must not make the validator read a host file, so only regular blobs (mode 100644) are
read and everything else is refused with a Problem. Renames are seen as a delete plus an
add, so moving someone else's file is judged like deleting it. git runs with argv lists.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from provisioner.git.history import ROOTS, git
from provisioner.values.errors import SspError
from provisioner.values.problems import Position, Problem
from provisioner.values.requestpaths import LAYOUT, under_requests
from provisioner.values.tree import MAX_BYTES, Tree

_KINDS = {
    "120000": "a symbolic link (never followed)",
    "160000": "a git submodule",
    "100755": "an executable file",
    "040000": "a folder",
}


def _wanted(path: str) -> bool:
    return under_requests(path) or path in ("config/policy.yaml", "config/hosts.yaml")


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
    # -t lists the folders too: they count towards MAX_ENTRIES exactly as on disk (see
    # _counted), so a tree the PR check accepts is one that `main` reads whole.
    listing = git(repo, "ls-tree", "-r", "-t", "-z", "-l", "--full-tree", rev, "--", *ROOTS)
    wanted: list[tuple[str, str]] = []
    problems: list[Problem] = []
    deep: set[str] = set()
    seen = 0
    for entry in filter(None, listing.split(b"\0")):
        meta, _, raw_path = entry.partition(b"\t")
        mode, kind, sha, size = meta.decode().split()
        path = raw_path.decode("utf-8", "replace")
        parts = path.split("/")
        if _counted(parts):
            seen += 1
            if seen > MAX_ENTRIES:
                problems.append(_too_many("requests"))
                break
        if kind == "tree":
            continue
        # `requests` or `config` itself as a link or submodule would hide every file under it
        if path in ROOTS and mode != "100644":
            problems.append(_refuse(path, _KINDS.get(mode, f"mode {mode}")))
            continue
        if not _wanted(path):
            continue
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
    out = git(repo, "cat-file", "--batch", stdin="".join(f"{s}\n" for _, s in wanted).encode())
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
# The bound is one bound: the PR check (revision) and `main`'s checkout (worktree) count the
# same entries, files and folders alike. When they counted differently, a PR of 10,500
# folders passed the check and then stopped apply partway through requests/.
MAX_DEPTH = 3  # folders below requests/: <login>/ and one more, shown as a layout problem
MAX_ENTRIES = 20_000


def _counted(parts: list[str]) -> bool:
    """Whether an entry counts towards MAX_ENTRIES: everything under requests/ that the walk
    lists, i.e. in a folder at most MAX_DEPTH deep (the too-deep folder itself counts, what
    is inside it does not, since it is never entered)."""
    return parts[0] == "requests" and 2 <= len(parts) <= MAX_DEPTH + 2


def _too_deep(path: str, what: str = "folder") -> Problem:
    return Problem(
        path,
        Position(1, 1),
        "tree.depth",
        f"this {what} is nested too deep to be read: request files live at {LAYOUT}",
    )


def _too_many(path: str) -> Problem:
    return Problem(
        path,
        Position(1, 1),
        "tree.size",
        f"more than {MAX_ENTRIES} files and folders under requests/; the rest were not read, "
        "and a tree not read whole is never acted on (apply, maintain and plan change nothing)",
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
    recursion: at most MAX_DEPTH folders deep and MAX_ENTRIES entries in all. A folder that
    cannot be listed raises SspError: the tree would not be read whole."""
    found: list[Path] = []
    problems: list[Problem] = []
    stack = [(top, 0)]
    seen = 0
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as e:
            # Skipping it would make every request in it look removed to apply and maintain.
            raise SspError(
                f"{_shown(repo, folder)} could not be read ({e.strerror or e}); a tree not "
                "read whole is never acted on"
            ) from e
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
