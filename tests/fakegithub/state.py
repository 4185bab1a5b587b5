"""The fake GitHub's world: users, repositories, pull requests, comments, Apps, and the
endpoint logic that reads and changes them.

No HTTP here: `GitHubState.handle` takes an operation id (GitHub's `operationId`, e.g.
`issues/create-comment`), the path parameters, query and JSON body, and the caller's identity,
and gives back a `Reply`. `server.py` wraps it in HTTP, authentication, the contract checks,
fault injection and the request log. Everything is guarded by one lock, because the HTTP
server answers each request on its own thread.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from . import gitdata, repoadmin
from . import resources as r
from . import settings as rs
from .gitdata import GitDatabase, Reply
from .issues import HANDLERS as ISSUE_HANDLERS
from .issues import Issue, IssuesMixin
from .reactions import HANDLERS as REACTION_HANDLERS
from .reactions import ReactionsMixin
from .settings import RepoSettings

# GitHub's limit on issue comment bodies (the API answers 422 beyond it).
MAX_COMMENT_CHARS = 65536
DOCS = "https://docs.github.com/rest"
_TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@dataclass(frozen=True)
class Identity:
    """Who a request authenticates as."""

    kind: str  # "user" (personal token) | "installation" (App installation token) | "app" (JWT)
    user: r.User
    installation_id: int | None = None
    app_id: int | None = None


@dataclass
class App:
    app_id: int
    slug: str
    public_key_pem: str
    bot: r.User
    installations: dict[int, r.Repo] = field(default_factory=dict)


def _not_found(docs: str = DOCS) -> Reply:
    return Reply(404, r.error("Not Found", docs, 404))


class GitHubState(IssuesMixin, ReactionsMixin):
    """In-memory GitHub: seed it from tests, read it back to check what the client did."""

    def __init__(self, *, login: str = "ssp-bot", web_url: str = "https://github.com") -> None:
        self.lock = threading.RLock()
        self.site = r.Site(api="http://unset.invalid", web=web_url)
        self.max_per_page = 100
        self._ids = iter(range(10_000, 1 << 40))
        # Comment ids beyond 2**31 like github.com's, to catch 32-bit assumptions.
        self._comment_ids = iter(range(3_000_000_001, 1 << 40))
        self.users: dict[str, r.User] = {}
        self.repos: dict[str, r.Repo] = {}
        self.pulls: dict[tuple[str, int], r.Pull] = {}
        self.comments: dict[int, r.Comment] = {}
        self.commit_links: dict[tuple[str, str], list[int]] = {}
        self.apps: dict[int, App] = {}
        self.tokens: dict[str, Identity] = {}
        self.settings: dict[str, RepoSettings] = {}
        self._init_issues()
        self.git: dict[str, GitDatabase] = {}  # per repository (full name, lower case)
        self.me = self.user(login)

    # ---- seeding ---------------------------------------------------------------------------

    def user(self, login: str, *, type: str = "User") -> r.User:
        """The user LOGIN, created on first mention."""
        with self.lock:
            key = login.lower()
            if key not in self.users:
                self.users[key] = r.User(login=login, id=next(self._ids), type=type)
            return self.users[key]

    def add_token(self, token: str, login: str) -> None:
        """Let TOKEN authenticate as the user LOGIN (a personal access token)."""
        with self.lock:
            self.tokens[token] = Identity("user", self.user(login))

    def add_repo(
        self, full_name: str, *, default_branch: str = "main", private: bool = True
    ) -> r.Repo:
        owner, name = full_name.split("/")
        with self.lock:
            org = self.user(owner, type="Organization")
            repo = r.Repo(org, name, next(self._ids), default_branch, private)
            self.repos[full_name.lower()] = repo
            return repo

    def repo(self, full_name: str) -> r.Repo:
        with self.lock:
            return self.repos[full_name.lower()]

    def add_pull(
        self,
        full_name: str,
        *,
        author: str,
        title: str,
        number: int | None = None,
        head_sha: str | None = None,
        head_ref: str | None = None,
        base_sha: str | None = None,
        body: str | None = None,
        files: Sequence[r.PullFile | str] = (),
        commits: Sequence[tuple[str, str | None, str | None]] = (),
    ) -> r.Pull:
        """An open pull request; FILES are paths (status "added") or PullFile objects; COMMITS
        are (sha, author login, committer login), None where no account is linked."""
        with self.lock:
            repo = self.repo(full_name)
            number = number if number is not None else self.next_number(full_name)
            pull = r.Pull(
                repo=repo,
                number=number,
                id=next(self._ids) + 2_000_000_000,
                author=self.user(author),
                title=title,
                head_sha=head_sha or r.fake_sha(f"{full_name}#{number}:head"),
                head_ref=head_ref or f"{author}/request-{number}",
                base_sha=base_sha or r.fake_sha(f"{full_name}:{repo.default_branch}"),
                base_ref=repo.default_branch,
                body=body,
                files=[f if isinstance(f, r.PullFile) else r.PullFile(f) for f in files],
                commits=[
                    r.PullCommit(
                        sha,
                        self.user(a) if a is not None else None,
                        self.user(c) if c is not None else None,
                    )
                    for sha, a, c in commits
                ],
            )
            self.pulls[(full_name.lower(), number)] = pull
            return pull

    def pull(self, full_name: str, number: int) -> r.Pull:
        with self.lock:
            return self.pulls[(full_name.lower(), number)]

    def merge_pull(
        self,
        full_name: str,
        number: int,
        *,
        merge_commit_sha: str | None = None,
        merged_by: str | None = None,
    ) -> r.Pull:
        """Merge the pull request: closed, merged_at set, its merge commit points back at it."""
        with self.lock:
            pull = self.pull(full_name, number)
            now = datetime.now(UTC)
            pull.state = "closed"
            pull.merged_at = pull.closed_at = pull.updated_at = now
            pull.merged_by = self.user(merged_by) if merged_by else self.me
            pull.merge_commit_sha = merge_commit_sha or r.fake_sha(f"{full_name}#{number}:merge")
            return pull

    def close_pull(self, full_name: str, number: int) -> r.Pull:
        """Close without merging."""
        with self.lock:
            pull = self.pull(full_name, number)
            pull.state = "closed"
            pull.closed_at = pull.updated_at = datetime.now(UTC)
            return pull

    def link_commit(self, full_name: str, sha: str, *numbers: int) -> None:
        """Say that commit SHA belongs to these pull requests (beyond heads and merge commits)."""
        with self.lock:
            self.commit_links.setdefault((full_name.lower(), sha), []).extend(numbers)

    def add_comment(
        self,
        full_name: str,
        number: int,
        body: str,
        *,
        author: str | None = None,
        association: str = "",
    ) -> r.Comment:
        """A comment by AUTHOR (default: the fake's own user); ASSOCIATION is how GitHub
        relates them to the repository (default: MEMBER, NONE for a bot)."""
        with self.lock:
            thread = self.issues.get((full_name.lower(), number)) or self.pull(full_name, number)
            made = self._new_comment(thread, body, self.user(author) if author else self.me)
            made.association = association
            return made

    def comments_on(self, full_name: str, number: int) -> list[r.Comment]:
        """The comments on a pull request, oldest first."""
        with self.lock:
            key = full_name.lower()
            return [
                c
                for c in sorted(self.comments.values(), key=lambda c: c.id)
                if c.repo.full_name.lower() == key and c.issue_number == number
            ]

    def add_app(self, app_id: int, public_key_pem: str, *, slug: str = "ssp-provisioner") -> App:
        """A GitHub App whose JWTs are checked with PUBLIC_KEY_PEM (RS256)."""
        with self.lock:
            app = App(app_id, slug, public_key_pem, self.user(f"{slug}[bot]", type="Bot"))
            self.apps[app_id] = app
            return app

    def install_app(self, app_id: int, full_name: str, installation_id: int) -> None:
        with self.lock:
            self.apps[app_id].installations[installation_id] = self.repo(full_name)

    def installation_token(self, app_id: int, installation_id: int) -> str:
        """A fresh installation token, as the App would get one (or as Actions hands a job
        its GITHUB_TOKEN: that too is an installation token, of the "github-actions" App)."""
        with self.lock:
            app = self.apps[app_id]
            if installation_id not in app.installations:
                raise KeyError(f"App {app_id} has no installation {installation_id}")
            token = "ghs_" + secrets.token_urlsafe(27)
            self.tokens[token] = Identity("installation", app.bot, installation_id, app_id)
            return token

    def _new_comment(self, pull: r.Pull | Issue, body: str, author: r.User) -> r.Comment:
        now = datetime.now(UTC)
        comment = r.Comment(pull.repo, pull.number, next(self._comment_ids), author, body, now, now)
        comment.on_issue = isinstance(pull, Issue)
        self.comments[comment.id] = comment
        return comment

    # ---- endpoints -------------------------------------------------------------------------

    def handle(
        self,
        operation_id: str,
        params: Mapping[str, str],
        query: Mapping[str, list[str]],
        body: Any,
        who: Identity,
    ) -> Reply | None:
        """The reply to one described operation, or None when the fake does not serve it."""
        handler = _HANDLERS.get(operation_id)
        if handler is None:
            return None
        with self.lock:
            if operation_id.startswith("apps/"):
                if who.kind != "app":
                    return Reply(401, r.error("A JSON web token could not be decoded", DOCS, 401))
            elif who.kind == "app":
                return Reply(401, r.error("Bad credentials", DOCS, 401))
            if "owner" in params:
                repo = self.repos.get(f"{params['owner']}/{params['repo']}".lower())
                if repo is None or not self._can_see(who, repo):
                    return _not_found()
            return handler(self, params, query, body, who)

    def _can_see(self, who: Identity, repo: r.Repo) -> bool:
        if who.kind == "installation":
            app = self.apps[who.app_id or 0]
            return app.installations.get(who.installation_id or 0) is repo
        if who.kind == "app":
            return True  # only /repos/{o}/{r}/installation gets here
        return True

    def _page(self, items: list[Any], path: str, query: Mapping[str, list[str]]) -> Reply:
        """One page of ITEMS, with GitHub's `Link` header (first/prev/next/last)."""
        per_page = min(int(query.get("per_page", ["30"])[0]), self.max_per_page)
        per_page = max(per_page, 1)
        page = max(int(query.get("page", ["1"])[0]), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page : page * per_page]

        def url(n: int) -> str:
            q = {k: v[0] for k, v in query.items()} | {"per_page": str(per_page), "page": str(n)}
            return f"{self.site.api}{path}?{urlencode(q)}"

        rels = []
        if page > 1:
            rels += [f'<{url(page - 1)}>; rel="prev"', f'<{url(1)}>; rel="first"']
        if page < last:
            rels += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        return Reply(200, chunk, {"Link": ", ".join(rels)} if rels else {})

    def _get_repo(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        return Reply(
            200, r.repository(self.site, self.repo(f"{p['owner']}/{p['repo']}"), full=True)
        )

    def _find_pull(self, p: Mapping[str, str], key: str) -> r.Pull | None:
        return self.pulls.get((f"{p['owner']}/{p['repo']}".lower(), int(p[key])))

    def _find_thread(self, p: Mapping[str, str]) -> r.Pull | Issue | None:
        """The issue or pull request `issue_number` names (the comments API takes both)."""
        return self._find_issue(p) or self._find_pull(p, "issue_number")

    def _get_pull(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        pull = self._find_pull(p, "pull_number")
        if pull is None:
            return _not_found(f"{DOCS}/pulls/pulls#get-a-pull-request")
        count = len(self.comments_on(pull.repo.full_name, pull.number))
        return Reply(200, r.pull_request(self.site, pull, full=True, comments=count))

    def _commit_pulls(
        self, p: Mapping[str, str], q: Mapping[str, list[str]], b: Any, who: Identity
    ) -> Reply:
        # A commit the fake does not know is treated as one without pull requests (a direct
        # push); github.com would answer 422, which the description does not list here.
        key, sha = f"{p['owner']}/{p['repo']}".lower(), p["commit_sha"]
        linked = set(self.commit_links.get((key, sha), []))
        found = [
            pull
            for (k, n), pull in sorted(self.pulls.items())
            if k == key and (n in linked or sha in (pull.head_sha, pull.merge_commit_sha))
        ]
        items = [r.pull_request(self.site, pull, full=False) for pull in found]
        return self._page(items, f"/repos/{p['owner']}/{p['repo']}/commits/{sha}/pulls", q)

    def _list_files(
        self, p: Mapping[str, str], q: Mapping[str, list[str]], b: Any, who: Identity
    ) -> Reply:
        pull = self._find_pull(p, "pull_number")
        if pull is None:
            return _not_found()
        items = [r.diff_entry(self.site, pull, f) for f in pull.files]
        return self._page(items, f"/repos/{p['owner']}/{p['repo']}/pulls/{pull.number}/files", q)

    def _list_commits(
        self, p: Mapping[str, str], q: Mapping[str, list[str]], b: Any, who: Identity
    ) -> Reply:
        pull = self._find_pull(p, "pull_number")
        if pull is None:
            return _not_found()
        # GitHub lists at most 250 commits of a pull request, oldest first.
        items = [r.pull_commit(self.site, pull.repo, c) for c in pull.commits[:250]]
        return self._page(items, f"/repos/{p['owner']}/{p['repo']}/pulls/{pull.number}/commits", q)

    def settings_of(self, full_name: str) -> RepoSettings:
        """The repository's settings (branch protection, rules, Actions), to seed or read."""
        with self.lock:
            return self.settings.setdefault(full_name.lower(), RepoSettings())

    def _protection(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        full = f"{p['owner']}/{p['repo']}"
        found = self.settings_of(full).protection.get(p["branch"])
        if found is None:
            return Reply(404, r.error("Branch not protected", DOCS, 404))
        return Reply(200, rs.protection(self.site.api, full, p["branch"], found))

    def _branch_rules(
        self, p: Mapping[str, str], q: Mapping[str, list[str]], b: Any, who: Identity
    ) -> Reply:
        full = f"{p['owner']}/{p['repo']}"
        settings = self.settings_of(full)
        rules = [*settings.branch_rules.get(p["branch"], []), *settings.all_branch_rules]
        return self._page(rules, f"/repos/{full}/rules/branches/{p['branch']}", q)

    def _workflow_permissions(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        settings = self.settings_of(f"{p['owner']}/{p['repo']}")
        return Reply(
            200,
            {
                "default_workflow_permissions": settings.default_workflow_permissions,
                "can_approve_pull_request_reviews": settings.can_approve_pull_request_reviews,
            },
        )

    def _fork_approval(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        settings = self.settings_of(f"{p['owner']}/{p['repo']}")
        return Reply(200, {"approval_policy": settings.fork_approval})

    def _runners(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        return Reply(200, rs.runners(self.settings_of(f"{p['owner']}/{p['repo']}").runners))

    def _registration_token(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        """A new runner registration token, shaped like github.com's (29 upper-case letters and
        digits); the settings keep every one handed out so that tests can follow it."""
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(29))
        self.settings_of(f"{p['owner']}/{p['repo']}").registration_tokens.append(token)
        return Reply(
            201, {"token": token, "expires_at": r.iso(datetime.now(UTC) + timedelta(hours=1))}
        )

    def _list_comments(
        self, p: Mapping[str, str], q: Mapping[str, list[str]], b: Any, who: Identity
    ) -> Reply:
        pull = self._find_thread(p)
        if pull is None:
            return _not_found()
        found = self.comments_on(pull.repo.full_name, pull.number)
        if "since" in q:
            since = datetime.fromisoformat(q["since"][0].replace("Z", "+00:00"))
            found = [c for c in found if c.updated_at >= since]
        items = [r.issue_comment(self.site, c) for c in found]
        return self._page(
            items, f"/repos/{p['owner']}/{p['repo']}/issues/{pull.number}/comments", q
        )

    def _create_comment(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        pull = self._find_thread(p)
        if pull is None:
            return _not_found()
        if len(b["body"]) > MAX_COMMENT_CHARS:
            return _too_long()
        comment = self._new_comment(pull, b["body"], who.user)
        return Reply(
            201, r.issue_comment(self.site, comment), {"Location": _location(self, comment)}
        )

    def _comment(self, p: Mapping[str, str]) -> r.Comment | None:
        comment = self.comments.get(int(p["comment_id"]))
        if comment is None or comment.repo.full_name.lower() != f"{p['owner']}/{p['repo']}".lower():
            return None
        return comment

    def _get_comment(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        comment = self._comment(p)
        return Reply(200, r.issue_comment(self.site, comment)) if comment else _not_found()

    def _update_comment(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        comment = self._comment(p)
        if comment is None:
            return _not_found()
        if len(b["body"]) > MAX_COMMENT_CHARS:
            return _too_long()
        comment.body = b["body"]
        comment.updated_at = datetime.now(UTC)
        return Reply(200, r.issue_comment(self.site, comment))

    def _delete_comment(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        comment = self._comment(p)
        if comment is None:
            return _not_found()
        del self.comments[comment.id]
        return Reply(204)

    def _get_user(self, p: Any, q: Any, b: Any, who: Identity) -> Reply:
        if who.kind != "user":
            # What github.com answers an installation token (or Actions' GITHUB_TOKEN).
            return Reply(
                403,
                r.error(
                    "Resource not accessible by integration",
                    f"{DOCS}/users/users#get-the-authenticated-user",
                    403,
                ),
            )
        return Reply(200, r.private_user(self.site, who.user))

    def _get_installation(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        app = self.apps[who.app_id or 0]
        repo = self.repo(f"{p['owner']}/{p['repo']}")
        for installation_id, installed in app.installations.items():
            if installed is repo:
                return Reply(
                    200,
                    r.installation(
                        self.site,
                        installation_id=installation_id,
                        app_id=app.app_id,
                        app_slug=app.slug,
                        account=repo.owner,
                    ),
                )
        return _not_found(
            f"{DOCS}/apps/apps#get-a-repository-installation-for-the-authenticated-app"
        )

    def _create_token(self, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
        app = self.apps[who.app_id or 0]
        installation_id = int(p["installation_id"])
        if installation_id not in app.installations:
            return _not_found()
        token = self.installation_token(app.app_id, installation_id)
        expires = r.iso(datetime.now(UTC) + timedelta(hours=1))
        return Reply(
            201,
            {
                "token": token,
                "expires_at": expires,
                "permissions": {"issues": "write", "pull_requests": "write", "metadata": "read"},
                "repository_selection": "selected",
            },
        )


def validation_failed(resource: str, field: str, code: str) -> Reply:
    """GitHub's 422 for a request body it will not take."""
    return Reply(
        422,
        {
            "message": "Validation Failed",
            "errors": [{"resource": resource, "code": code, "field": field}],
            "documentation_url": DOCS,
            "status": "422",
        },
    )


def _too_long() -> Reply:
    return Reply(
        422,
        {
            "message": "Validation Failed",
            "errors": [
                {
                    "resource": "IssueComment",
                    "code": "custom",
                    "field": "body",
                    "message": f"body is too long (maximum is {MAX_COMMENT_CHARS} characters)",
                }
            ],
            "documentation_url": f"{DOCS}/issues/comments#create-an-issue-comment",
            "status": "422",
        },
    )


def _location(state: GitHubState, comment: r.Comment) -> str:
    return f"{state.site.api}/repos/{comment.repo.full_name}/issues/comments/{comment.id}"


_HANDLERS = {
    "repos/get": GitHubState._get_repo,
    "pulls/get": GitHubState._get_pull,
    "repos/list-pull-requests-associated-with-commit": GitHubState._commit_pulls,
    "pulls/list-files": GitHubState._list_files,
    "pulls/list-commits": GitHubState._list_commits,
    "repos/get-branch-protection": GitHubState._protection,
    "repos/get-branch-rules": GitHubState._branch_rules,
    "actions/get-github-actions-default-workflow-permissions-repository": (
        GitHubState._workflow_permissions
    ),
    "actions/get-fork-pr-contributor-approval-permissions-repository": (GitHubState._fork_approval),
    "actions/list-self-hosted-runners-for-repo": GitHubState._runners,
    "actions/create-registration-token-for-repo": GitHubState._registration_token,
    "issues/list-comments": GitHubState._list_comments,
    "issues/create-comment": GitHubState._create_comment,
    "issues/get-comment": GitHubState._get_comment,
    "issues/update-comment": GitHubState._update_comment,
    "issues/delete-comment": GitHubState._delete_comment,
    "users/get-authenticated": GitHubState._get_user,
    "apps/get-repo-installation": GitHubState._get_installation,
    "apps/create-installation-access-token": GitHubState._create_token,
    **ISSUE_HANDLERS,
    **REACTION_HANDLERS,
    **gitdata.HANDLERS,
    **repoadmin.HANDLERS,
}
