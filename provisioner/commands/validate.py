"""`ssp validate`: check request files; with --base, check a pull request against its base."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from provisioner.commands import add_repo_arg, clock, examples
from provisioner.git import files as gitfiles
from provisioner.git import history as gitrepo
from provisioner.reporting import validationreport
from provisioner.reporting.escape import log_line
from provisioner.status import preview
from provisioner.status import snapshot as snapshots
from provisioner.status.snapshot import Snapshot
from provisioner.validation.authz import commit_people
from provisioner.validation.config import load_config
from provisioner.validation.validate import Validation, load_request, validate_pull, validate_tree
from provisioner.values.changes import FileChange
from provisioner.values.errors import GithubError, UsageError
from provisioner.values.held import Held
from provisioner.values.models import LOGIN_MAX, LOGIN_PATTERN
from provisioner.values.problems import Position, Problem


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "validate",
        help="check request files against the schema, the policy and each other",
        description="Check your change as the pull request check will: in a clone, what you "
        "changed (committed or not) is merged into origin/main and judged, with every problem "
        "on your own file; problems already on main are notes. --all checks every request on "
        "its own; --base checks a pull request's commits against its base (the PR check).",
        **examples(
            "ssp validate  # my change, as the PR check will judge it",
            "ssp validate --author alice  # ... when git does not know my GitHub login",
            "ssp validate --all  # every request on main (admins, CI)",
            "ssp validate --base origin/main --author alice  # committed work only, as in CI",
            "ssp validate --snapshot snapshot.json  # ... and what apply would give it now",
        ),
    )
    add_repo_arg(parser)
    parser.add_argument(
        "--all",
        action="store_true",
        help="check every request on its own, not a change (tree mode)",
    )
    parser.add_argument("--base", metavar="REF", help="the PR's base commit or branch")
    parser.add_argument("--author", metavar="LOGIN", help="the PR author's GitHub login")
    parser.add_argument(
        "--pusher", metavar="LOGIN", help="who pushed to the PR (the event's sender), judged too"
    )
    parser.add_argument(
        "--pull",
        type=int,
        metavar="NUMBER",
        help="the PR's number: who wrote and committed each of its commits is read from GitHub "
        "(GITHUB_TOKEN, GITHUB_REPOSITORY) and judged too",
    )
    parser.add_argument(
        "--snapshot",
        type=Path,
        metavar="FILE",
        help="the host's published state (snapshot.json of the ssp-state branch): preview which "
        "GPUs, port and disk the PR's requests would get now, and warn where they would not fit; "
        "a missing, unreadable or stale file only says so",
    )
    parser.add_argument(
        "--format",
        choices=("text", "github", "json"),
        help="output (default: text; github when GITHUB_ACTIONS=true)",
    )
    parser.set_defaults(func=run)


def _event(env: Mapping[str, str]) -> dict[str, Any]:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return event if isinstance(event, dict) else {}


def _login(event: Mapping[str, Any], *keys: str) -> str | None:
    value: Any = event
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) and value else None


def _pull_number(args: argparse.Namespace, event: Mapping[str, Any]) -> int | None:
    if args.pull is not None:
        return int(args.pull)
    number = event.get("number")
    return number if isinstance(number, int) and "pull_request" in event else None


def _commit_people(
    args: argparse.Namespace, env: Mapping[str, str], number: int | None
) -> tuple[dict[str, str], list[Problem], tuple[str, ...]]:
    """Who wrote and committed what the merge brings in, as GitHub's API reports it."""
    if number is None:  # a local run: only the given author is judged
        return {}, [], ()
    token = env.get("GITHUB_TOKEN", "").strip()
    repository = env.get("GITHUB_REPOSITORY", "").strip()
    if not (token and repository):
        raise UsageError(
            f"--pull {number} needs GITHUB_TOKEN and GITHUB_REPOSITORY to read its commits"
        )
    # PyGithub loads only when commits are looked up.
    from provisioner.github.client import GitHubClient  # noqa: PLC0415

    client = GitHubClient(
        repository=repository,
        token=token,
        api_url=env.get("GITHUB_API_URL") or "https://api.github.com",
    )
    try:
        listed = client.pull_commits(number)
    except GithubError as e:
        raise UsageError(f"cannot read who wrote the commits of #{number}: {e}") from e
    in_git = gitrepo.new_commits(args.repo, args.base, "HEAD")
    people, problems = commit_people(listed, in_git)
    return people, problems, ()


def _merge_problems(conflicts: Sequence[str], base: str) -> list[Problem]:
    return [
        Problem(
            path,
            Position(1, 1),
            "merge.conflict",
            f"this file conflicts with the base ({base}): merge or rebase the base into the PR "
            "and push again; the check judges what the merge would make",
        )
        for path in conflicts
    ]


def _check_pull(
    args: argparse.Namespace,
    env: Mapping[str, str],
    now: datetime,
    head_rev: str = "HEAD",
    author: str | None = None,
    held: Held | None = None,
) -> tuple[Validation, list[FileChange]]:
    event = _event(env)
    author = author or args.author or _login(event, "pull_request", "user", "login")
    if not author:
        raise UsageError("--base needs --author LOGIN (or GITHUB_EVENT_PATH of a pull_request)")
    # The author is named in findings ("x may not change bob's request"): only a real login.
    if len(author) > LOGIN_MAX or not re.fullmatch(LOGIN_PATTERN, author):
        raise UsageError("the PR author is not a GitHub login (letters, digits and '-')")
    base_tree = gitfiles.revision(args.repo, args.base)
    base_config, problems = load_config(
        base_tree.files.get("config/policy.yaml"), base_tree.files.get("config/hosts.yaml")
    )
    if base_config is None:
        raise UsageError(
            f"the base ({args.base}) has no valid config/policy.yaml: "
            + "; ".join(str(p) for p in problems[:3])
        )
    # What is judged is what merging would make, built from every merge base, and what it
    # changes on the base: a criss-cross history cannot hide a change behind one merge base.
    merged = gitrepo.merge(args.repo, args.base, head_rev)
    changes = gitrepo.changes(args.repo, args.base, merged.tree)
    head = gitfiles.revision(args.repo, merged.tree)
    others: dict[str, str] = {}
    pusher = args.pusher or _login(event, "sender", "login")
    if pusher:
        others[pusher] = "pushed to the PR"
    people, extra, notes = _commit_people(args, env, _pull_number(args, event))
    for login, why in people.items():
        others.setdefault(login, why)
    extra += _merge_problems(merged.conflicts, args.base)
    bases = gitrepo.merge_bases(args.repo, args.base, head_rev)
    if len(bases) > 1:
        notes += (f"the PR and the base have {len(bases)} merge bases; judged on the merge",)
    admins = frozenset(base_config.policy.admins)
    # What the merge is compared with: the base as it is now, so that the base having moved
    # on since the PR branched is neither blamed on the PR nor credited to it.
    result = validate_pull(
        head, changes, author, admins, now, before=base_tree, others=others, held=held
    )
    return (
        replace(
            result,
            problems=tuple(sorted([*result.problems, *extra], key=Problem.sort_key)),
            notes=(*result.notes, *notes),
        ),
        changes,
    )


# Where a clone's main is, in the order tried: the remote's default branch first.
LOCAL_BASES = ("origin/HEAD", "origin/main", "origin/master", "upstream/main")


def _local_base(repo: Path) -> str | None:
    if not (repo / ".git").exists():
        return None
    found = next((ref for ref in LOCAL_BASES if gitrepo.ref_exists(repo, ref)), None)
    return None if found is None else gitrepo.branch_name(repo, found)


def _gh_login(env: Mapping[str, str]) -> str | None:
    """The login `gh auth login` stored (~/.config/gh/hosts.yml), if any."""
    home = env.get("GH_CONFIG_DIR") or str(Path(env.get("HOME", "~")) / ".config" / "gh")
    try:
        import yaml  # noqa: PLC0415

        hosts = yaml.safe_load((Path(home).expanduser() / "hosts.yml").read_text("utf-8"))
    except (OSError, ValueError, ImportError):
        return None
    user = hosts.get("github.com", {}).get("user") if isinstance(hosts, dict) else None
    return user if isinstance(user, str) else None


def _local_author(
    args: argparse.Namespace, env: Mapping[str, str], changed: Sequence[FileChange]
) -> tuple[str, str]:
    """Who the member is, and how that was found (said in a note)."""
    if args.author:
        return args.author, "--author"
    for found, how in (
        (env.get("SSP_AUTHOR"), "SSP_AUTHOR"),
        (gitrepo.config_value(args.repo, "github.user"), "git config github.user"),
        (_gh_login(env), "gh's login"),
    ):
        if found:
            return found, how
    owners = sorted({c.owner_folder for c in changed if c.owner_folder})
    if len(owners) == 1:
        return owners[0], "the folder you changed; say --author LOGIN if you are someone else"
    raise UsageError(
        "who are you on GitHub? say --author LOGIN (or `git config github.user LOGIN`), "
        "or use --all to check every request on its own"
    )


def _check_local(
    args: argparse.Namespace,
    env: Mapping[str, str],
    now: datetime,
    base: str,
    held: Held | None = None,
) -> tuple[Validation, list[FileChange]]:
    """The member's change, committed or not, judged as its pull request will be."""
    head = gitrepo.worktree_commit(args.repo)
    changed = gitrepo.changes(args.repo, base, head)
    author, how = _local_author(args, env, changed)
    local = argparse.Namespace(**{**vars(args), "base": base, "pull": None, "pusher": None})
    result, changes = _check_pull(local, env, now, head_rev=head, author=author, held=held)
    note = f"judged as your pull request into {base} will be, as {author} ({how})"
    return replace(result, notes=(note, *result.notes)), changes


def _judge(
    args: argparse.Namespace, env: Mapping[str, str], now: datetime, held: Held | None = None
) -> tuple[Validation, list[FileChange], str | None]:
    """A pull request (--base), the member's change (in a clone), or every request (--all);
    and the base the change was judged against (None for --all). HELD: what the host holds,
    from its snapshot."""
    if args.base:
        return (*_check_pull(args, env, now, held=held), args.base)
    base = None if args.all else _local_base(args.repo)
    if base is not None:
        return (*_check_local(args, env, now, base, held), base)
    return validate_tree(gitfiles.worktree(args.repo), now, held=held), [], None


def _read_snapshot(path: Path, result: Validation, now: datetime) -> tuple[Snapshot | None, str]:
    """The snapshot and where it came from, or None and why it cannot be used."""
    if result.config is None:
        return None, "config/ is not valid after this PR, so nothing can be planned"
    hours = result.config.policy.snapshot.max_age_hours
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, "no state snapshot was found (the host has not published one yet)"
    except OSError as e:
        return None, f"the state snapshot could not be read ({e.strerror or e})"
    try:
        found = snapshots.parse(raw, now, timedelta(hours=hours))
    except snapshots.SnapshotError as e:
        return None, f"the published state snapshot cannot be used: {e}"
    return found, preview.describe(found, "the published snapshot", now)


def _preview(
    repo: Path,
    read: tuple[Snapshot | None, str],
    result: Validation,
    changes: Sequence[FileChange],
    base: str | None,
    now: datetime,
) -> preview.Preview:
    """What apply would do with the change's requests now, from the snapshot READ (or why
    there is none)."""
    if base is None:
        return preview.Preview(
            "the preview is of a change: run it in a clone or with --base (not --all)",
            usable=False,
            rows=(),
        )
    found, source = read
    before_tree = gitfiles.revision(repo, base)
    before = {}
    for change in changes:
        raw = before_tree.files.get(change.path)
        if raw is not None and change.status != "A":
            loaded, _ = load_request(change.path, raw)
            if loaded is not None:
                before[change.path] = loaded
    members = validationreport.summary_data(result, changes)["members"]
    quotas = {m.login: f"{m.gpus} GPUs, {m.containers} containers, {m.disk} disk" for m in members}
    return preview.build(result, changes, before, found, source, quotas, now)


def _output(
    fmt: str,
    env: Mapping[str, str],
    result: Validation,
    changes: Sequence[FileChange],
    shown: preview.Preview | None,
) -> None:
    previewed = [log_line(line) for line in preview.text_lines(shown)] if shown else []
    if fmt == "json":
        doc = json.loads(validationreport.to_json(result))
        if shown is not None:
            doc["preview"] = preview.to_dict(shown)
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return
    if fmt == "github":
        for problem in result.problems:
            print(validationreport.annotation(problem))
    for line in [*validationreport.text_lines(result), *previewed]:
        print(line)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if fmt == "github" and summary:
        text = validationreport.summary_markdown(result, changes)
        if shown is not None:
            text = validationreport.capped(text + "\n" + preview.markdown(shown))
        with Path(summary).open("a", encoding="utf-8") as out:
            out.write(text)
    if fmt == "text" and result.ok:
        print(f"ok: {len(result.valid)} request(s) valid", file=sys.stderr)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    now = clock(env)
    fmt = args.format or ("github" if env.get("GITHUB_ACTIONS") == "true" else "text")
    if not args.repo.is_dir():
        raise UsageError(f"--repo {args.repo}: no such directory")
    if not (args.repo / ".git").exists() and args.base:
        raise UsageError(f"{args.repo} is not a git checkout (needed for --base)")
    result, changes, base = _judge(args, env, now)
    shown = None
    if args.snapshot is not None:
        read = _read_snapshot(args.snapshot, result, now)
        if read[0] is not None:
            # What the host holds (a retired container's name, an account's login, ssp's
            # images) stays its owners': judged again knowing it.
            result, changes, base = _judge(args, env, now, snapshots.held(read[0]))
        shown = _preview(args.repo, read, result, changes, base, now)
        problems = sorted([*result.problems, *shown.problems], key=Problem.sort_key)
        result = replace(result, problems=tuple(problems))
    _output(fmt, env, result, changes, shown)
    return 0 if result.ok else 1
