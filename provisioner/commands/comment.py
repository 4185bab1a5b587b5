"""`ssp comment`: run the member's `/ssp` command in an issue comment (the commands workflow).

It reads GitHub's `issue_comment` event from $GITHUB_EVENT_PATH (or --event), never from the
command line or the environment, so the comment's text reaches no shell. The flow
(provisioner.flows.comment) decides and acts; this module wires LXD, the host lock, the
commands ledger ($SSP_COMMANDS_LEDGER, else the policy's `commands.ledger`), a reconcile pass
like `ssp apply`'s, and GitHub (GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_API_URL), then prints
what happened for the job summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner.commands import (
    add_lock_args,
    add_repo_arg,
    connect,
    examples,
    github_client,
    host_facts,
    load_for_host,
    lock_path,
    print_blocking,
)
from provisioner.flows.comment import Done, Host, run_command
from provisioner.flows.reconcile import run_pass
from provisioner.github.commands import CommandsClient
from provisioner.host.lock import host_lock
from provisioner.reporting.escape import code, command_data, log_line, md
from provisioner.validation.commands import CommentEvent, EventError, read_event
from provisioner.values.errors import UsageError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "comment",
        help="run a member's /ssp command from an issue comment (the commands workflow)",
        description="Run the `/ssp restart|stop|start|snapshot` command of an issue comment "
        "on the container it names, if its author owns the container or is an admin, within "
        "the policy's rate limit; react to the comment and answer in its thread. The commands "
        "workflow runs it on the GPU host for every new comment starting with `/ssp `.",
        **examples(
            'ssp comment --event "$GITHUB_EVENT_PATH"  # as commands.yml runs it',
            status="Exit status: 0 done, refused or not a command (the answer says which), "
            "1 the host could not do it, 2 usage, 3 error.",
        ),
    )
    add_repo_arg(parser)
    parser.add_argument(
        "--event",
        type=Path,
        metavar="FILE",
        help="the issue_comment event as GitHub delivers it (default: $GITHUB_EVENT_PATH)",
    )
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    add_lock_args(parser)
    parser.set_defaults(func=run)


def _event(args: argparse.Namespace, env: Mapping[str, str]) -> CommentEvent:
    path = args.event or (Path(env["GITHUB_EVENT_PATH"]) if env.get("GITHUB_EVENT_PATH") else None)
    if path is None:
        raise UsageError("needs --event FILE or GITHUB_EVENT_PATH (the issue_comment event)")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the event {path}: {type(e).__name__}") from None
    try:
        return read_event(payload if isinstance(payload, dict) else {})
    except EventError as e:
        raise UsageError(f"{path}: {e}") from None


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    event = _event(args, env)
    if not event.addressed:
        print("ssp comment: the comment is not an /ssp command; nothing to do", file=sys.stderr)
        return 0
    main = load_for_host(args.repo, env)
    if main.blocking:  # no policy to judge by: the admins must mend main first
        print_blocking(main.blocking)
        return 1
    config, validation = main.config, main.validation
    github = github_client(env, CommandsClient, needed_for="ssp comment")
    lxd, servers = connect(config.policy, env)

    def reconcile() -> object:
        return run_pass(
            validation,
            lxd,
            servers,
            now=main.now,
            sha=main.sha,
            **host_facts(validation, env, lxd),
            log=lambda line: print(log_line(f"ssp comment: {line}"), file=sys.stderr),
            merged=main.merged,
        )

    host = Host(
        lxd=lxd,
        lock=lambda: host_lock(lock_path(args, env), wait_s=args.lock_wait),
        ledger=Path(env.get("SSP_COMMANDS_LEDGER") or config.policy.commands.ledger),
        reconcile=reconcile,
    )
    done = run_command(event, validation, github, host, now=main.now)
    _report(done, event, args.format, env)
    return 0 if done.ok else 1


def _report(done: Done, event: CommentEvent, fmt: str, env: Mapping[str, str]) -> None:
    verb = f"/ssp {done.verb}" if done.verb else "an unknown /ssp command"
    where = f"#{event.number}"
    on = f" on {done.container}" if done.container else ""
    if fmt == "markdown":
        target = f" on {code(done.container)}" if done.container else ""
        print(f"### {code(verb)}{target} by {md('@' + event.commenter)} ({where}): {done.outcome}")
        print()
        print("> " + "\n> ".join(done.message.rstrip("\n").splitlines()))
    else:
        print(log_line(f"{verb}{on} by @{event.commenter} ({where}): {done.outcome}"))
    if done.error:
        print(log_line(f"ssp comment: {done.error}"), file=sys.stderr)
    for error in done.github_errors:
        text = f"GitHub: {error} (the host's part stands; the answer may be missing)"
        if env.get("GITHUB_ACTIONS") == "true":
            print(f"::warning title=comment command::{command_data(text)}", file=sys.stderr)
        else:
            print(log_line(f"ssp comment: warning: {text}"), file=sys.stderr)
