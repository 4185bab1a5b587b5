"""`ssp apply`: make the LXD host match the checkout (main), then report per request."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner import results
from provisioner.commands import add_repo_arg, clock, connect, load_main, print_blocking
from provisioner.gpucheck import gpu_refusal
from provisioner.hostlock import host_lock
from provisioner.hostports import listening_ports
from provisioner.models import ContainerRequest
from provisioner.reconcile import blocking, run_pass

DEFAULT_LOCK = Path("/var/lock/ssp-apply.lock")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("apply", help="reconcile LXD with the requests on this checkout")
    add_repo_arg(parser)
    parser.add_argument("--dry-run", action="store_true", help="show what would change only")
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    parser.add_argument(
        "--no-comment",
        action="store_true",
        help="do not comment on the merged PR(s) even when GITHUB_* is set",
    )
    parser.add_argument(
        "--lock",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"host lock file (default: $SSP_LOCK or {DEFAULT_LOCK})",
    )
    parser.add_argument(
        "--lock-wait",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for another apply to finish (default: 300)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    now = clock(env)
    validation, sha = load_main(args.repo, now)
    stop = blocking(validation)
    if stop:
        print_blocking(stop)
        return 1
    config = validation.config
    assert config is not None  # noqa: S101  (blocking() is empty only with a config)
    wants_gpus = any(
        isinstance(i.request, ContainerRequest) and i.request.gpus for i in validation.valid
    )
    refusal = None
    if wants_gpus and env.get("SSP_GPU_CHECK") != "off":
        refusal = gpu_refusal(config.inventory)
    lock = args.lock or Path(env.get("SSP_LOCK", str(DEFAULT_LOCK)))
    with host_lock(lock, wait_s=args.lock_wait):
        lxd, servers = connect(config.policy, env)
        done = run_pass(
            validation,
            lxd,
            servers,
            now=now,
            sha=sha,
            busy_ports=listening_ports(),
            gpu_refusal=refusal,
            dry_run=args.dry_run,
            log=lambda line: print(f"ssp apply: {line}", file=sys.stderr),
        )
    policy = config.policy
    if args.format == "json":
        sys.stdout.write(results.to_json(policy, done.result, done.skipped))
    elif args.format == "markdown":
        sys.stdout.write(results.markdown(policy, done.result, done.skipped))
    else:
        for line in results.text_lines(policy, done.result, done.skipped):
            print(line)
    return 0 if done.result.ok and not done.skipped else 1
