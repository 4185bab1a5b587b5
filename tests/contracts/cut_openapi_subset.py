"""Cut the subset of GitHub's OpenAPI description that the fake GitHub is held to.

Not run by the tests: it documents (and reproduces) how `github-rest-openapi-subset.json` was
made from the npm package `@octokit/openapi` (see PROVENANCE.md). Usage:

    npm pack @octokit/openapi@23.0.2 && tar xzf octokit-openapi-23.0.2.tgz
    python cut_openapi_subset.py package/generated/api.github.com.deref.json > subset.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The fake serves a part of these; its contract check
# refuses any request whose path and method are not described here.
PATHS = frozenset(
    {
        "/orgs/{org}/teams/{team_slug}/memberships/{username}",
        "/repos/{owner}/{repo}",
        "/repos/{owner}/{repo}/check-runs",
        "/repos/{owner}/{repo}/check-runs/{check_run_id}",
        "/repos/{owner}/{repo}/collaborators/{username}/permission",
        "/repos/{owner}/{repo}/commits/{commit_sha}/pulls",
        "/repos/{owner}/{repo}/commits/{ref}",
        "/repos/{owner}/{repo}/issues",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
        "/repos/{owner}/{repo}/issues/{issue_number}",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        "/repos/{owner}/{repo}/issues/{issue_number}/labels",
        "/repos/{owner}/{repo}/pulls",
        "/repos/{owner}/{repo}/pulls/{pull_number}",
        "/repos/{owner}/{repo}/pulls/{pull_number}/files",
        "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
        "/repos/{owner}/{repo}/statuses/{sha}",
        "/user",
        # GitHub App installation tokens (the adapter's App authentication)
        "/app/installations/{installation_id}/access_tokens",
        "/repos/{owner}/{repo}/installation",
        # who wrote a pull request's commits (the PR check judges every one of them)
        "/repos/{owner}/{repo}/pulls/{pull_number}/commits",
        # the repository settings `ssp doctor --github` reads
        "/repos/{owner}/{repo}/actions/permissions",
        "/repos/{owner}/{repo}/actions/permissions/fork-pr-contributor-approval",
        "/repos/{owner}/{repo}/actions/permissions/workflow",
        "/repos/{owner}/{repo}/actions/runners",
        "/repos/{owner}/{repo}/branches/{branch}/protection",
        "/repos/{owner}/{repo}/rules/branches/{branch}",
        # `ssp doctor --github`: who may reach the runner and write ssp-state
        "/repos/{owner}/{repo}/environments/{environment_name}",
        "/repos/{owner}/{repo}/environments/{environment_name}/deployment-branch-policies",
        "/repos/{owner}/{repo}/rulesets/{ruleset_id}",
        "/repos/{owner}/{repo}/actions/permissions/fork-pr-workflows-private-repos",
        # the registration token runner/ephemeral-runner.sh asks for before every job
        "/repos/{owner}/{repo}/actions/runners/registration-token",
        # the git database `ssp publish` writes the state branch with (one commit per run)
        "/repos/{owner}/{repo}/git/commits",
        "/repos/{owner}/{repo}/git/ref/{ref}",
        "/repos/{owner}/{repo}/git/refs",
        "/repos/{owner}/{repo}/git/refs/{ref}",
        "/repos/{owner}/{repo}/git/trees",
        # the comment commands' reactions on the member's comment (eyes, +1, confused, -1)
        "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
    }
)


def cut(description: dict[str, object]) -> dict[str, object]:
    """The description with only PATHS kept (and without the `x-webhooks` section)."""
    paths = description["paths"]
    assert isinstance(paths, dict)
    missing = PATHS - paths.keys()
    if missing:
        raise SystemExit(f"not in the description: {sorted(missing)}")
    out = {k: v for k, v in description.items() if k not in {"paths", "x-webhooks"}}
    out["paths"] = {k: v for k, v in paths.items() if k in PATHS}
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    description = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    sys.stdout.write(json.dumps(cut(description), sort_keys=True, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
