"""The GitHub adapter: pull requests of a commit, one pull request and its files, the sticky
comment.

The only module that imports PyGithub. It turns PyGithub's objects into `PullRef` and
`CommentRef` and every PyGithub, requests or PyJWT exception into `GithubError` (chained,
and never with the token in its message). It retries by itself, because PyGithub's own retry
sleeps without limit, raises `requests` errors once it gives up, and does not retry PATCH:
transient failures (5xx, 429, a 403 rate limit, a dropped connection) are tried again up to
`max_attempts` times, waiting what GitHub's `Retry-After` (seconds or an HTTP date) or
`X-RateLimit-Reset` asks, else 1 s, 2 s, 4 s …; one call never sleeps more than `max_wait_s`
in total, and a call that would have to wait longer gives up at once.

The sticky comment: one comment per pull request, written by us and carrying a hidden marker
(`<!-- ssp:apply -->`), created once and edited in place afterwards. A failed create is not
simply sent again (it may have reached GitHub although the answer did not reach us): the
whole "find, then edit or create" step is redone, so a comment that did get made is found by
its marker and edited instead of doubled.

Reads no environment: the CLI passes the token or the App credentials in.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import jwt
from github import Auth, Github, GithubException, GithubIntegration
from github.IssueComment import IssueComment
from github.PullRequest import PullRequest
from github.Repository import Repository

from provisioner.github.failures import LIBRARY_ERRORS, classify, rate_limited
from provisioner.values.changes import CommitBy
from provisioner.values.errors import GithubError, UsageError

T = TypeVar("T")

_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_SHA = re.compile(r"[0-9a-fA-F]{7,64}")
# GitHub shows a deleted account as "ghost".
_GHOST = "ghost"
_NOT_LOOKED_UP = object()
_USER_AGENT = "super-server-platform"


@dataclass(frozen=True)
class PullRef:
    number: int
    author: str
    title: str
    head_sha: str
    merged: bool
    url: str  # the pull request's web page (html_url)


@dataclass(frozen=True)
class CommentRef:
    id: int
    url: str  # the comment's web address (html_url)
    created: bool  # False when an existing comment was edited (or already said this)


@dataclass(frozen=True)
class AppCredentials:
    """A GitHub App's id and private key; the installation is looked up when not given."""

    app_id: int
    private_key_pem: str = field(repr=False)
    installation_id: int | None = None


class GitHubClient:
    """One repository on GitHub (or GitHub Enterprise Server, through `api_url`)."""

    def __init__(
        self,
        *,
        repository: str,
        token: str | None = None,
        app: AppCredentials | None = None,
        api_url: str = "https://api.github.com",
        max_attempts: int = 4,
        max_wait_s: float = 30.0,
        timeout_s: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (token is None) == (app is None):
            raise UsageError("GitHub: give either a token or GitHub App credentials")
        if token is not None and not token.strip():
            raise UsageError("GitHub: the token is empty")
        if not _REPOSITORY.fullmatch(repository):
            raise UsageError(f"GitHub: {repository!r} is not a repository name like owner/name")
        if max_attempts < 1 or max_wait_s < 0 or timeout_s <= 0:
            raise UsageError("GitHub: max_attempts ≥ 1, max_wait_s ≥ 0 and timeout_s > 0")
        self.repository = repository
        self._token = token
        self._app = app
        self._api_url = api_url.rstrip("/")
        self._max_attempts = max_attempts
        self._max_wait_s = max_wait_s
        self._timeout = max(1, math.ceil(timeout_s))  # PyGithub takes whole seconds
        self._sleep = sleep
        self._clock = clock
        self._github: Github | None = None
        self._login: object = _NOT_LOOKED_UP
        self._app_auth: Auth.AppAuth | None = None
        if app is not None:
            self._app_auth = Auth.AppAuth(app.app_id, app.private_key_pem)
            try:
                self._app_auth.create_jwt()  # fail here, not at the first request
            except jwt.PyJWTError as e:
                raise UsageError(
                    f"GitHub App {app.app_id}: the private key is not usable: {e}"
                ) from e

    # ---- public API ------------------------------------------------------------------------

    def merged_pulls_for_commit(self, sha: str) -> list[PullRef]:
        """The merged pull requests that brought commit SHA in (usually one; none for a
        direct push)."""
        if not _SHA.fullmatch(sha):
            raise UsageError(f"GitHub: {sha!r} is not a commit id")

        def once() -> list[PullRef]:
            pulls = self._repo().get_commit(sha).get_pulls()
            # merged_at, not merged: the list's items lack `merged`, and reading it would make
            # PyGithub fetch every pull request again.
            return [_pull_ref(p, merged=True) for p in pulls if p.merged_at is not None]

        return self._attempt(f"list pull requests of commit {sha[:12]}", once)

    def pull(self, number: int) -> PullRef:
        def once() -> PullRef:
            p = self._repo().get_pull(number)
            return _pull_ref(p, merged=p.merged)

        return self._attempt(f"get pull request #{number}", once)

    def pull_files(self, number: int) -> list[str]:
        """The paths pull request NUMBER touches; a renamed file counts under both names
        (what it was is gone, what it is now is new). GitHub lists at most 3,000 files."""

        def once() -> list[str]:
            paths: list[str] = []
            for f in self._repo().get_pull(number).get_files():
                if f.previous_filename:
                    paths.append(f.previous_filename)
                paths.append(f.filename)
            return paths

        return self._attempt(f"list the files of #{number}", once)

    def pull_commits(self, number: int) -> list[CommitBy]:
        """The commits of pull request NUMBER and the accounts GitHub links to each as author
        and committer (None where the e-mail is on no account). GitHub lists at most 250."""

        def once() -> list[CommitBy]:
            return [
                CommitBy(
                    c.sha,
                    c.author.login if c.author is not None else None,
                    c.committer.login if c.committer is not None else None,
                )
                for c in self._repo().get_pull(number).get_commits()
            ]

        return self._attempt(f"list the commits of #{number}", once)

    def repository_settings(
        self, branch: str, probe: str, environment: str = "", state_branch: str = ""
    ) -> dict[str, Any]:
        """What `ssp doctor --github` judges, as GitHub's JSON: `protection` of BRANCH (None
        when it has none), the ruleset `rules` on BRANCH and on PROBE (a branch name no one
        uses: what applies there applies to every branch), the Actions `workflow` token
        defaults, `fork` PR approval and a private repository's `fork_workflows` settings
        (each None where GitHub does not offer it), the repository's self-hosted `runners`;
        the deployment ENVIRONMENT (None when missing) with its `branch_policies`, and the
        `state_rules` on STATE_BRANCH with the `rulesets` (by id) of its `update` rules,
        whose bypass lists say who may still push. Needs administration read access."""
        base = f"{self._api_url}/repos/{self.repository}"

        def get(path: str, missing_ok: bool = False) -> Any:
            try:
                _headers, data = self._client().requester.requestJsonAndCheck(
                    "GET", f"{base}{path}"
                )
            except GithubException as e:
                # 403: a setting this repository does not have (fork PR workflows of a
                # public one); 404: none set up, or none readable with this token
                if missing_ok and e.status in (403, 404):
                    return None
                raise
            return data

        def rules(name: str) -> list[Any]:
            found: list[Any] = []
            page = 1
            while True:
                chunk = get(f"/rules/branches/{quote(name, safe='')}?per_page=100&page={page}")
                found += chunk or []
                if not chunk or len(chunk) < 100:
                    return found
                page += 1

        def deployment(name: str) -> tuple[Any, list[Any]]:
            env = get(f"/environments/{quote(name, safe='')}", True) if name else None
            custom = ((env or {}).get("deployment_branch_policy") or {}).get(
                "custom_branch_policies"
            )
            if not custom:
                return env, []
            found = get(f"/environments/{quote(name, safe='')}/deployment-branch-policies")
            return env, list((found or {}).get("branch_policies") or [])

        def once() -> dict[str, Any]:
            env, policies = deployment(environment)
            state_rules = rules(state_branch) if state_branch else []
            ids = sorted({r.get("ruleset_id") for r in state_rules if r.get("type") == "update"})
            return {
                "protection": get(f"/branches/{quote(branch, safe='')}/protection", True),
                "rules": rules(branch),
                "probe_rules": rules(probe),
                "workflow": get("/actions/permissions/workflow"),
                "fork": get("/actions/permissions/fork-pr-contributor-approval", True),
                "fork_workflows": get("/actions/permissions/fork-pr-workflows-private-repos", True),
                "runners": (get("/actions/runners?per_page=100") or {}).get("runners", []),
                "environment": env,
                "branch_policies": policies,
                "state_rules": state_rules,
                "rulesets": {i: get(f"/rulesets/{int(i)}", True) for i in ids if i is not None},
            }

        return self._attempt("read the repository's settings", once)

    def upsert_comment(self, number: int, body: str, marker: str) -> CommentRef:
        """Make our one comment on pull request NUMBER say BODY: edit it if it exists (found
        by MARKER among our own comments), else create it. The marker is put first if BODY
        lacks it."""
        if not (marker.startswith("<!--") and marker.endswith("-->")) or "\n" in marker:
            raise ValueError(f"the marker must be one hidden HTML comment, got {marker!r}")
        text = body if marker in body else f"{marker}\n{body}"
        tried_create = False

        def once() -> CommentRef:
            nonlocal tried_create
            issue = self._repo().get_issue(number)
            for comment in issue.get_comments():
                if marker in (comment.body or "") and self._is_ours(comment):
                    if comment.body != text:
                        comment.edit(text)
                    return CommentRef(comment.id, comment.html_url, created=tried_create)
            tried_create = True
            made = issue.create_comment(text)
            return CommentRef(made.id, made.html_url, created=True)

        return self._attempt(f"write the comment on #{number}", once)

    # ---- PyGithub plumbing -----------------------------------------------------------------

    def _client(self) -> Github:
        if self._github is None:
            auth: Auth.Auth
            if self._app_auth is not None and self._app is not None:
                installation_id = self._app.installation_id
                if installation_id is None:
                    owner, name = self.repository.split("/")
                    integration = GithubIntegration(
                        auth=self._app_auth,
                        base_url=self._api_url,
                        timeout=self._timeout,
                        user_agent=_USER_AGENT,
                        retry=None,
                        seconds_between_requests=None,
                        seconds_between_writes=None,
                    )
                    installation_id = integration.get_repo_installation(owner, name).id
                auth = self._app_auth.get_installation_auth(installation_id)
            else:
                auth = Auth.Token(self._token or "")
            self._github = Github(
                auth=auth,
                base_url=self._api_url,
                timeout=self._timeout,
                user_agent=_USER_AGENT,
                per_page=100,
                # Our _attempt loop retries and waits; PyGithub must do neither on its own.
                retry=None,
                seconds_between_requests=None,
                seconds_between_writes=None,
                # Objects are fetched when read, not when made: no GET of the repository first.
                lazy=True,
            )
        return self._github

    def _repo(self) -> Repository:
        return self._client().get_repo(self.repository)

    def _is_ours(self, comment: IssueComment) -> bool:
        """Written by these credentials? Others may quote the marker; their comments stay."""
        user = comment.user
        if user is None:
            return False
        login = self._whoami()
        if login is not None:
            return bool(user.login == login)
        # Installation tokens and Actions' GITHUB_TOKEN cannot read GET /user; their comments
        # are by a "…[bot]" account, and only GitHub Apps have such accounts.
        return bool(user.type == "Bot")

    def _whoami(self) -> str | None:
        if self._login is _NOT_LOOKED_UP:
            if self._app is not None:
                self._login = None
            else:
                try:
                    self._login = self._client().get_user().login
                except GithubException as e:
                    if e.status != 403 or rate_limited(e):
                        raise
                    self._login = None  # "Resource not accessible by integration"
        return self._login if isinstance(self._login, str) else None

    def _attempt(self, what: str, once: Callable[[], T]) -> T:
        """Run ONCE, again after transient failures, within max_attempts and max_wait_s."""
        waited = 0.0
        attempt = 1
        while True:
            try:
                return once()
            except LIBRARY_ERRORS as e:
                failure = classify(e, self._clock())
                tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                if not failure.retryable or attempt >= self._max_attempts:
                    raise GithubError(
                        self._scrub(f"GitHub: {what}: {failure.summary}{tries}")
                    ) from e
                wait = failure.wait_s if failure.wait_s is not None else float(2 ** (attempt - 1))
                if waited + wait > self._max_wait_s:
                    raise GithubError(
                        self._scrub(
                            f"GitHub: {what}: {failure.summary}{tries}; retrying needs a wait of "
                            f"{wait:.0f} s, beyond the limit of {self._max_wait_s:.0f} s"
                        )
                    ) from e
                self._sleep(wait)
                waited += wait
                attempt += 1

    def _scrub(self, text: str) -> str:
        if self._token and len(self._token) >= 4:
            text = text.replace(self._token, "***")
        return text


def _pull_ref(p: PullRequest, *, merged: bool) -> PullRef:
    return PullRef(
        number=p.number,
        author=p.user.login if p.user is not None else _GHOST,
        title=p.title,
        head_sha=p.head.sha,
        merged=merged,
        url=p.html_url,
    )
