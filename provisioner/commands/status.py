"""`ssp status`: who holds which GPU until when, containers, accounts, quotas, the pool.

The observation is `provisioner.flows.observe`'s, shared with `ssp publish`. `--output FILE`
writes the page or report to a file.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner.commands import add_repo_arg, emit, examples, observe_host, repo_url
from provisioner.status import page as statuspage
from provisioner.status.server import ServerStatus

FORMATS = ("text", "json", "markdown", "html")


def formatted(form: str, status: ServerStatus, timezone: str, url: str) -> str:
    if form == "json":
        return statuspage.to_json(status)
    if form == "markdown":
        return statuspage.markdown(status, timezone, url)
    if form == "html":
        return statuspage.html(status, timezone, url)
    return "\n".join(statuspage.text_lines(status, timezone)) + "\n"


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
    text = formatted(args.format, found.status, found.policy.timezone, repo_url(env))
    emit("status", text, args.output)
    return 0
