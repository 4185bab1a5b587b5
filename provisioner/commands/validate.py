"""`ssp validate`: check request files; with --base, check a pull request against its base.

The judging is `provisioner.flows.prcheck`'s; this command reads the arguments, the
environment and the event, and prints the verdict for a terminal (in English, or in Chinese
under a Chinese locale or --lang zh), for GitHub or as JSON (both always English).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.commands import (
    add_lang_arg,
    add_repo_arg,
    clock,
    examples,
    gh_login,
    github_client,
    language,
)
from provisioner.reporting.escape import log_line
from provisioner.values.errors import UsageError

# The judging (models, schemas, YAML, git) loads in `run`, not here: `ssp validate --help`
# and a usage error start without building a model (issue 27; tests/test_cli.py holds it).
if TYPE_CHECKING:
    from provisioner.status import preview
    from provisioner.validation.validate import Validation
    from provisioner.values.changes import FileChange


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
            "ssp validate --lang zh  # 中文提示 (the default under LANG=zh_CN.UTF-8)",
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
        help="the host's published state (snapshot.json of the ssp-state branch, with its "
        "index.html beside it, checked against the digest the snapshot records): preview which "
        "GPUs, port and disk the PR's requests would get now, and warn where they would not fit; "
        "a missing, damaged or stale file only says so, and never changes the verdict",
    )
    parser.add_argument(
        "--format",
        choices=("text", "github", "json"),
        help="output (default: text; github when GITHUB_ACTIONS=true)",
    )
    add_lang_arg(parser, "the findings' language; the PR check (GITHUB_ACTIONS) stays en")
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


def _output(
    fmt: str,
    lang: str,
    env: Mapping[str, str],
    result: Validation,
    changes: Sequence[FileChange],
    shown: preview.Preview | None,
) -> None:
    from provisioner.reporting import validationreport  # noqa: PLC0415  (see the imports)

    previewed: list[str] = []
    if shown is not None:
        from provisioner.status import preview  # noqa: PLC0415  (only with --snapshot)

        previewed = [log_line(line) for line in preview.text_lines(shown)]
    if fmt == "json":
        doc = json.loads(validationreport.to_json(result))
        if shown is not None:
            doc["preview"] = preview.to_dict(shown)
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return
    if fmt == "github":
        for problem in result.problems:
            print(validationreport.annotation(problem))
    for line in [*validationreport.text_lines(result, lang), *previewed]:
        print(line)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if fmt == "github" and summary:
        text = validationreport.summary_markdown(result, changes)
        if shown is not None:
            text = validationreport.capped(text + "\n" + preview.markdown(shown))
        with Path(summary).open("a", encoding="utf-8") as out:
            out.write(text)
    if fmt == "text" and result.ok:
        print(validationreport.ok_line(result, lang), file=sys.stderr)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    fmt = args.format or ("github" if env.get("GITHUB_ACTIONS") == "true" else "text")
    # The PR check speaks English whatever the runner's locale; --lang still chooses.
    in_ci = env.get("GITHUB_ACTIONS") == "true"
    lang = language({} if in_ci else env, args.lang)
    if not args.repo.is_dir():
        raise UsageError(f"--repo {args.repo}: no such directory")
    if not (args.repo / ".git").exists() and args.base:
        raise UsageError(f"{args.repo} is not a git checkout (needed for --base)")
    from provisioner.flows import prcheck  # noqa: PLC0415  (see the imports)

    event = _event(env)
    number = _pull_number(args, event) if args.base else None
    pull_commits = None
    if number is not None:  # PyGithub loads only when commits are looked up
        pull_commits = github_client(env, needed_for=f"--pull {number}").pull_commits
    judged = prcheck.judge(
        prcheck.Asked(
            repo=args.repo,
            now=clock(env),
            base=args.base,
            every=args.all,
            author=args.author
            or (_login(event, "pull_request", "user", "login") if args.base else None),
            env_author=env.get("SSP_AUTHOR"),
            gh_login=gh_login(env),
            pusher=args.pusher or _login(event, "sender", "login"),
            pull=number,
            pull_commits=pull_commits,
            snapshot=args.snapshot,
        )
    )
    _output(fmt, lang, env, judged.result, judged.changes, judged.preview)
    return 0 if judged.result.ok else 1
