"""`ssp doctor --github`: the repository settings the trust model needs, read through GitHub's
API (PyGithub against the fake GitHub, held to GitHub's OpenAPI description), and the admin
guide's "Repository settings" section, which must list exactly what is checked.

A safe repository: main takes PRs only, reviewed by a code owner after the last push, the
required check "Validate request files" on an up-to-date branch (or a merge queue), no force
pushes; a push ruleset lets only admins change .github/workflows/ on any branch; the default
token is read-only; every outside contributor's fork PR waits for approval (and in a private
repository gets no write token); the `production` environment deploys from main alone; a
ruleset lets only the admins and GitHub Actions update ssp-state; the GPU host's runner is an
ephemeral repository runner.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from fakegithub import FAKE_REPO, FakeGitHub
from fakegithub.settings import (
    Environment,
    ForkWorkflows,
    Protection,
    RepoSettings,
    Ruleset,
    Runner,
    rule,
)
from helpers import ROOT, run_cli

from provisioner.doctor.repository import GITHUB_CHECKS

ALL_BRANCHES = rule("file_path_restriction", 9, restricted_file_paths=[".github/workflows/**"])
STATE = 11  # the ruleset that restricts updates of ssp-state
ADMINS_AND_ACTIONS = [("RepositoryRole", 5), ("Integration", 15368)]


def safe(settings: RepoSettings) -> None:
    settings.protection["main"] = Protection(
        contexts=["Validate request files"],
        strict=True,
        approvals=1,
        code_owners=True,
        last_push_approval=True,
        dismiss_stale=True,
    )
    settings.all_branch_rules = [ALL_BRANCHES]
    settings.default_workflow_permissions = "read"
    settings.fork_approval = "all_external_contributors"
    settings.runners = [Runner("gpu-1-ssp")]
    settings.environments["production"] = Environment(branches=["main"])
    settings.branch_rules["ssp-state"] = [
        rule("update", STATE, update_allows_fetch_and_merge=False)
    ]
    settings.rulesets[STATE] = Ruleset("ssp-state", ["refs/heads/ssp-state"], ADMINS_AND_ACTIONS)


def doctor(gh: FakeGitHub, repo: Path = ROOT) -> tuple[int, str, dict[str, dict[str, str]]]:
    env = {"GITHUB_TOKEN": gh.token, "GITHUB_REPOSITORY": FAKE_REPO, "GITHUB_API_URL": gh.url}
    text = run_cli("doctor", "--github", "--repo", str(repo), env=env)
    assert "Traceback" not in text.both
    as_json = run_cli("doctor", "--github", "--repo", str(repo), "--format", "json", env=env)
    checks = {c["name"]: c for c in json.loads(as_json.out)["checks"]}
    assert as_json.code == text.code
    return text.code, text.out, checks


def test_a_safe_repository_is_healthy(fake_github: FakeGitHub) -> None:
    safe(fake_github.settings_of(FAKE_REPO))
    code, out, checks = doctor(fake_github)
    assert code == 0, out
    assert list(checks) == list(GITHUB_CHECKS)
    assert all(c["status"] == "ok" for c in checks.values()), out
    assert out.rstrip().endswith("ssp doctor: healthy")


def unprotected(s: RepoSettings) -> None:
    del s.protection["main"]


def not_up_to_date(s: RepoSettings) -> None:
    s.protection["main"].strict = False


def check_not_required(s: RepoSettings) -> None:
    s.protection["main"].contexts = ["lint"]


def no_code_owner_review(s: RepoSettings) -> None:
    s.protection["main"].code_owners = False


def no_last_push_approval(s: RepoSettings) -> None:
    s.protection["main"].last_push_approval = False


def force_pushes(s: RepoSettings) -> None:
    s.protection["main"].force_pushes = True


def workflows_open(s: RepoSettings) -> None:
    s.all_branch_rules = []


def workflows_only_on_main(s: RepoSettings) -> None:
    # restricting workflow files on main alone leaves every other branch open
    s.all_branch_rules = []
    s.branch_rules["main"] = [ALL_BRANCHES]


def token_writes(s: RepoSettings) -> None:
    s.default_workflow_permissions = "write"


def token_approves(s: RepoSettings) -> None:
    s.can_approve_pull_request_reviews = True


def forks_first_time_only(s: RepoSettings) -> None:
    s.fork_approval = "first_time_contributors"


def no_environment(s: RepoSettings) -> None:
    del s.environments["production"]


def environment_open_to_all(s: RepoSettings) -> None:
    s.environments["production"] = Environment(branches=None)


def environment_any_protected_branch(s: RepoSettings) -> None:
    s.environments["production"] = Environment(branches="protected")


def environment_also_a_pattern(s: RepoSettings) -> None:
    s.environments["production"] = Environment(branches=["main", "release/*"])


def fork_workflows_get_write_tokens(s: RepoSettings) -> None:
    s.fork_workflows = ForkWorkflows(run=True, write_tokens=True)


def fork_workflows_run_unapproved(s: RepoSettings) -> None:
    s.fork_workflows = ForkWorkflows(run=True, require_approval=False)


def state_open(s: RepoSettings) -> None:
    del s.branch_rules["ssp-state"]


def state_writers_beyond_admins(s: RepoSettings) -> None:
    s.rulesets[STATE].bypass = [*ADMINS_AND_ACTIONS, ("RepositoryRole", 4)]


def state_bypass_unreadable(s: RepoSettings) -> None:
    del s.rulesets[STATE]  # GitHub answers 404 to a token that may not read it


def lasting_runner(s: RepoSettings) -> None:
    s.runners = [Runner("gpu-1-ssp", ephemeral=False)]


def no_runner(s: RepoSettings) -> None:
    s.runners = [Runner("other", labels=("self-hosted", "linux", "x64"))]


@pytest.mark.parametrize(
    ("unsafe", "check", "says"),
    [
        (unprotected, "github.main.reviews", "accepts pushes without a pull request"),
        (unprotected, "github.main.check", "is not required"),
        (unprotected, "github.main.history", "allows force pushes and deleting it"),
        (not_up_to_date, "github.main.check", "without being checked again"),
        (check_not_required, "github.main.check", "'Validate request files' is not required"),
        (no_code_owner_review, "github.main.reviews", "review from Code Owners"),
        (no_last_push_approval, "github.main.reviews", "approval of the most recent push"),
        (force_pushes, "github.main.history", "allows force pushes"),
        (workflows_open, "github.workflows", "may add or change a workflow on any branch"),
        (workflows_only_on_main, "github.workflows", "on any branch"),
        (token_writes, "github.token", "the default GITHUB_TOKEN can write"),
        (token_approves, "github.token", "workflows may approve pull requests"),
        (forks_first_time_only, "github.forks", "policy: first_time_contributors"),
        (no_environment, "github.environment", "there is no `production` environment"),
        (environment_open_to_all, "github.environment", "every branch may deploy"),
        (environment_any_protected_branch, "github.environment", "every protected branch"),
        (environment_also_a_pattern, "github.environment", "rules: main, release/*"),
        (fork_workflows_get_write_tokens, "github.forks", "get a write token"),
        (fork_workflows_run_unapproved, "github.forks", "run without approval"),
        (state_open, "github.state", "anyone who can push may write ssp-state"),
        (state_writers_beyond_admins, "github.state", "also lets RepositoryRole 4 push"),
        (state_bypass_unreadable, "github.state", "bypass list is not readable"),
        (lasting_runner, "github.runners", "runners that take more than one job: gpu-1-ssp"),
        (no_runner, "github.runners", "no self-hosted runner labelled gpu-host"),
    ],
    ids=lambda v: v.__name__ if callable(v) else None,
)
def test_each_unsafe_setting_is_a_problem_with_a_fix(
    fake_github: FakeGitHub, unsafe: Callable[[RepoSettings], None], check: str, says: str
) -> None:
    settings = fake_github.settings_of(FAKE_REPO)
    safe(settings)
    unsafe(settings)
    code, out, checks = doctor(fake_github)
    assert code == 1, out
    assert checks[check]["status"] == "problem", out
    assert says in checks[check]["detail"]
    assert checks[check]["fix"]
    assert f"PROBLEM  {check}" in out


def test_a_public_repository_needs_only_the_fork_approval_policy(fake_github: FakeGitHub) -> None:
    # GitHub has no private-repository fork settings for a public one (404): the approval
    # policy alone decides
    settings = fake_github.settings_of(FAKE_REPO)
    safe(settings)
    settings.fork_workflows = None
    code, out, checks = doctor(fake_github)
    assert code == 0, out
    assert checks["github.forks"]["detail"] == (
        "every outside contributor's fork PR waits for an approval to run"
    )


def test_rulesets_alone_with_a_merge_queue_are_enough(fake_github: FakeGitHub) -> None:
    # no classic branch protection: the same guarantees from a branch ruleset on main
    settings = fake_github.settings_of(FAKE_REPO)
    safe(settings)
    del settings.protection["main"]
    settings.branch_rules["main"] = [
        rule(
            "pull_request",
            required_approving_review_count=1,
            require_code_owner_review=True,
            require_last_push_approval=True,
            dismiss_stale_reviews_on_push=True,
            required_review_thread_resolution=False,
        ),
        rule(
            "required_status_checks",
            required_status_checks=[{"context": "Validate request files"}],
            strict_required_status_checks_policy=False,
        ),
        rule(
            "merge_queue",
            check_response_timeout_minutes=60,
            grouping_strategy="ALLGREEN",
            max_entries_to_build=5,
            max_entries_to_merge=5,
            merge_method="MERGE",
            min_entries_to_merge=1,
            min_entries_to_merge_wait_minutes=5,
        ),
        rule("non_fast_forward"),
        rule("deletion"),
    ]
    code, out, checks = doctor(fake_github)
    assert code == 0, out
    assert "through a merge queue" in checks["github.main.check"]["detail"]


def test_codeowners_must_give_github_to_the_admins(tmp_path: Path, fake_github: FakeGitHub) -> None:
    safe(fake_github.settings_of(FAKE_REPO))
    (tmp_path / ".github").mkdir()
    text = (ROOT / ".github" / "CODEOWNERS").read_text(encoding="utf-8")
    (tmp_path / ".github" / "CODEOWNERS").write_text(
        re.sub(r"^/\.github/.*$", "/.github/", text, flags=re.MULTILINE), encoding="utf-8"
    )
    code, _out, checks = doctor(fake_github, tmp_path)
    assert code == 1
    assert checks["github.codeowners"]["detail"] == "CODEOWNERS names no owner for /.github/"


def test_doctor_github_needs_a_token() -> None:
    result = run_cli("doctor", "--github", env={"GITHUB_REPOSITORY": FAKE_REPO})
    assert result.code == 2
    assert "--github needs GITHUB_TOKEN" in result.err


@pytest.mark.parametrize("guide", ["admin-guide.md", "admin-guide.zh.md"])
def test_the_admin_guide_lists_exactly_what_doctor_checks(guide: str) -> None:
    text = (ROOT / "docs" / guide).read_text(encoding="utf-8")
    section = text.split("<!-- repository-settings:begin -->")[1]
    section = section.split("<!-- repository-settings:end -->")[0]
    listed = re.findall(r"^\| `(github\.[a-z.]+)` \|", section, re.MULTILINE)
    assert tuple(listed) == GITHUB_CHECKS


def test_doctor_github_takes_the_repository_from_the_clone_and_the_token_from_gh(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    """An admin in their clone, logged in with GitHub's CLI: no variables to export."""
    safe(fake_github.settings_of(FAKE_REPO))
    repo = tmp_path / "clone"
    shutil.copytree(ROOT / ".github", repo / ".github")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "remote", "add", "origin", f"git@github.com:{FAKE_REPO}.git"],
        check=True,
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"  # GitHub's CLI as an admin has it: `gh auth token` prints the token
    gh.write_text(f'#!/bin/sh\n[ "$1 $2" = "auth token" ] && echo {fake_github.token}\n')
    gh.chmod(0o755)
    env = {"GITHUB_API_URL": fake_github.url, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = run_cli("doctor", "--github", "--repo", str(repo), env=env)
    assert "Traceback" not in result.both
    assert result.code == 0, result.both
    assert "ssp doctor: healthy" in result.out
