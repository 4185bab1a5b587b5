"""Walking requests/ is bounded: a folder nested too deep or too many files is a finding, never
a crash. Before, a 1000-deep folder under a member's own folder (holding only a `.gitkeep`)
passed the PR check, and after the merge every `ssp validate`, `plan`, `apply` and the
pre-commit hook died with a RecursionError (exit 3) for everyone.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import GitRepo, run_cli, sample_repo, valid_request, validate

from provisioner.commands import clock, load_for_host
from provisioner.flows.checkout import load_main
from provisioner.git import files as gitfiles

ENV = {"SSP_NOW": "2026-11-28T12:00:00+00:00"}
ALICE = "requests/alice/alice-box.yaml"
DEPTH = 1000


@pytest.fixture
def tmp_deep(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, emptied with `rm -rf` afterwards: pytest's own clean-up (shutil.rmtree)
    recurses once per level and dies on a 1000-deep folder."""
    yield tmp_path
    subprocess.run(["rm", "-rf", "--", str(tmp_path)], check=True)


def deep_folder(root: Path, depth: int = DEPTH) -> Path:
    """requests/alice/d/d/…/d (DEPTH folders) with a .gitkeep at the bottom, made without
    recursion (Path.mkdir(parents=True) itself recurses once per level)."""
    here = Path.cwd()
    try:
        os.chdir(root / "requests" / "alice")
        for _ in range(depth):
            Path("d").mkdir()
            os.chdir("d")
        Path(".gitkeep").write_bytes(b"")
        return Path.cwd()
    finally:
        os.chdir(here)


def test_a_pr_adding_a_1000_deep_folder_is_refused(tmp_path: Path) -> None:
    repo = GitRepo.create(tmp_path / "repo", {ALICE: valid_request()})
    repo.branch("pr")
    # staged through git's index: the checkout never needs the folders
    blob = repo.git("hash-object", "-w", "--stdin").strip()
    deep = "requests/alice/" + "d/" * DEPTH + ".gitkeep"
    repo.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{deep}")
    repo.git("commit", "-q", "-m", "alice: a deep folder")
    result = validate(repo.root, "--base", "main", "--author", "alice", env=ENV)
    assert "Traceback" not in result.both
    assert result.code == 1, result.both
    # on the file itself, so that GitHub annotates it in the PR's diff
    assert f"{deep}:1:1: error: this file is nested too deep to be read" in result.out
    assert "[tree.depth]" in result.out


@pytest.mark.parametrize("depth", [DEPTH, 4])
def test_a_deep_folder_on_disk_is_one_finding_for_validate_and_the_hook(
    tmp_deep: Path, depth: int
) -> None:
    root = sample_repo(tmp_deep / "repo", {ALICE: valid_request()})
    deep_folder(root, depth)
    result = validate(root, env=ENV)
    assert result.code == 1, result.both
    assert result.out.splitlines() == [
        "requests/alice/d/d/d:1:1: error: this folder is nested too deep to be read: request "
        "files live at requests/<your login>/<name>.yaml [tree.depth]"
    ]


def test_apply_and_plan_read_the_deep_tree_as_a_finding_and_keep_the_other_requests(
    tmp_deep: Path,
) -> None:
    # `ssp apply` and `ssp plan` start from load_main: the deep folder is a finding on its
    # own path, and alice's request is still valid (so the rest of main is still applied)
    root = sample_repo(tmp_deep / "repo", {ALICE: valid_request()})
    deep_folder(root)
    validation, _ = load_main(root, clock(ENV))
    assert [p.rule for p in validation.problems] == ["tree.depth"]
    assert [i.path for i in validation.valid] == [ALICE]


def test_too_many_files_stop_the_walk_with_a_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gitfiles, "MAX_ENTRIES", 30)
    files = {f"requests/alice/n{i:03}.txt": "x\n" for i in range(40)}
    root = sample_repo(tmp_path / "repo", files)
    tree = gitfiles.worktree(root)
    assert [p.rule for p in tree.problems] == ["tree.size"]
    assert "more than 30 files and folders" in tree.problems[0].message
    assert len(tree.files) < 40

    repo = GitRepo.create(tmp_path / "git", files)
    from_git = gitfiles.revision(repo.root, "HEAD")
    assert [p.rule for p in from_git.problems] == ["tree.size"]


# --- one bound, in the PR check and on main (issue 22, finding 1) ------------------------------
# The walk of main's checkout counts files *and* folders; the PR check counted files only.
# A member's PR of ~10,500 folders, each holding an ignored `.gitkeep`, passed the check, and
# the next apply stopped reading requests/ partway and retired every request it had not read.


def _folders(count: int) -> dict[str, str]:
    return {f"requests/alice/f{i:05}/.gitkeep": "" for i in range(count)}


@pytest.mark.parametrize(("folders", "crosses"), [(20, True), (5, False)])
def test_the_pr_check_and_main_count_the_same_entries_folders_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folders: int, crosses: bool
) -> None:
    # 20 folders + 20 .gitkeep + alice/ + her request = 42 entries; files alone are 21
    monkeypatch.setattr(gitfiles, "MAX_ENTRIES", 30)
    repo = GitRepo.create(tmp_path / "repo", {ALICE: valid_request()})
    repo.branch("pr")
    repo.commit(_folders(folders), "alice: many folders")
    checked = validate(repo.root, "--base", "main", "--author", "alice", env=ENV)
    on_main = [p.rule for p in gitfiles.worktree(repo.root).problems]
    in_pr = [p.rule for p in gitfiles.revision(repo.root, "HEAD").problems]
    assert on_main == in_pr == (["tree.size"] if crosses else [])
    if crosses:  # the PR that crosses the bound is refused, on one of its own files
        assert checked.code == 1, checked.both
        (line,) = checked.out.splitlines()
        assert line.startswith("requests/alice/f00000/.gitkeep:1:1: error: "), line
        assert "more than 30 files and folders under requests/" in line
        assert line.endswith("[tree.size]")
    else:
        assert checked.code == 0, checked.both


@pytest.mark.parametrize(
    "command", [("apply", "--no-comment"), ("apply", "--dry-run"), ("plan",), ("maintain",)]
)
def test_a_tree_not_read_whole_stops_apply_plan_and_maintain_before_lxd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    # bob's request sorts after alice's folders: a partial read never reaches it, and acting
    # on that read would retire his container and lock his account
    monkeypatch.setattr(gitfiles, "MAX_ENTRIES", 30)
    bob = "requests/bob/bob-box.yaml"
    root = sample_repo(
        tmp_path / "repo",
        {ALICE: valid_request(), bob: valid_request(owner="bob", name="bob-box"), **_folders(20)},
    )
    main = load_for_host(root, ENV)
    assert [p.rule for p in main.blocking] == ["tree.size"]
    # no LXD to reach: the command must stop before it connects, saying why
    env = {**ENV, "LXD_DIR": str(tmp_path / "no-lxd"), "SSP_LOCK": str(tmp_path / "lock")}
    result = run_cli(command[0], "--repo", str(root), *command[1:], env=env)
    assert "Traceback" not in result.both
    assert result.code == 1, result.both
    assert "nothing was changed" in result.err
    assert "the rest were not read" in result.err
    assert "[tree.size]" in result.err


def test_a_folder_that_cannot_be_listed_stops_plan_and_apply_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, the walk skipped a folder it could not list: bob's request in it looked
    # removed. The tests run as root, whom permissions do not stop, so listing fails here
    # the way it would for the runner's user.
    bob = "requests/bob/bob-box.yaml"
    root = sample_repo(
        tmp_path / "repo",
        {ALICE: valid_request(), bob: valid_request(owner="bob", name="bob-box")},
    )
    real = os.scandir

    def scandir(path: str | os.PathLike[str]) -> object:
        if Path(path) == root / "requests" / "bob":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(gitfiles.os, "scandir", scandir)
    env = {**ENV, "LXD_DIR": str(tmp_path / "no-lxd"), "SSP_LOCK": str(tmp_path / "lock")}
    for command in (["plan"], ["apply", "--dry-run"], ["maintain", "--dry-run"]):
        result = run_cli(command[0], "--repo", str(root), *command[1:], env=env)
        assert "Traceback" not in result.both
        assert result.code == 3, (command, result.both)
        assert "requests/bob could not be read (Permission denied)" in result.err
        assert "never acted on" in result.err
