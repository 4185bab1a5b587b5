"""`ssp doctor --github`'s checks of who can reach the GPU host's runner and the state branch
around the rules: the deployment environment's branch policy, fork pull request workflows,
and who may push `ssp-state`.

The self-hosted jobs run only for `main` (their `if:`), but a workflow on another branch is
another workflow: only the `production` environment, limited to `main`, stops a dispatch on a
branch whose copy of ssp (or of the workflow) was changed. A fork's pull request carries its
own workflow past the push ruleset, so it must wait for an approval and never get a write
token. And `ssp-state` feeds every PR check's preview and the status page: only the
maintenance job (GitHub Actions) and the admins may write it. Pure: GitHub's JSON in,
`Check`s out; `provisioner.doctor.repository` runs them in the guide's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from provisioner.doctor.checks import Check, Status
from provisioner.status import snapshot

ENVIRONMENT = "production"
STATE_BRANCH = snapshot.BRANCH
MAIN = "main"
# Who may bypass the ruleset that restricts updates of the state branch: the admins (the
# repository's admin role, an organisation's owners) and the GitHub Actions app, whose token
# the maintenance job's `publish` (the one job with `contents: write`) writes it with.
ADMIN_ROLE = 5  # the actor_id of the built-in "admin" repository role
ACTIONS_APP = 15368  # the actor_id of the GitHub Actions app
_ENVIRONMENTS = "Settings > Environments > production"
_ACTIONS = "Settings > Actions > General"


def _ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def _problem(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.PROBLEM, detail, fix)


def check_environment(
    environment: Mapping[str, Any] | None, policies: Sequence[Mapping[str, Any]]
) -> Check:
    """The `production` environment deploys from `main` only: a dispatch on any other branch
    (its own ssp, its own workflow file) waits forever instead of reaching the runner."""
    name = "github.environment"
    fix = (
        f"{_ENVIRONMENTS} > Deployment branches and tags: 'Selected branches and tags', "
        f"with the one rule `{MAIN}` (type branch)"
    )
    if environment is None:
        return _problem(
            name,
            f"there is no `{ENVIRONMENT}` environment: GitHub makes one on the first run, "
            "open to every branch",
            f"Settings > Environments > New environment `{ENVIRONMENT}`; then {fix}",
        )
    policy = environment.get("deployment_branch_policy")
    if not policy:
        return _problem(name, f"every branch may deploy to `{ENVIRONMENT}`", fix)
    if policy.get("protected_branches"):
        return _problem(
            name,
            f"every protected branch may deploy to `{ENVIRONMENT}`, not only {MAIN}",
            fix,
        )
    names = sorted(
        f"{p.get('name')}" + ("" if p.get("type", "branch") == "branch" else f" ({p['type']})")
        for p in policies
    )
    if names != [MAIN]:
        seen = ", ".join(names) or "none"
        return _problem(
            name, f"`{ENVIRONMENT}` deploys from these branch rules: {seen} (only {MAIN})", fix
        )
    return _ok(name, f"only {MAIN} may deploy to `{ENVIRONMENT}`")


def check_forks(fork: Mapping[str, Any] | None, private: Mapping[str, Any] | None) -> Check:
    """A fork's pull request runs its own copy of the workflows: every outside contributor's
    waits for an approval, and (in a private repository) none gets a write token or the
    secrets."""
    name = "github.forks"
    wrong = []
    policy = (fork or {}).get("approval_policy")
    if fork is not None and policy != "all_external_contributors":
        wrong.append(
            f"workflows from fork pull requests run without approval for some outside "
            f"contributors (policy: {policy or 'unknown'})"
        )
    if private is not None and private.get("run_workflows_from_fork_pull_requests"):
        if not private.get("require_approval_for_fork_pr_workflows"):
            wrong.append("fork pull request workflows run without approval")
        if private.get("send_write_tokens_to_workflows"):
            wrong.append("fork pull request workflows get a write token")
        if private.get("send_secrets_and_variables"):
            wrong.append("fork pull request workflows get the secrets")
    if fork is None and private is None:
        wrong.append("GitHub shows no fork pull request settings to this token")
    if wrong:
        return _problem(
            name,
            "; ".join(wrong),
            f"{_ACTIONS}: 'Require approval for all external contributors'; for a private "
            "repository, under 'Fork pull request workflows', require approval and do not "
            "send write tokens or secrets",
        )
    said = []
    if fork is not None:
        said.append("every outside contributor's fork PR waits for an approval to run")
    if private is not None:
        said.append(
            "as a private repository, fork PRs run no workflows"
            if not private.get("run_workflows_from_fork_pull_requests")
            else "as a private repository, with approval and without write tokens or secrets"
        )
    return _ok(name, "; ".join(said))


def _actor(actor: Mapping[str, Any]) -> str:
    return f"{actor.get('actor_type')} {actor.get('actor_id')}"


def _outsiders(ruleset: Mapping[str, Any]) -> list[str]:
    """The bypass actors that are neither the admins nor GitHub Actions."""
    allowed = {
        ("OrganizationAdmin", None),
        ("OrganizationAdmin", 1),
        ("RepositoryRole", ADMIN_ROLE),
        ("Integration", ACTIONS_APP),
    }
    return [
        _actor(a)
        for a in ruleset.get("bypass_actors") or []
        if (a.get("actor_type"), a.get("actor_id")) not in allowed
    ]


def check_state_branch(
    rules: Sequence[Mapping[str, Any]], rulesets: Mapping[Any, Mapping[str, Any] | None]
) -> Check:
    """Only the maintenance job and the admins may push `ssp-state`: a ruleset on it
    restricts updates, and its bypass list holds nobody else."""
    name = "github.state"
    fix = (
        f"Settings > Rules > Rulesets > New branch ruleset: target `{STATE_BRANCH}`, "
        "'Restrict updates' (and deletions), bypass list: the Repository admin role and the "
        "GitHub Actions app only"
    )
    ids = sorted({r.get("ruleset_id") for r in rules if r.get("type") == "update"}, key=str)
    if not ids:
        return _problem(
            name,
            f"anyone who can push may write {STATE_BRANCH} (the state every PR check "
            "previews, the status page)",
            fix,
        )
    seen = []
    for number in ids:
        ruleset = rulesets.get(number)
        if ruleset is None or "bypass_actors" not in ruleset:
            seen.append(f"ruleset {number}: its bypass list is not readable with this token")
            continue
        outsiders = _outsiders(ruleset)
        if not outsiders:
            return _ok(name, f"only the admins and GitHub Actions may push {STATE_BRANCH}")
        seen.append(f"ruleset {number} also lets " + ", ".join(outsiders) + " push")
    return _problem(name, f"{STATE_BRANCH}: " + "; ".join(seen), fix)
