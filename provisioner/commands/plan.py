"""`ssp plan`: what `ssp apply` would do now, without changing anything."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from provisioner.commands import (
    add_repo_arg,
    connect,
    examples,
    host_facts,
    load_for_host,
    print_blocking,
)
from provisioner.flows.reconcile import observe, plan_for
from provisioner.reporting import applyreport
from provisioner.reporting.escape import log_line
from provisioner.reporting.render import render


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "plan",
        help="show what apply would change (and drift)",
        description="Show what `ssp apply` would change on this host, and what drifted from "
        "the requests; changes nothing.",
        **examples(
            "ssp plan",
            "ssp plan --format markdown  # as the PR comment shows it",
            "ssp plan --format json",
        ),
    )
    add_repo_arg(parser)
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    main = load_for_host(args.repo, env)
    if main.blocking:
        print_blocking(main.blocking)
        return 1
    config, validation, sha = main.config, main.validation, main.sha
    lxd, _servers = connect(config.policy, env)
    plan = plan_for(
        validation,
        observe(config, lxd),
        now=main.now,
        sha=sha,
        **host_facts(validation, env, lxd),
        merged=main.merged,
    )
    rows = [{"kind": a.kind, "name": a.name, "detail": a.detail} for a in plan.changes]
    drift = [{"name": d.name, "message": d.message} for d in plan.drift]
    if args.format == "json":
        sys.stdout.write(
            json.dumps(
                {
                    "sha": sha,
                    "actions": rows,
                    "drift": drift,
                    "skipped": [str(p) for p in validation.errors],
                },
                indent=2,
            )
            + "\n"
        )
    elif args.format == "markdown":
        sys.stdout.write(
            render("plan.md.j2", sha=sha, rows=rows, drift=drift, skipped=validation.errors)
        )
    else:
        for line in applyreport.plan_lines(plan):
            print(line)
        for problem in validation.errors:
            print(log_line(f"skipped: {problem}"))
    return 0
