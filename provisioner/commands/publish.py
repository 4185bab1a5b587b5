"""`ssp publish`: the host's state snapshot and status page, for the PR check and people.

Run by the maintenance workflow on the GPU host. Observes the host as `ssp status` does,
makes the snapshot the PR check's plan preview reads (redacted as the policy's `snapshot`
section says) and the status page from the same redacted state, and writes both as the one
commit of a branch (`ssp-state`) through GitHub's API (GITHUB_TOKEN with `contents: write`,
GITHUB_REPOSITORY, GITHUB_API_URL). `--output DIR` also writes them to a folder; with
`--no-push` that is all it does. The snapshot records the SHA-256 of the page, which the PR
check verifies; `--output` is also what the maintenance workflow can deploy to GitHub Pages as an
artifact (docs/admin-guide.md), so the site never serves what a push to the branch put there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner.commands import (
    add_repo_arg,
    examples,
    github_client,
    observe_host,
    repo_url,
)
from provisioner.commands.status import usage_chart
from provisioner.host.ports import listening_ports
from provisioner.status import page as statuspage
from provisioner.status import snapshot as snapshots
from provisioner.values.errors import UsageError

DEFAULT_API_URL = "https://api.github.com"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "publish",
        help="publish the host's state snapshot and status page to a branch (maintenance)",
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
    found = observe_host(args.repo, env, "publish", images=True)
    if found is None:
        return 1
    snap = snapshots.make(
        found.status,
        found.instances,
        found.policy,
        commit=found.sha,
        busy_ports=listening_ports(),
        images=found.images,
    )
    chart = usage_chart(found.policy, env, found.status)
    page = statuspage.html(snap.status, found.policy.timezone, repo_url(env), chart)
    # The snapshot records the page's SHA-256: a reader of the branch can tell the page is ours.
    snap = snapshots.with_page(snap, page)
    files = {snapshots.SNAPSHOT_FILE: snapshots.to_json(snap), snapshots.PAGE_FILE: page}
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.output / name).write_text(text, encoding="utf-8")
        print(f"ssp publish: wrote {', '.join(files)} to {args.output}", file=sys.stderr)
    if client is None:
        return 0
    when = f"{snap.generated_at:%Y-%m-%d %H:%M %Z}"
    main = f", main at {found.sha[:12]}" if found.sha else ""
    sha = client.publish(args.branch, files, f"ssp state of {found.status.host} at {when}{main}")
    print(f"ssp publish: {args.branch} is now {sha[:12]} ({when})", file=sys.stderr)
    return 0
