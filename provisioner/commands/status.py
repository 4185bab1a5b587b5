"""`ssp status`: who holds which GPU until when, containers, accounts, quotas, the pool.

The observation is `provisioner.flows.observe`'s, shared with `ssp publish`. `--output FILE`
writes the page or report to a file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner.commands import add_repo_arg, emit, examples, observe_host, repo_url
from provisioner.flows.usage import database_path, page_chart
from provisioner.reporting.escape import log_line
from provisioner.status import page as statuspage
from provisioner.status.server import ServerStatus
from provisioner.status.usage import Chart
from provisioner.values.errors import UsageDbError
from provisioner.values.policymodels import Policy

FORMATS = ("text", "json", "markdown", "html")


def formatted(
    form: str, status: ServerStatus, timezone: str, url: str, chart: Chart | None = None
) -> str:
    if form == "json":
        return statuspage.to_json(status)
    if form == "markdown":
        return statuspage.markdown(status, timezone, url)
    if form == "html":
        return statuspage.html(status, timezone, url, chart)
    return "\n".join(statuspage.text_lines(status, timezone)) + "\n"


def usage_chart(policy: Policy, env: Mapping[str, str], status: ServerStatus) -> Chart | None:
    """The page's GPU-hours chart from the usage database; none without one, and an
    unreadable one is a note on stderr, never a page not made."""
    try:
        return page_chart(database_path(policy, env), policy, status.generated)
    except UsageDbError as e:
        print(log_line(f"ssp status: no GPU-hours on the page: {e}"), file=sys.stderr)
        return None


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "status",
        help="who holds which GPU until when: containers, accounts, quotas, pool",
        description="The GPU host as it is now: the GPU board, every managed container and "
        "account with its lease, quota use per member and the storage pool.",
        **examples(
            "ssp status",
            "ssp status --format html --output status.html",
            "ssp status --format json | jq '.free_gpus'",
        ),
    )
    add_repo_arg(parser)
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write here, not stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    found = observe_host(args.repo, env, "status")
    if found is None:
        return 1
    chart = usage_chart(found.policy, env, found.status) if args.format == "html" else None
    text = formatted(args.format, found.status, found.policy.timezone, repo_url(env), chart)
    emit("status", text, args.output)
    return 0
