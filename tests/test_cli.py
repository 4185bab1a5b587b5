"""The command line itself: where --repo may go, finding the checkout, help and `ssp explain`.

Everything runs the real `ssp` in-process against real files (and a real git repository);
nothing here is a stand-in.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CONTAINER_LINES, GitRepo, run_cli, sample_repo, valid_request

from provisioner.commands import NAMES

BAD = "requests/alice/alice-box.yaml"


def bad_repo(tmp_path: Path) -> Path:
    return sample_repo(tmp_path / "repo", {BAD: valid_request(desktop="yes")})


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_repo_may_come_before_or_after_the_command(tmp_path: Path, before: bool) -> None:
    repo = str(bad_repo(tmp_path))
    argv = (
        ("--repo", repo, "validate", "--all") if before else ("validate", "--all", "--repo", repo)
    )
    result = run_cli(*argv)
    assert result.code == 1, result.both
    assert f"{BAD}:{CONTAINER_LINES['desktop']}:10: error: desktop" in result.out


def test_from_a_subdirectory_the_git_checkout_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = GitRepo.create(tmp_path / "repo", {BAD: valid_request(desktop="yes")})
    monkeypatch.chdir(repo.root / "requests" / "alice")
    result = run_cli("validate", "--all")
    assert result.code == 1, result.both
    assert f"{BAD}:{CONTAINER_LINES['desktop']}:10: error: desktop" in result.out
    assert "config.missing" not in result.both


def test_outside_any_checkout_it_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("validate", "--all")
    assert result.code == 1
    assert "config/policy.yaml:1:1: error: file is missing [config.missing]" in result.out


@pytest.mark.parametrize("command", [*NAMES, "host init"])
def test_every_command_s_help_ends_with_examples_of_itself(command: str) -> None:
    result = run_cli(*command.split(), "--help")
    assert result.code == 0, result.both
    section = result.out.split("\nexamples:\n", 1)
    assert len(section) == 2, f"ssp {command} --help has no examples section"
    first = section[1].splitlines()[0].strip()
    assert first.removeprefix("sudo ").startswith(f"ssp {command.split(maxsplit=1)[0]}"), first
