"""Repository administration the fake answers for `ssp doctor --github`: a deployment
environment and its branch policies, a ruleset with its bypass list, and the fork pull request
workflow settings of a private repository. Seeded through `RepoSettings` (settings.py); every
answer goes out through the contract checker like the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import resources as r
from .gitdata import Reply

if TYPE_CHECKING:
    from .state import GitHubState, Identity

DOCS = "https://docs.github.com/rest"
WHEN = "2024-01-02T03:04:05Z"


def _full(p: Mapping[str, str]) -> str:
    return f"{p['owner']}/{p['repo']}"


def _not_found(docs: str) -> Reply:
    return Reply(404, r.error("Not Found", docs, 404))


def get_environment(
    state: GitHubState, p: Mapping[str, str], q: Any, b: Any, who: Identity
) -> Reply:
    name = p["environment_name"]
    env = state.settings_of(_full(p)).environments.get(name)
    if env is None:
        return _not_found(f"{DOCS}/deployments/environments#get-an-environment")
    number = sorted(state.settings_of(_full(p)).environments).index(name) + 1
    policy: dict[str, bool] | None = None
    if env.branches == "protected":
        policy = {"protected_branches": True, "custom_branch_policies": False}
    elif env.branches is not None:
        policy = {"protected_branches": False, "custom_branch_policies": True}
    api = f"{state.site.api}/repos/{_full(p)}/environments/{name}"
    web = f"{state.site.web}/{_full(p)}/deployments/activity_log"
    return Reply(
        200,
        {
            "id": 161088068 + number,
            "node_id": r.node_id("Environment", number),
            "name": name,
            "url": api,
            "html_url": f"{web}?environments_filter={name}",
            "created_at": WHEN,
            "updated_at": WHEN,
            "protection_rules": [],
            "deployment_branch_policy": policy,
        },
    )


def list_branch_policies(
    state: GitHubState, p: Mapping[str, str], q: Any, b: Any, who: Identity
) -> Reply:
    env = state.settings_of(_full(p)).environments.get(p["environment_name"])
    if env is None:
        return _not_found(f"{DOCS}/deployments/branch-policies#list-deployment-branch-policies")
    names = env.branches if isinstance(env.branches, list) else []
    items = [
        {"id": 361471 + i, "node_id": r.node_id("Gate", 361471 + i), "name": n, "type": "branch"}
        for i, n in enumerate(names)
    ]
    return Reply(200, {"total_count": len(items), "branch_policies": items})


def get_ruleset(state: GitHubState, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
    number = int(p["ruleset_id"])
    found = state.settings_of(_full(p)).rulesets.get(number)
    if found is None:
        return _not_found(f"{DOCS}/repos/rules#get-a-repository-ruleset")
    api = f"{state.site.api}/repos/{_full(p)}/rulesets/{number}"
    return Reply(
        200,
        {
            "id": number,
            "name": found.name,
            "target": "branch",
            "source_type": "Repository",
            "source": _full(p),
            "enforcement": "active",
            "bypass_actors": [
                {"actor_id": actor, "actor_type": kind, "bypass_mode": "always"}
                for kind, actor in found.bypass
            ],
            "current_user_can_bypass": "always",
            "node_id": r.node_id("RepositoryRuleset", number),
            "_links": {
                "self": {"href": api},
                "html": {"href": f"{state.site.web}/{_full(p)}/rules/{number}"},
            },
            "conditions": {"ref_name": {"include": list(found.include), "exclude": []}},
            "rules": [],
            "created_at": WHEN,
            "updated_at": WHEN,
        },
    )


def get_fork_workflows(
    state: GitHubState, p: Mapping[str, str], q: Any, b: Any, who: Identity
) -> Reply:
    found = state.settings_of(_full(p)).fork_workflows
    if found is None:
        return _not_found(f"{DOCS}/actions/permissions")
    return Reply(
        200,
        {
            "run_workflows_from_fork_pull_requests": found.run,
            "send_write_tokens_to_workflows": found.write_tokens,
            "send_secrets_and_variables": found.secrets,
            "require_approval_for_fork_pr_workflows": found.require_approval,
        },
    )


HANDLERS = {
    "repos/get-environment": get_environment,
    "repos/list-deployment-branch-policies": list_branch_policies,
    "repos/get-repo-ruleset": get_ruleset,
    "actions/get-private-repo-fork-pr-workflows-settings-repository": get_fork_workflows,
}
