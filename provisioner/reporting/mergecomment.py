"""The comment a merged pull request gets after an apply: which results belong to it, and
the text, rendered from one template per outcome.

A pull request's results are those of the request files it touched (a renamed file under
both names), plus the problems found in those files on `main`. The template follows from
them: `comment_failed` when anything failed or was skipped (what did work is listed too),
`comment_waiting` when a request waits in line for GPUs that are taken, `comment_retired`
when the PR only gave things back, `comment_account` when it only asked for logins on a
shared server, `comment_applied` otherwise. Each comment starts with the
hidden MARKER, by which the next run finds and edits it instead of adding another.

A request that waits was merged by an earlier commit than the one being applied, so
`post_waitlist` finds its pull request by the commit its file landed with and edits that
comment on every pass (GitHub is asked only when the text changed) and once when it is made.

Text only, plus `post`, which walks the pull requests of a commit through a small client
interface (`CommentClient`, which provisioner.github.client's GitHubClient fits). This module does
not import PyGithub and reads no environment: the CLI hands in the client, the run's address
and the secrets to keep out of the text.

"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from provisioner.reporting.applyreport import outcome_dict, rdp_addresses, ssh_config
from provisioner.reporting.render import render
from provisioner.validation.catalogue import competing
from provisioner.values.errors import GithubError
from provisioner.values.outcomes import GIVEN_BACK, ApplyResult, Done, Outcome, Subject
from provisioner.values.policymodels import Policy
from provisioner.values.problems import Problem
from provisioner.values.spec import SCHEDULES
from provisioner.values.waitlist import Landed, line_text

MARKER = "<!-- ssp:apply -->"
TEMPLATES = ("applied", "failed", "retired", "account", "image", "waiting")

# A private key block, whatever its kind (OPENSSH, RSA, EC, ENCRYPTED …).
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
# The run's address goes into a Markdown link: plain http(s), nothing that ends the link.
_WEB_URL = re.compile(r"https?://[A-Za-z0-9.:-]+(/[A-Za-z0-9._~/%-]*)?")
_UNITS = {"d": "day", "w": "week", "m": "month", "y": "year"}
# A message longer than this is shortened in the list and shown whole in a <details> fold.
_SHORT = 160


class PullLike(Protocol):
    @property
    def number(self) -> int: ...


class CommentLike(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def created(self) -> bool: ...


class CommentClient(Protocol):
    """What `post` needs from GitHub (provisioner.github.client.GitHubClient has it)."""

    def merged_pulls_for_commit(self, sha: str) -> Sequence[PullLike]: ...

    def pull_files(self, number: int) -> list[str]: ...

    def upsert_comment(self, number: int, body: str, marker: str) -> CommentLike: ...


@dataclass(frozen=True)
class Context:
    """What every comment of one run shares."""

    policy: Policy | None  # None only when the config itself is what stopped the apply
    sha: str
    run_url: str = ""  # the workflow run's page, when there is one
    purposes: Mapping[str, str] = field(default_factory=dict)  # request path -> purpose
    secrets: tuple[str, ...] = field(default=(), repr=False)  # never to appear in a comment


@dataclass(frozen=True)
class Draft:
    template: str  # one of TEMPLATES
    body: str


@dataclass(frozen=True)
class Posted:
    number: int
    url: str = ""
    created: bool = False
    error: str = ""  # set when GitHub refused; a re-run of the apply tries again


def belongs(
    paths: Iterable[str], outcomes: Sequence[Outcome], problems: Sequence[Problem]
) -> tuple[tuple[Outcome, ...], tuple[Problem, ...]]:
    """The outcomes and problems of the request files in PATHS."""
    touched = frozenset(paths)
    return (
        tuple(o for o in outcomes if o.request_path in touched),
        tuple(p for p in problems if p.path in touched),
    )


def template_for(outcomes: Sequence[Outcome], problems: Sequence[Problem], blocked: bool) -> str:
    if blocked or problems or any(not o.ok for o in outcomes):
        return "failed"
    if any(o.action == Done.WAITING for o in outcomes):
        return "waiting"
    if all(o.action in GIVEN_BACK for o in outcomes):
        return "retired"
    if all(o.kind == Subject.ACCOUNT for o in outcomes):
        return "account"
    if all(o.kind == Subject.IMAGE for o in outcomes):
        return "image"
    return "applied"


def draft(
    ctx: Context,
    outcomes: Sequence[Outcome],
    problems: Sequence[Problem] = (),
    *,
    blocked: bool = False,
) -> Draft | None:
    """The comment for one pull request, or None when nothing of this run concerns it.

    BLOCKED: nothing was applied at all, because of PROBLEMS that concern every request.
    """
    if not outcomes and not problems:
        return None
    name = template_for(outcomes, problems, blocked)
    # Redacted before rendering too: escaping would split a key block past recognition.
    rows = [_redacted(_row(ctx, o), ctx.secrets) for o in outcomes]
    problems = [replace(p, message=redact(p.message, ctx.secrets)) for p in problems]
    # A waiting comment is rendered again on every pass: without the run's link it stays
    # the same text (so it is not edited) until the place in line or the wait changes.
    linked = name != "waiting" and _WEB_URL.fullmatch(ctx.run_url)
    body = render(
        f"comment_{name}.md.j2",
        marker=MARKER,
        sha=ctx.sha,
        run_url=ctx.run_url if linked else "",
        retention_days=ctx.policy.retention_days if ctx.policy else None,
        page_url=ctx.policy.snapshot.page_url if ctx.policy else "",
        blocked=blocked,
        failed=[r for r in rows if not r["ok"]],
        waiting=[r for r in rows if r["action"] == Done.WAITING],
        containers=[
            r
            for r in rows
            if r["ok"] and r["kind"] == "container" and not r["gone"] and not r.get("line")
        ],
        accounts=[r for r in rows if r["ok"] and r["kind"] == "account" and not r["gone"]],
        images=[r for r in rows if r["ok"] and r["kind"] == "image" and not r["gone"]],
        gone=[r for r in rows if r["ok"] and r["gone"]],
        problems=list(problems),
        competing=any(competing(p.rule) for p in problems),
    )
    return Draft(name, redact(_tidy(body), ctx.secrets))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Belt and braces: no secret and no private key leaves in a comment, whatever the data."""
    for secret in secrets:
        if len(secret) >= 8:  # a short "secret" would blank out ordinary words
            text = text.replace(secret, "***")
    return _PRIVATE_KEY.sub("[private key removed]", text)


def post(
    client: CommentClient,
    ctx: Context,
    result: ApplyResult | None,
    problems: Sequence[Problem],
    log: Callable[[str], None] = lambda _line: None,
) -> list[Posted]:
    """Comment on each pull request merged by ctx.sha. RESULT is None when nothing was
    applied because of PROBLEMS (which then concern every pull request).

    Finding the pull requests may raise GithubError; a refused comment on one pull request
    is recorded in its `Posted` and the others still get theirs.
    """
    done = []
    for pull in client.merged_pulls_for_commit(ctx.sha):
        try:
            if result is None:
                text = draft(ctx, (), problems, blocked=True)
            else:
                mine, theirs = belongs(client.pull_files(pull.number), result.outcomes, problems)
                text = draft(ctx, mine, theirs)
            if text is None:
                log(f"#{pull.number} touched no request file; no comment")
                continue
            ref = client.upsert_comment(pull.number, text.body, MARKER)
        except GithubError as e:
            done.append(Posted(pull.number, error=str(e)))
            continue
        done.append(Posted(pull.number, ref.url, ref.created))
    return done


def post_waitlist(
    client: CommentClient,
    ctx: Context,
    result: ApplyResult,
    landed: Mapping[str, Landed],
    made_late: Iterable[str] = (),
    log: Callable[[str], None] = lambda _line: None,
    *,
    posted: str = "",
) -> list[Posted]:
    """The comments of pull requests merged BEFORE ctx.sha whose requests are in line: each
    pass while a request waits (GitHub is asked to edit only when the text changed, that
    is when its place or what it waits for did), and once when it is made (MADE_LATE: the
    request paths this pass created after they had waited). Each pull request is found by
    the commit its request first landed with (LANDED) and must have touched that file.
    POSTED: the commit whose pull requests `post` already commented on in this run (`ssp
    apply`'s; none for `ssp maintain`).
    """
    # A container that waits for more GPUs (or its own back) was told by the pull request
    # that asked for them; the one that made it is left alone.
    paths = {o.request_path for o in result.outcomes if o.action == Done.WAITING and not o.exists}
    paths |= set(made_late)
    commits = sorted({landed[p].sha for p in paths if p in landed and landed[p].sha != posted})
    done = []
    for sha in commits:
        # The PR's own merge commit and no run link, never this run's: the text stays the
        # same from pass to pass (GitHub is not asked to edit it) until the request's does.
        mine_ctx = replace(ctx, sha=sha, run_url="")
        try:
            for pull in client.merged_pulls_for_commit(sha):
                files = client.pull_files(pull.number)
                mine, _ = belongs(files, result.outcomes, ())
                if not any(o.request_path in paths for o in mine):
                    continue
                text = draft(mine_ctx, mine)
                if text is None:
                    continue
                ref = client.upsert_comment(pull.number, text.body, MARKER)
                log(f"waitlist: the comment on #{pull.number} is up to date: {ref.url}")
                done.append(Posted(pull.number, ref.url, ref.created))
        except GithubError as e:
            done.append(Posted(0, error=f"{sha[:12]}: {e}"))
    return done


def made_late(
    result: ApplyResult, landed: Mapping[str, Landed], sha: str, created: Collection[str]
) -> set[str]:
    """Of the requests this pass's plan CREATED, those that landed on main before SHA (the
    commit an apply runs for; "" for maintenance, whose passes follow no merge): they waited
    in line (or failed before), and their pull request's comment still says so. Made
    (`created`) or not (`failed`: its comment says why now)."""
    return {
        o.request_path
        for o in result.outcomes
        if o.action in (Done.CREATED, Done.FAILED)
        and o.request_path in created
        and o.request_path in landed
        and landed[o.request_path].sha != sha
    }


def _redacted(row: dict[str, Any], secrets: Iterable[str]) -> dict[str, Any]:
    return {k: redact(v, secrets) if isinstance(v, str) else v for k, v in row.items()}


def _tidy(text: str) -> str:
    """The templates favour readable source over exact blank lines: one blank line at most,
    no trailing spaces, one newline at the end."""
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


def _row(ctx: Context, o: Outcome) -> dict[str, Any]:
    if ctx.policy is None:
        raise ValueError("results of an apply need the policy they were applied under")
    row = outcome_dict(ctx.policy, o)
    row["gone"] = o.action in GIVEN_BACK
    row["purpose"] = ctx.purposes.get(o.request_path, "")
    row["status"] = _status(o)
    row["snapshots"] = _snapshots(o.snapshots)
    row["ssh_config"] = ssh_config(ctx.policy, o)
    # The instance's own address (no forwarded port): reachable from the host only.
    row["internal"] = bool(row["ssh_command"]) and not row["ssh_command"].startswith("ssh -p")
    row["rdp"], row["rdp_public"] = rdp_addresses(ctx.policy, o)
    row["sudo"] = o.sudo
    if o.action == Done.WAITING:
        row["line"] = line_text(o.place, o.waits_for, o.frees)
    first = o.message.strip().splitlines()[0] if o.message.strip() else ""
    row["short"] = first if len(first) <= _SHORT else first[: _SHORT - 1] + "…"
    row["long"] = o.message.strip() if row["short"] != o.message.strip() else ""
    if o.kind == Subject.ACCOUNT and o.server in ctx.policy.shared_servers:
        row["server_description"] = ctx.policy.shared_servers[o.server].description
    else:
        row["server_description"] = ""
    return row


def _status(o: Outcome) -> str:
    if o.kind == Subject.ACCOUNT and o.action == Done.UNCHANGED:
        return "ready; nothing needed changing"
    if o.kind == Subject.IMAGE:
        return "published" if o.action == Done.PUBLISHED else "published; nothing needed changing"
    return {
        "created": "created",
        "updated": "updated",
        "started": "started again (it was found stopped)",
        "restored": "rolled back to a snapshot, then started",
        "unchanged": "running; nothing needed changing",
    }.get(o.action, o.action)


def _snapshots(schedule: str) -> str:
    if schedule not in SCHEDULES:
        return "none" if schedule in ("", "none") else schedule
    kept = SCHEDULES[schedule][1]  # LXD's snapshots.expiry, e.g. "2w"
    count, unit = int(kept[:-1]), _UNITS[kept[-1]]
    return f"{schedule}, each kept {count} {unit}{'s' if count != 1 else ''}"
