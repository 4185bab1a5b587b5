"""`ssp validate`: check request files; with --base, check a pull request against its base."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from provisioner import gitfiles, report
from provisioner.authz import Change
from provisioner.commands import add_repo_arg, clock
from provisioner.config import load_config
from provisioner.errors import UsageError
from provisioner.models import LOGIN_MAX, LOGIN_PATTERN
from provisioner.validate import Validation, validate_pull, validate_tree


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "validate",
        help="check request files against the schema, the policy and each other",
        description="Check requests/. With --base, check a pull request: whether its author may "
        "change what it touches, and any problem it causes anywhere (problems already on the "
        "base are notes).",
    )
    add_repo_arg(parser)
    parser.add_argument("--base", metavar="REF", help="the PR's base commit or branch")
    parser.add_argument("--author", metavar="LOGIN", help="the PR author's GitHub login")
    parser.add_argument(
        "--format",
        choices=("text", "github", "json"),
        help="output (default: text; github when GITHUB_ACTIONS=true)",
    )
    parser.set_defaults(func=run)


def _event_author(env: Mapping[str, str]) -> str | None:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
        login = event["pull_request"]["user"]["login"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return login if isinstance(login, str) else None


def _check_pull(
    args: argparse.Namespace, env: Mapping[str, str], now: datetime
) -> tuple[Validation, list[Change]]:
    author = args.author or _event_author(env)
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
    changes = gitfiles.changes(args.repo, args.base)
    head = gitfiles.revision(args.repo, "HEAD")
    # What the PR is compared with: the tree it started from, so that the base moving on
    # meanwhile is neither blamed on it nor credited to it.
    before = gitfiles.revision(args.repo, gitfiles.merge_base(args.repo, args.base))
    admins = frozenset(base_config.policy.admins)
    return validate_pull(head, changes, author, admins, now, before=before), changes


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    now = clock(env)
    fmt = args.format or ("github" if env.get("GITHUB_ACTIONS") == "true" else "text")
    if not args.repo.is_dir():
        raise UsageError(f"--repo {args.repo}: no such directory")
    if not (args.repo / ".git").exists() and args.base:
        raise UsageError(f"{args.repo} is not a git checkout (needed for --base)")
    if args.base:
        result, changes = _check_pull(args, env, now)
    else:
        result, changes = validate_tree(gitfiles.worktree(args.repo), now), []
    if fmt == "json":
        sys.stdout.write(report.to_json(result))
    elif fmt == "github":
        for problem in result.problems:
            print(report.annotation(problem))
        for line in report.text_lines(result):
            print(line)
        summary = env.get("GITHUB_STEP_SUMMARY")
        if summary:
            with Path(summary).open("a", encoding="utf-8") as out:
                out.write(report.summary_markdown(result, changes))
    else:
        for line in report.text_lines(result):
            print(line)
        if result.ok:
            print(f"ok: {len(result.valid)} request(s) valid", file=sys.stderr)
    return 0 if result.ok else 1
