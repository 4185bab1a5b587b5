"""Plain `ssp validate` in a member's clone judges their change as the pull request check will.

A real clone of a real "lab" repository: main holds the sample config and bob's container;
alice edits her own folder and runs plain `ssp validate`, without committing. The verdict,
the rule and the file each finding lands on must be the same as the PR check's
(`ssp validate --base origin/main --author alice` on the committed change), and every
finding lands on alice's own file, even when the clash is with bob's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ENV, GitRepo, key, run_cli, valid_request, validate

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

BOB = "requests/bob/bob-box.yaml"


def clone(tmp_path: Path) -> GitRepo:
    """The lab's repository with bob's container on main, and alice's clone of it."""
    lab = GitRepo.create(tmp_path / "lab", {BOB: valid_request(owner="bob", gpus="1", shares="[]")})
    subprocess.run(["git", "clone", "-q", str(lab.root), str(tmp_path / "alice")], check=True)
    mine = GitRepo(tmp_path / "alice")
    mine.git("config", "github.user", "alice")
    return mine


def write(repo: GitRepo, path: str, text: str) -> None:
    (repo.root / path).parent.mkdir(parents=True, exist_ok=True)
    (repo.root / path).write_text(text, encoding="utf-8")


def findings(out: str) -> set[tuple[str, str]]:
    return {(p["path"], p["rule"]) for p in json.loads(out)["problems"] if p["severity"] == "error"}


CASES = {
    "a past expires": {
        "requests/alice/alice-box.yaml": valid_request(expires="2026-01-31", shares="[]")
    },
    "a name bob has": {"requests/alice/bob-box.yaml": valid_request(name="bob-box", shares="[]")},
    "bob's key": {
        "requests/alice/alice-box.yaml": valid_request(ssh_keys=[key("bob")], shares="[]")
    },
    "over alice's quota": {
        f"requests/alice/alice-{n}.yaml": valid_request(name=f"alice-{n}", gpus="0", shares="[]")
        for n in ("a", "b", "c")
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plain_validate_reports_on_the_members_own_file_as_the_pr_check_does(
    tmp_path: Path, case: str
) -> None:
    repo = clone(tmp_path)
    for path, text in CASES[case].items():
        write(repo, path, text)
    # Not committed: plain `ssp validate` judges the working tree as the PR would be.
    local = validate(repo.root, "--format", "json")
    assert local.code == 1, local.both
    mine = findings(local.out)
    assert mine, local.both
    assert all(path.startswith("requests/alice/") for path, _rule in mine), mine
    # The PR check on the same change, committed on a branch.
    repo.branch("alice-change")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "my request")
    pr = validate(repo.root, "--base", "origin/main", "--author", "alice", "--format", "json")
    assert pr.code == 1
    assert findings(pr.out) == mine


def test_a_good_change_passes_and_says_how_it_was_judged(tmp_path: Path) -> None:
    repo = clone(tmp_path)
    write(repo, "requests/alice/alice-box.yaml", valid_request(shares="[]"))
    done = validate(repo.root)
    assert done.code == 0, done.both
    assert "judged as your pull request into origin/main will be, as alice (git config " \
        "github.user)" in done.both  # fmt: skip


def test_a_problem_already_on_main_is_a_note_not_the_members_fault(tmp_path: Path) -> None:
    repo = clone(tmp_path)
    # main already holds a request with a past expires (it was fine when merged)
    lab = GitRepo(tmp_path / "lab")
    lab.commit({"requests/bob/bob-old.yaml": valid_request(
        owner="bob", name="bob-old", expires="2026-01-31", gpus="0", shares="[]")})  # fmt: skip
    repo.git("pull", "-q", "--ff-only")
    write(repo, "requests/alice/alice-box.yaml", valid_request(shares="[]"))
    done = validate(repo.root)
    assert done.code == 0, done.both
    assert "1 finding(s) in files this PR does not touch are not shown" in done.both
    every = validate(repo.root, "--all")  # the admin's view: every request on its own
    assert "requests/bob/bob-old.yaml:16:10: warning: the lease ended" in every.out


def test_the_author_is_the_folder_changed_when_git_does_not_know_it(tmp_path: Path) -> None:
    repo = clone(tmp_path)
    repo.git("config", "--unset", "github.user")
    write(repo, "requests/alice/alice-box.yaml", valid_request(shares="[]"))
    env = {**ENV, "HOME": str(tmp_path)}  # no gh login either
    done = validate(repo.root, env=env)
    assert done.code == 0, done.both
    assert "as alice (the folder you changed; say --author LOGIN" in done.both
    # editing someone else's file: the PR check would refuse it, and so does this
    write(repo, BOB, valid_request(owner="bob", gpus="2", shares="[]"))
    mixed = validate(repo.root, "--author", "alice", env=env)
    assert mixed.code == 1 and "alice may not change bob's request" in mixed.both


def test_outside_a_clone_it_checks_every_request(tmp_path: Path) -> None:
    repo = clone(tmp_path)
    shutil.rmtree(repo.root / ".git")
    write(repo, "requests/alice/alice-box.yaml", valid_request(shares="[]"))
    done = validate(repo.root)
    assert done.code == 0, done.both
    assert "judged as your pull request" not in done.both


def _template_commands() -> list[list[str]]:
    """The `ssp …` lines of the pull request template's English steps, as a member copies
    them (placeholders filled in), each split as a shell would."""
    import shlex  # noqa: PLC0415

    text = (Path(__file__).resolve().parents[1] / ".github" / "pull_request_template.md").read_text(
        encoding="utf-8"
    )
    english = text.split("## 中文")[0]
    filled = {"<login>": "alice", "<name>": "alice-thesis", "<what it is for>": "Thesis runs"}
    out = []
    for raw in english.splitlines():
        line = raw.strip()
        if line.startswith("ssp "):
            for placeholder, value in filled.items():
                line = line.replace(placeholder, value)
            out.append(shlex.split(line))
    return out


def test_the_pull_request_templates_steps_work_as_written_in_a_members_clone(
    tmp_path: Path,
) -> None:
    repo = clone(tmp_path)
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    (tmp_path / "home" / ".ssh" / "id_ed25519.pub").write_text(key("alice") + "\n")
    env = {**ENV, "HOME": str(tmp_path / "home")}
    commands = _template_commands()
    assert [c[:2] for c in commands] == [["ssp", "new"], ["ssp", "validate"]]
    for command in commands:
        done = run_cli(*command[1:], "--repo", str(repo.root), env=env)
        assert done.code == 0, f"{' '.join(command)}: {done.both}"
    assert (repo.root / "requests" / "alice" / "alice-thesis.yaml").is_file()
    assert "ok: " in done.both  # the member sees the check pass, not "Skipped"


def test_ssp_new_finds_the_owner_as_validate_does(tmp_path: Path) -> None:
    repo = clone(tmp_path)  # git config github.user alice
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    (tmp_path / "home" / ".ssh" / "id_ed25519.pub").write_text(key("alice") + "\n")
    env = {**ENV, "HOME": str(tmp_path / "home")}
    done = run_cli(
        "new", "container", "--name", "alice-x", "--purpose", "Thesis runs",
        "--repo", str(repo.root), env=env,
    )  # fmt: skip
    assert done.code == 0, done.both
    assert "owner alice (from git config" in done.err
    assert "owner: alice" in (repo.root / "requests/alice/alice-x.yaml").read_text()
    repo.git("config", "--unset", "github.user")
    nobody = run_cli(
        "new", "container", "--name", "alice-y", "--purpose", "Thesis runs",
        "--repo", str(repo.root), env=env,
    )  # fmt: skip
    assert nobody.code == 2
    assert "who are you on GitHub? say --owner LOGIN" in nobody.err


def test_with_nothing_changed_it_says_so_and_how_main_stands(tmp_path: Path) -> None:
    repo = clone(tmp_path)
    repo.git("config", "--unset", "github.user")
    env = {**ENV, "HOME": str(tmp_path)}  # nobody known: no login is needed to say this
    done = validate(repo.root, env=env)
    assert done.code == 0, done.both
    assert "nothing changed against origin/main; every request checked as it is" in done.both
    assert "who are you" not in done.both


def test_a_copy_of_main_fetched_long_ago_is_mentioned(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    repo = clone(tmp_path)
    write(repo, "requests/alice/alice-box.yaml", valid_request(shares="[]"))
    later = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    done = validate(repo.root, env={"SSP_NOW": later})
    assert "origin/main was last fetched 10 days ago; `git fetch origin` first" in done.both
    fresh = validate(repo.root)
    assert "last fetched" not in fresh.both
