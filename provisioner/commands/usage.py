"""`ssp usage`: held and used GPU-hours per member in a month, from the usage database.

Text, JSON, CSV, or the Prometheus text exposition format made by `prometheus_client` (for a
node exporter's textfile collector, or any scrape). The definitions of held and used are in
`provisioner.status.usage`, and in the admin guide.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner.commands import add_repo_arg, clock, emit, examples, main_config
from provisioner.flows.usage import database_path, member_use, prometheus
from provisioner.status import usage

FORMATS = ("text", "json", "csv", "prometheus")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "usage",
        help="GPU-hours held and used per member and month (text, JSON, CSV, Prometheus)",
        description="Held and used GPU-hours per member in one month (the lab's time zone), "
        "from the readings `ssp sample` keeps. Held: a GPU attached to the member's container; "
        "used: held time weighted by the GPU's utilisation.",
        **examples(
            "ssp usage  # this month so far",
            "ssp usage --month 2026-11 --format csv > gpu-hours-2026-11.csv",
            "ssp usage --format prometheus --output /var/lib/node_exporter/ssp.prom",
            status="Exit status: 0 reported, 1 config/ not valid, 2 bad --month, 3 no "
            "database or it cannot be read.",
        ),
    )
    add_repo_arg(parser)
    parser.add_argument("--month", metavar="YYYY-MM", help="the month (default: this month)")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument(
        "--db",
        type=Path,
        metavar="FILE",
        help="usage database (default: $SSP_USAGE_DB or the policy's usage.database)",
    )
    parser.add_argument("--output", type=Path, metavar="FILE", help="write here, not stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    now = clock(env)
    config = main_config(args.repo, now, "usage")
    if config is None:
        return 1
    policy = config.policy
    month = args.month or usage.month_of(now, policy.timezone)
    usage.month_span(month, policy.timezone)  # a bad --month is refused before any file is read
    rows = member_use(database_path(policy, env, args.db), policy, month)
    if args.format == "json":
        out = usage.to_json(rows, month)
    elif args.format == "csv":
        out = usage.to_csv(rows)
    elif args.format == "prometheus":
        out = prometheus(rows)
    else:
        out = usage.text(rows, month)
    emit("usage", out, args.output)
    return 0
