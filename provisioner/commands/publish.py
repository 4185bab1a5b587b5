"""`ssp publish`: the host's state snapshot and status page, for the PR check and people.

Run on the GPU host by the apply workflow after every apply and by the maintenance workflow
daily, and after each comment command (flows/publish.py does the work). Observes the host as
`ssp status` does, makes the snapshot the PR check's plan preview reads (redacted as the
policy's `snapshot` section says) and the status page from the same redacted state, and writes
both as the one commit of a branch (`ssp-state`) through GitHub's API (GITHUB_TOKEN with
`contents: write`, GITHUB_REPOSITORY, GITHUB_API_URL). `--output DIR` also writes them to a
folder; with `--no-push` that is all it does. The snapshot records the SHA-256 of the page,
which the PR check verifies; `--output` is also what the workflows deploy to GitHub Pages as an
artifact (docs/admin-guide.md), so the site never serves what a push to the branch put there. A
failed publish exits 3 and never touches the host.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner.commands import (
    add_repo_arg,
    clock,
    connect,
    examples,
    github_client,
    print_invalid_config,
    repo_url,
)
from provisioner.commands.status import usage_chart
from provisioner.flows.publish import publish_state
from provisioner.host.ports import listening_ports
from provisioner.reporting.escape import log_line
from provisioner.status import snapshot as snapshots
from provisioner.values.errors import UsageError

DEFAULT_API_URL = "https://api.github.com"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "publish",
        help="publish the host's state and status page to a branch (after applies, daily)",
        description="Observe the host as `ssp status` does and publish snapshot.json (what the "
        "PR check previews against) and index.html (the status page) as the one commit of a "
        "branch, through GitHub's API. Containers' IP addresses are left out unless the "
        "policy's snapshot.addresses allows them.",
        **examples(
            "ssp publish  # in the maintenance workflow (GITHUB_TOKEN, GITHUB_REPOSITORY)",
            "ssp publish --output state/ --no-push  # only write the two files",
        ),
    )
    add_repo_arg(parser)
    parser.add_argument(
        "--branch", default=snapshots.BRANCH, help=f"where to publish (default: {snapshots.BRANCH})"
    )
    parser.add_argument("--output", type=Path, metavar="DIR", help="also write the files here")
    parser.add_argument("--no-push", action="store_true", help="write --output only, no GitHub")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.no_push and args.output is None:
        raise UsageError("--no-push writes nothing without --output DIR")
    client = None
    if not args.no_push:
        # PyGithub loads only when something is published.
        from provisioner.github.statebranch import StateBranch  # noqa: PLC0415

        needs = "publishing (contents: write; or say --output DIR --no-push)"
        client = github_client(env, StateBranch, needed_for=needs)
    done = publish_state(
        args.repo,
        clock(env),
        lambda policy: connect(policy, env),
        client=client,
        repo_url=repo_url(env),
        busy_ports=listening_ports,
        read_gpus=env.get("SSP_GPU_CHECK") != "off",
        chart=lambda policy, status: usage_chart(policy, env, status),
        output=args.output,
        branch=args.branch,
    )
    if done.validation is not None:
        print_invalid_config("publish", done.validation)
        return 1
    if args.output is not None and done.files and not done.error.startswith("cannot write"):
        print(f"ssp publish: wrote {', '.join(done.files)} to {args.output}", file=sys.stderr)
    if done.error:
        print(log_line(f"ssp publish: error: {done.error}"), file=sys.stderr)
        return 3
    if done.branch_sha:
        print(
            f"ssp publish: {args.branch} is now {done.branch_sha[:12]} ({done.when})",
            file=sys.stderr,
        )
    return 0
