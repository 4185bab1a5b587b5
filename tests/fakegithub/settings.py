"""A repository's settings as GitHub's API shows them: branch protection, the rules that apply
to a branch (rulesets), Actions' default token permissions, fork PR approval, self-hosted
runners and the registration tokens handed out for them. Seeded by tests
(`GitHubState.settings_of(repo)`), answered as JSON the contract checker holds to GitHub's
description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


@dataclass
class Runner:
    name: str
    labels: tuple[str, ...] = ("self-hosted", "linux", "x64", "gpu-host")
    ephemeral: bool = True


@dataclass
class Protection:
    """Classic branch protection of one branch."""

    contexts: list[str] = field(default_factory=list)  # required status checks
    strict: bool = False  # branches must be up to date before merging
    reviews: bool = True  # pull requests required
    approvals: int = 1
    code_owners: bool = False
    last_push_approval: bool = False
    dismiss_stale: bool = False
    force_pushes: bool = False
    deletions: bool = False
    enforce_admins: bool = False


@dataclass
class Environment:
    """A deployment environment. `branches`: None lets every branch deploy (GitHub's
    default), "protected" every protected branch, a list the custom policies' names (type
    branch)."""

    branches: str | list[str] | None = None


@dataclass
class ForkWorkflows:
    """Settings > Actions > General > Fork pull request workflows (private repositories)."""

    run: bool = False  # GitHub's default for a private repository
    write_tokens: bool = False
    secrets: bool = False
    require_approval: bool = True


@dataclass
class Ruleset:
    """A repository ruleset as GET /repos/{owner}/{repo}/rulesets/{id} shows it to an admin;
    its rules are seeded separately, per branch, as the rules listing shows them."""

    name: str
    include: list[str]  # ref name patterns, e.g. refs/heads/ssp-state
    # (actor_type, actor_id): ("RepositoryRole", 5) is the admin role, ("Integration", 15368)
    # the GitHub Actions app (a workflow's GITHUB_TOKEN)
    bypass: list[tuple[str, int | None]] = field(default_factory=list)


@dataclass
class RepoSettings:
    protection: dict[str, Protection] = field(default_factory=dict)  # by branch
    # ruleset rules: those on one branch, and those on every branch (push rules, `~ALL`)
    branch_rules: dict[str, list[Json]] = field(default_factory=dict)
    all_branch_rules: list[Json] = field(default_factory=list)
    default_workflow_permissions: str = "write"  # GitHub's default for older repositories
    can_approve_pull_request_reviews: bool = False
    fork_approval: str = "first_time_contributors"  # GitHub's default
    runners: list[Runner] = field(default_factory=list)
    environments: dict[str, Environment] = field(default_factory=dict)  # by name
    # None: GitHub answers 404 (the settings exist for private repositories only)
    fork_workflows: ForkWorkflows | None = field(default_factory=ForkWorkflows)
    rulesets: dict[int, Ruleset] = field(default_factory=dict)  # by id
    # the runner registration tokens handed out, in order (each valid for an hour)
    registration_tokens: list[str] = field(default_factory=list)


def _enabled(url: str, on: bool) -> Json:
    return {"enabled": on}


def protection(api: str, full_name: str, branch: str, p: Protection) -> Json:
    url = f"{api}/repos/{full_name}/branches/{branch}/protection"
    out: Json = {
        "url": url,
        "enabled": True,
        "required_status_checks": {
            "url": f"{url}/required_status_checks",
            "strict": p.strict,
            "contexts": list(p.contexts),
            "contexts_url": f"{url}/required_status_checks/contexts",
            "checks": [{"context": c, "app_id": 15368} for c in p.contexts],
        },
        "enforce_admins": {"url": f"{url}/enforce_admins", "enabled": p.enforce_admins},
        "required_linear_history": {"enabled": False},
        "allow_force_pushes": {"enabled": p.force_pushes},
        "allow_deletions": {"enabled": p.deletions},
        "required_conversation_resolution": {"enabled": False},
        "lock_branch": {"enabled": False},
        "allow_fork_syncing": {"enabled": False},
    }
    if p.reviews:
        out["required_pull_request_reviews"] = {
            "url": f"{url}/required_pull_request_reviews",
            "dismiss_stale_reviews": p.dismiss_stale,
            "require_code_owner_reviews": p.code_owners,
            "required_approving_review_count": p.approvals,
            "require_last_push_approval": p.last_push_approval,
        }
    return out


def rule(kind: str, ruleset_id: int = 7, **parameters: Any) -> Json:
    """One rule as GET /repos/{owner}/{repo}/rules/branches/{branch} lists it."""
    out: Json = {
        "type": kind,
        "ruleset_source_type": "Repository",
        "ruleset_source": "lab/super-server",
        "ruleset_id": ruleset_id,
    }
    if parameters:
        out["parameters"] = parameters
    return out


def runners(items: list[Runner]) -> Json:
    return {
        "total_count": len(items),
        "runners": [
            {
                "id": n + 1,
                "name": r.name,
                "os": "linux",
                "status": "online",
                "busy": False,
                "ephemeral": r.ephemeral,
                "labels": [
                    {"id": i + 1, "name": label, "type": "read-only" if i < 3 else "custom"}
                    for i, label in enumerate(r.labels)
                ],
            }
            for n, r in enumerate(items)
        ],
    }
