"""`ssp doctor --github`'s checks: is the repository set up so that the trust model holds?

The PR check (validate.yml) runs from the PR's own copy of the workflow and is advisory until
GitHub enforces it, and any workflow on any branch can ask for the self-hosted runner by its
labels. What holds it all together are repository settings, which the admins make once and
anyone with admin rights can undo. Each check below reads them (GitHub's JSON, fetched by
`provisioner.github.client`) and says what is unsafe and how to fix it. The admin guide's section
"Repository settings" lists exactly these checks, in this order.

Pure: JSON and the CODEOWNERS text in, `Check`s out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from provisioner.doctor.checks import Check, Status
from provisioner.doctor.reach import check_environment, check_forks, check_state_branch

MAIN = "main"
# The job name of validate.yml's job: the status check's context on GitHub.
REQUIRED_CHECK = "Validate request files"
RUNNER_LABEL = "gpu-host"
WORKFLOWS = ".github/workflows/"
# Paths a member must never change without an admin's review.
OWNED = ("/.github/", "/config/", "/provisioner/", "/runner/", "/schemas/")
GITHUB_CHECKS = (
    "github.main.reviews",
    "github.main.check",
    "github.main.history",
    "github.workflows",
    "github.environment",
    "github.token",
    "github.forks",
    "github.state",
    "github.runners",
    "github.codeowners",
)
Json = Mapping[str, Any]
Rules = Sequence[Json]
# A branch name no one uses: the rules GitHub applies there are those on every branch.
PROBE_BRANCH = "ssp-doctor/any-branch"
SETTINGS = "Settings > Rules > Rulesets (or Settings > Branches)"


def _ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def _problem(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.PROBLEM, detail, fix)


def _rules(rules: Sequence[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [r.get("parameters") or {} for r in rules if r.get("type") == kind]


def _enabled(protection: Mapping[str, Any] | None, key: str) -> bool:
    return bool(((protection or {}).get(key) or {}).get("enabled"))


def check_reviews(
    protection: Mapping[str, Any] | None, rules: Sequence[Mapping[str, Any]]
) -> Check:
    """Merging into main needs a pull request with an approval by a code owner (an admin), a
    fresh one after the last push, so that no one merges what only they have seen."""
    name = "github.main.reviews"
    reviews = (protection or {}).get("required_pull_request_reviews")
    ways = []
    if reviews:
        ways.append(
            (
                reviews.get("required_approving_review_count", 0),
                reviews.get("require_code_owner_reviews", False),
                reviews.get("require_last_push_approval", False),
                reviews.get("dismiss_stale_reviews", False),
            )
        )
    ways += [
        (
            p.get("required_approving_review_count", 0),
            p.get("require_code_owner_review", False),
            p.get("require_last_push_approval", False),
            p.get("dismiss_stale_reviews_on_push", False),
        )
        for p in _rules(rules, "pull_request")
    ]
    if not ways:
        return _problem(
            name,
            f"{MAIN} accepts pushes without a pull request",
            f"{SETTINGS}: on {MAIN}, require a pull request before merging",
        )
    approvals = max(w[0] for w in ways)
    missing = []
    if approvals < 1:
        missing.append("at least 1 approval")
    if not any(w[1] for w in ways):
        missing.append("review from Code Owners")
    if not any(w[2] for w in ways):
        missing.append("approval of the most recent push")
    if not any(w[3] for w in ways):
        missing.append("dismissing stale approvals on new commits")
    if missing:
        return _problem(
            name,
            f"pull requests into {MAIN} do not require: " + ", ".join(missing),
            f"{SETTINGS}: on {MAIN}, require " + ", ".join(missing),
        )
    return _ok(
        name,
        f"{MAIN} takes pull requests only, with {approvals} approval(s), by a code owner, "
        "after the last push",
    )


def _contexts(protection: Mapping[str, Any] | None) -> set[str]:
    checks = (protection or {}).get("required_status_checks") or {}
    found = set(checks.get("contexts") or [])
    return found | {c.get("context") for c in checks.get("checks") or [] if c.get("context")}


def check_required_check(
    protection: Mapping[str, Any] | None, rules: Sequence[Mapping[str, Any]]
) -> Check:
    """The PR check is required, on an up-to-date branch or through a merge queue: it judges
    the merge with the base it ran against, and is not run again when main moves."""
    name = "github.main.check"
    required = REQUIRED_CHECK in _contexts(protection)
    strict = bool(((protection or {}).get("required_status_checks") or {}).get("strict"))
    for p in _rules(rules, "required_status_checks"):
        contexts = {c.get("context") for c in p.get("required_status_checks") or []}
        if REQUIRED_CHECK in contexts:
            required = True
            strict = strict or bool(p.get("strict_required_status_checks_policy"))
    queue = bool(_rules(rules, "merge_queue"))
    if not required:
        return _problem(
            name,
            f"the status check {REQUIRED_CHECK!r} is not required on {MAIN}",
            f"{SETTINGS}: on {MAIN}, require the status check {REQUIRED_CHECK!r}",
        )
    if not (strict or queue):
        return _problem(
            name,
            f"{REQUIRED_CHECK!r} is required, but a PR may merge after {MAIN} moved on without "
            "being checked again (two PRs that each pass can break the quotas together)",
            f"{SETTINGS}: require branches to be up to date before merging, or a merge queue",
        )
    how = "through a merge queue" if queue else "on a branch up to date with main"
    return _ok(name, f"{REQUIRED_CHECK!r} must pass {how}")


def check_history(
    protection: Mapping[str, Any] | None, rules: Sequence[Mapping[str, Any]]
) -> Check:
    name = "github.main.history"
    force = _enabled(protection, "allow_force_pushes") if protection else True
    delete = _enabled(protection, "allow_deletions") if protection else True
    if _rules(rules, "non_fast_forward"):
        force = False
    if _rules(rules, "deletion"):
        delete = False
    wrong = [w for w, bad in (("force pushes", force), ("deleting it", delete)) if bad]
    if wrong:
        return _problem(
            name,
            f"{MAIN} allows " + " and ".join(wrong),
            f"{SETTINGS}: on {MAIN}, block force pushes and deletion",
        )
    return _ok(name, f"{MAIN} cannot be force-pushed or deleted")


def _covers(pattern: str) -> bool:
    """Does a restricted file path pattern cover every file under .github/workflows/?"""
    p = pattern.lstrip("/")
    return p in (".github/**", ".github/**/*", ".github/workflows/**", ".github/workflows/**/*")


def check_workflows(any_branch_rules: Sequence[Mapping[str, Any]]) -> Check:
    """Who may push workflow files, on ANY branch. A workflow on any branch can run on the
    self-hosted runner by naming its labels, and a PR's workflow edits make its own check pass;
    a ruleset that lets only the admins push `.github/workflows/` holds with or without an
    organisation (an organisation may also limit the runner's group to the two workflows)."""
    name = "github.workflows"
    paths = [
        path
        for p in _rules(any_branch_rules, "file_path_restriction")
        for path in p.get("restricted_file_paths") or []
    ]
    if not any(_covers(path) for path in paths):
        return _problem(
            name,
            f"anyone who can push may add or change a workflow on any branch; it can run on "
            f"the self-hosted runner ({RUNNER_LABEL}) and own the GPU host",
            "Settings > Rules > Rulesets > New push ruleset: target all branches, restrict the "
            "file path `.github/workflows/**`, bypass: the admins only",
        )
    return _ok(name, "only the ruleset's bypass list (the admins) may push .github/workflows/")


def check_token(workflow: Mapping[str, Any]) -> Check:
    name = "github.token"
    wrong = []
    if workflow.get("default_workflow_permissions") != "read":
        wrong.append("the default GITHUB_TOKEN can write")
    if workflow.get("can_approve_pull_request_reviews"):
        wrong.append("workflows may approve pull requests")
    if wrong:
        return _problem(
            name,
            "; ".join(wrong),
            "Settings > Actions > General > Workflow permissions: 'Read repository contents "
            "and packages permissions', and do not allow GitHub Actions to approve pull requests",
        )
    return _ok(name, "GITHUB_TOKEN is read-only unless a job asks; workflows cannot approve PRs")


def _labels(runner: Mapping[str, Any]) -> set[str]:
    return {str(label.get("name")) for label in runner.get("labels") or []}


def check_runners(runners: Sequence[Mapping[str, Any]]) -> Check:
    name = "github.runners"
    gpu = [r for r in runners if RUNNER_LABEL in _labels(r)]
    if not gpu:
        return _problem(
            name,
            f"no self-hosted runner labelled {RUNNER_LABEL} is registered to this repository",
            "register it on the GPU host with runner/install-runner.sh --url "
            "https://github.com/OWNER/REPO --ephemeral --pat-file FILE (a repository runner "
            "that registers itself again before every job; docs/admin-guide.md)",
        )
    lasting = sorted(str(r.get("name")) for r in gpu if not r.get("ephemeral"))
    if lasting:
        return _problem(
            name,
            "runners that take more than one job: " + ", ".join(lasting) + " (whatever one "
            "job leaves on the host, the next finds)",
            "register them again with runner/install-runner.sh --ephemeral --pat-file FILE "
            "(it registers itself again before every job; docs/admin-guide.md)",
        )
    return _ok(name, f"{len(gpu)} ephemeral repository runner(s) labelled {RUNNER_LABEL}")


def check_codeowners(text: str | None) -> Check:
    name = "github.codeowners"
    if text is None:
        return _problem(
            name,
            "no .github/CODEOWNERS in the checkout",
            "restore .github/CODEOWNERS from the platform's repository",
        )
    owners: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            owners[words[0]] = words[1:]
    missing = [p for p in OWNED if not owners.get(p)]
    if missing:
        return _problem(
            name,
            "CODEOWNERS names no owner for " + ", ".join(missing),
            "give these paths to the admins' team in .github/CODEOWNERS",
        )
    return _ok(name, "the admins own " + ", ".join(OWNED))


def examine(settings: Mapping[str, Any], codeowners: str | None) -> list[Check]:
    """Every check, in GITHUB_CHECKS order."""
    protection = settings.get("protection")
    rules = settings.get("rules") or []
    checks = [
        check_reviews(protection, rules),
        check_required_check(protection, rules),
        check_history(protection, rules),
        check_workflows(settings.get("probe_rules") or []),
        check_environment(settings.get("environment"), settings.get("branch_policies") or []),
        check_token(settings.get("workflow") or {}),
        check_forks(settings.get("fork"), settings.get("fork_workflows")),
        check_state_branch(settings.get("state_rules") or [], settings.get("rulesets") or {}),
        check_runners(settings.get("runners") or []),
        check_codeowners(codeowners),
    ]
    assert tuple(c.name for c in checks) == GITHUB_CHECKS  # noqa: S101  (the guide lists them)
    return checks
