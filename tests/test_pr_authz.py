"""Pull-request checks on real git repositories: who may change what, and how it is reported.

Each test builds a repository whose `main` holds the sample config and some requests, a PR
branch on top, and runs `ssp validate --base main` the way the workflow does. Members change
only `requests/<login>/`; config and everything else is for admins, and admins come from the
base branch. Files are read as git blobs: links, executables and submodules are refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import (
    CliResult,
    Executable,
    GitRepo,
    Submodule,
    Symlink,
    sample,
    valid_request,
    validate,
)

from provisioner.validation.authz import authorize
from provisioner.values.changes import FileChange

ALICE = "requests/alice/alice-box.yaml"
BOB = "requests/bob/bob-common.yaml"
BASE = {ALICE: valid_request(), BOB: valid_request("account")}
ENV = {"SSP_NOW": "2026-11-28T12:00:00+00:00"}


def pr(tmp_path: Path, head: dict, base: dict | None = None) -> GitRepo:
    return GitRepo.pull_request(tmp_path / "repo", BASE if base is None else base, head)


def check(repo: GitRepo, author: str | None, *args: str, env: dict | None = None) -> CliResult:
    extra = ["--author", author] if author else []
    result = validate(repo.root, "--base", "main", *extra, *args, env={**ENV, **(env or {})})
    assert "Traceback" not in result.both
    return result


def findings(out: str) -> list[str]:
    """`path:line:col [rule]` of each finding line (not of the notes that quote one)."""
    found = []
    for line in out.splitlines():
        if line.startswith("note: "):
            continue
        if ": error: " in line or ": warning: " in line:
            where = line.split(": ", 1)[0]
            found.append(f"{where} {line.rsplit(' ', 1)[-1]}")
    return found


# --- members ---------------------------------------------------------------------------------


def test_a_member_adding_their_own_request_passes(tmp_path: Path) -> None:
    new = "requests/alice/alice-two.yaml"
    repo = pr(tmp_path, {new: valid_request(name="alice-two", gpus="0")})
    result = check(repo, "alice")
    assert result.code == 0, result.both
    assert result.out == ""


def test_a_member_changing_and_deleting_their_own_requests_passes(tmp_path: Path) -> None:
    base = {**BASE, "requests/alice/alice-old.yaml": valid_request(name="alice-old", gpus="0")}
    repo = pr(
        tmp_path, {ALICE: valid_request(cpu="8"), "requests/alice/alice-old.yaml": None}, base
    )
    assert check(repo, "alice").code == 0


def test_editing_another_members_request_is_refused_on_that_file(tmp_path: Path) -> None:
    repo = pr(tmp_path, {BOB: valid_request("account", sudo="true")})
    result = check(repo, "alice")
    assert result.code == 1
    assert findings(result.out) == [f"{BOB}:1:1 [authz.other_owner]"]
    assert "alice may not change bob's request" in result.out


def test_adding_a_file_in_another_members_folder_is_refused(tmp_path: Path) -> None:
    # even a request that says `owner: alice`: the folder decides whose it is
    sneaky = "requests/bob/alice-extra.yaml"
    repo = pr(tmp_path, {sneaky: valid_request(name="alice-extra", gpus="0")})
    result = check(repo, "alice")
    assert result.code == 1
    assert f"{sneaky}:1:1 [authz.other_owner]" in findings(result.out)
    assert "alice may not add bob's request" in result.out


def test_renaming_ones_own_file_into_another_members_folder_is_refused(tmp_path: Path) -> None:
    repo = GitRepo.create(tmp_path / "repo", BASE)
    repo.branch("pr")
    repo.move(ALICE, "requests/bob/alice-box.yaml")
    repo.commit({}, "move")
    result = check(repo, "alice")
    assert result.code == 1
    found = findings(result.out)
    # the delete of alice's own file is fine; the add in bob's folder is not
    assert "requests/bob/alice-box.yaml:1:1 [authz.other_owner]" in found
    assert not any(f.startswith(ALICE) for f in found)


def test_renaming_another_members_file_into_ones_own_folder_is_refused(tmp_path: Path) -> None:
    repo = GitRepo.create(tmp_path / "repo", BASE)
    repo.branch("pr")
    repo.move(BOB, "requests/alice/bob-common.yaml")
    repo.commit({}, "take it")
    result = check(repo, "alice")
    assert f"{BOB}:1:1 [authz.other_owner]" in findings(result.out)
    assert "alice may not delete bob's request" in result.out


def test_deleting_another_members_request_is_refused(tmp_path: Path) -> None:
    repo = pr(tmp_path, {BOB: None})
    result = check(repo, "alice")
    assert result.code == 1
    assert findings(result.out) == [f"{BOB}:1:1 [authz.other_owner]"]
    assert "may not delete bob's request" in result.out


@pytest.mark.parametrize(
    "path",
    ["config/policy.yaml", "config/hosts.yaml", "README.md", ".github/workflows/x.yml"],
)
def test_anything_outside_requests_is_an_infra_change(tmp_path: Path, path: str) -> None:
    text = sample(path) + "\n# touched\n" if path.startswith("config/") else "hello\n"
    repo = pr(tmp_path, {path: text})
    result = check(repo, "alice")
    assert result.code == 1
    assert findings(result.out) == [f"{path}:1:1 [authz.infra]"]
    assert "alice is not an admin" in result.out


def test_a_file_loose_in_requests_is_an_infra_change(tmp_path: Path) -> None:
    repo = pr(tmp_path, {"requests/alice-box.yaml": valid_request()})
    result = check(repo, "alice")
    assert "requests/alice-box.yaml:1:1 [authz.infra]" in findings(result.out)
    assert "not in a member's folder" in result.out


def test_logins_are_compared_without_case(tmp_path: Path) -> None:
    repo = pr(tmp_path, {ALICE: valid_request(cpu="8")})
    assert check(repo, "Alice").code == 0


# --- admins -------------------------------------------------------------------------------------


def test_an_admin_may_edit_another_members_request_and_the_report_says_so(
    tmp_path: Path,
) -> None:
    repo = pr(tmp_path, {BOB: valid_request("account", sudo="true")})
    result = check(repo, "lab-admin")
    assert result.code == 0, result.both
    assert f"note: admin override: lab-admin may change {BOB} (bob's request)" in result.out
    as_json = json.loads(check(repo, "lab-admin", "--format", "json").out)
    assert as_json["ok"] is True
    assert any("admin override" in note for note in as_json["notes"])


def test_an_admin_may_change_config(tmp_path: Path) -> None:
    policy = sample("config/policy.yaml").replace("max_lease_days: 365", "max_lease_days: 400")
    repo = pr(tmp_path, {"config/policy.yaml": policy})
    result = check(repo, "lab-admin")
    assert result.code == 0, result.both
    assert "admin override: lab-admin may change config/policy.yaml (infrastructure)" in result.out


def test_making_oneself_an_admin_in_the_pr_does_not_count(tmp_path: Path) -> None:
    policy = sample("config/policy.yaml").replace(
        "admins: [lab-admin]", "admins: [lab-admin, alice]"
    )
    assert policy != sample("config/policy.yaml")
    repo = pr(tmp_path, {"config/policy.yaml": policy, BOB: valid_request("account", sudo="true")})
    result = check(repo, "alice")
    assert result.code == 1
    assert findings(result.out) == [
        "config/policy.yaml:1:1 [authz.infra]",
        f"{BOB}:1:1 [authz.other_owner]",
    ]
    assert "admin override" not in result.out


def test_an_admin_removed_in_the_pr_is_still_an_admin_for_this_pr(tmp_path: Path) -> None:
    policy = sample("config/policy.yaml").replace("admins: [lab-admin]", "admins: [carol]")
    repo = pr(tmp_path, {"config/policy.yaml": policy})
    assert check(repo, "lab-admin").code == 0
    assert check(repo, "carol").code == 1


def test_an_infra_change_shows_what_it_breaks_in_files_it_does_not_touch(tmp_path: Path) -> None:
    policy = sample("config/policy.yaml").replace(
        "  common:\n    instance", "  shell:\n    instance"
    )
    repo = pr(tmp_path, {"config/policy.yaml": policy})
    result = check(repo, "lab-admin")
    assert result.code == 1
    assert f"{BOB}:6:9 [server.unknown]" in findings(result.out)


# --- what is judged ------------------------------------------------------------------------------


def test_the_base_moving_on_is_not_blamed_on_the_pr(tmp_path: Path) -> None:
    repo = GitRepo.create(tmp_path / "repo", BASE)
    repo.branch("pr")
    repo.commit({"requests/alice/alice-two.yaml": valid_request(name="alice-two", gpus="0")})
    repo.checkout("main")
    repo.commit({BOB: valid_request("account", sudo="true")}, "bob's change, merged meanwhile")
    repo.checkout("pr")
    result = check(repo, "alice")
    assert result.code == 0, result.both


def test_problems_already_on_the_base_are_notes_not_blamed_on_the_pr(tmp_path: Path) -> None:
    base = {**BASE, BOB: valid_request("account", server="gone")}  # already broken on main
    repo = pr(tmp_path, {"requests/alice/alice-two.yaml": valid_request(name="alice-two")}, base)
    result = check(repo, "alice")
    assert result.code == 0, result.both
    assert findings(result.out) == []
    assert (
        f"note: already before this PR, not blamed on it: {BOB}:6:9: error: server 'gone' "
        "is not a shared server (common) [server.unknown]" in result.out
    )


def test_warnings_in_files_the_pr_does_not_touch_are_counted_not_shown(tmp_path: Path) -> None:
    base = {**BASE, BOB: valid_request("account", expires="2026-11-01")}  # lease over
    repo = pr(tmp_path, {"requests/alice/alice-two.yaml": valid_request(name="alice-two")}, base)
    result = check(repo, "alice")
    assert result.code == 0, result.both
    assert "note: 1 finding(s) in files this PR does not touch are not shown" in result.out


def test_an_expired_request_in_the_pr_is_an_error(tmp_path: Path) -> None:
    repo = pr(tmp_path, {ALICE: valid_request(expires="2026-11-01")})
    result = check(repo, "alice")
    assert result.code == 1
    assert findings(result.out) == [f"{ALICE}:16:10 [lease.past]"]


def test_the_committed_blob_is_judged_not_the_checkout(tmp_path: Path) -> None:
    repo = pr(tmp_path, {"requests/alice/alice-two.yaml": valid_request(name="alice-two")})
    (repo.root / "requests/alice/alice-two.yaml").write_text("kind: [broken\n")
    assert check(repo, "alice").code == 0
    repo.commit({})
    result = check(repo, "alice")
    assert result.code == 1
    assert "[yaml.syntax]" in result.out


def test_a_quota_clash_is_pinned_on_the_prs_file(tmp_path: Path) -> None:
    # alice's file on main sorts after the new one; the new one still gets the finding
    base = {**BASE, ALICE: valid_request(gpus="2")}
    new = "requests/alice/alice-a.yaml"
    repo = pr(tmp_path, {new: valid_request(name="alice-a", gpus="1")}, base)
    result = check(repo, "alice")
    assert findings(result.out) == [f"{new}:7:7 [quota.gpus]"]


# --- file modes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [Symlink("/etc/passwd"), Symlink("alice-box.yaml"), Executable(valid_request()), Submodule()],
    ids=["link-out", "link-to-a-valid-request", "executable", "submodule"],
)
def test_only_regular_files_are_read(tmp_path: Path, spec: object) -> None:
    path = "requests/alice/alice-two.yaml"
    repo = pr(tmp_path, {path: spec})
    result = check(repo, "alice")
    assert result.code == 1
    assert findings(result.out) == [f"{path}:1:1 [file.mode]"]
    assert "root:" not in result.out  # /etc/passwd was not read


def test_a_request_made_executable_in_the_pr_is_refused(tmp_path: Path) -> None:
    repo = pr(tmp_path, {ALICE: Executable(valid_request())})  # same, valid, content
    result = check(repo, "alice")
    assert findings(result.out) == [f"{ALICE}:1:1 [file.mode]"]


def test_a_linked_requests_folder_is_refused(tmp_path: Path) -> None:
    repo = GitRepo.create(tmp_path / "repo", BASE)
    repo.branch("pr")
    repo.git("rm", "-rq", "requests")
    repo.commit({"requests": Symlink("/etc")}, "requests is elsewhere now")
    result = check(repo, "lab-admin")
    assert result.code == 1
    assert "requests:1:1 [file.mode]" in findings(result.out)


def test_a_linked_request_in_the_working_tree_is_refused_without_base(tmp_path: Path) -> None:
    repo = GitRepo.create(tmp_path / "repo", {ALICE: Symlink("/etc/passwd")})
    result = validate(repo.root, env=ENV)
    assert result.code == 1
    assert findings(result.out) == [f"{ALICE}:1:1 [file.mode]"]


# --- the author and GitHub's files ------------------------------------------------------------


def _event(tmp_path: Path, login: str) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"pull_request": {"number": 7, "user": {"login": login}}}))
    return str(path)


def test_the_author_comes_from_the_pull_request_event(tmp_path: Path) -> None:
    repo = pr(tmp_path, {BOB: valid_request("account", sudo="true")})
    as_bob = check(repo, None, env={"GITHUB_EVENT_PATH": _event(tmp_path, "bob")})
    assert as_bob.code == 0, as_bob.both
    as_alice = check(repo, None, env={"GITHUB_EVENT_PATH": _event(tmp_path, "alice")})
    assert as_alice.code == 1
    assert "[authz.other_owner]" in as_alice.out


def test_without_an_author_the_check_is_a_usage_error(tmp_path: Path) -> None:
    repo = pr(tmp_path, {})
    result = check(repo, None)
    assert result.code == 2
    assert "--author" in result.err
    broken_event = tmp_path / "not-json"
    broken_event.write_text("{")
    assert check(repo, None, env={"GITHUB_EVENT_PATH": str(broken_event)}).code == 2


@pytest.mark.parametrize("author", ["ev\x1b[31mil", "x\n::warning::y", "al\u202eice", "a" * 40])
def test_an_author_that_is_no_github_login_is_a_usage_error(tmp_path: Path, author: str) -> None:
    """The author is named in findings: from --author or the event, only a login is taken."""
    repo = pr(tmp_path, {ALICE: valid_request(cpu="8")})
    for result in (
        check(repo, author),
        check(repo, None, env={"GITHUB_EVENT_PATH": _event(tmp_path, author)}),
    ):
        assert result.code == 2, result.both
        assert "the PR author is not a GitHub login" in result.err
        assert result.out == ""
        assert author not in result.both


def test_an_unknown_base_is_a_usage_error(tmp_path: Path) -> None:
    repo = pr(tmp_path, {})
    result = validate(repo.root, "--base", "no-such-branch", "--author", "alice", env=ENV)
    assert result.code == 2
    assert "Traceback" not in result.both


def test_github_format_annotates_and_appends_a_summary(tmp_path: Path) -> None:
    repo = pr(tmp_path, {ALICE: valid_request(gpus="3"), BOB: None})
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ACTIONS": "true"}
    result = check(repo, "alice", env=env)  # GITHUB_ACTIONS picks the github format
    assert result.code == 1
    assert (
        f"::error file={ALICE},line=7,col=7,title=quota.gpus::gpus: 3 exceeds alice's quota of 2"
        in result.out.splitlines()
    )
    assert f"::error file={BOB},line=1,col=1,title=authz.other_owner::" in result.out
    text = summary.read_text()
    assert text.startswith("earlier step\n## ❌ Request check failed")
    assert "| retire | `requests/bob/bob-common.yaml` | bob |" in text
    check(repo, "alice", env=env)
    assert summary.read_text().count("Request check failed") == 2


def test_authorize_is_pure_and_sorted() -> None:
    changes = [
        FileChange("M", "config/hosts.yaml"),
        FileChange("A", "requests/zed/z.yaml"),
        FileChange("D", "requests/alice/a.yaml"),
    ]
    problems, notes = authorize(changes, "alice", frozenset({"lab-admin"}))
    assert [(p.path, p.rule) for p in problems] == [
        ("config/hosts.yaml", "authz.infra"),
        ("requests/zed/z.yaml", "authz.other_owner"),
    ]
    assert notes == ()
    problems, notes = authorize(changes, "LAB-ADMIN", frozenset({"lab-admin"}))
    assert problems == []
    assert notes == (
        "admin override: LAB-ADMIN may change config/hosts.yaml (infrastructure)",
        "admin override: LAB-ADMIN may delete requests/alice/a.yaml (alice's request)",
        "admin override: LAB-ADMIN may add requests/zed/z.yaml (zed's request)",
    )


def test_no_file_name_or_key_can_write_a_workflow_command(tmp_path: Path) -> None:
    evil_name = "requests/alice/x\n::warning::injected.yaml"
    evil_key = valid_request(name="alice-two", gpus="0") + '"x\\n::add-mask::all": 1\n'
    repo = pr(tmp_path, {evil_name: valid_request(), "requests/alice/alice-two.yaml": evil_key})
    result = check(repo, "alice", "--format", "github")
    assert result.code == 1
    commands = [line for line in result.out.splitlines() if line.startswith("::")]
    assert len(commands) == 2
    assert all(line.startswith("::error file=requests/alice/") for line in commands)
    # the text lines show the line break as an escape, one finding per line; neither the
    # name nor the key is repeated in the message: both are refused for the line break
    assert "requests/alice/x\\n::warning::injected.yaml:1:1: error: " in result.out
    assert result.out.count("[path.char]") == 1
    assert "add-mask" not in result.out
    assert "a top-level key: line break U+000A (line feed) is not allowed" in result.out
