"""`ssp maintain`: the daily upkeep of leases, under the host lock like an apply.

It reconciles (as `ssp apply`, which stops and snapshots containers whose lease ended), then
deletes what is past retention where the policy consents (exported first when it asks), and
tells owners on GitHub: reminders, the expiry, the final notice. With GITHUB_TOKEN and
GITHUB_REPOSITORY set (as in maintenance.yml) notices go through GITHUB_API_URL; without
them nothing is posted, and nothing that waits on a final notice is deleted. GitHub failures
print a warning and never change the exit status. With a policy `notify:` section the same
notices (and, for admins, the run's failures and drift) then go by e-mail and webhook after the
host lock is released (provisioner.flows.notify); a failed delivery is a warning too.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from provisioner.commands import (
    add_lock_args,
    add_repo_arg,
    connect,
    examples,
    host_facts,
    load_for_host,
    lock_path,
    maybe_github_client,
    print_blocking,
)
from provisioner.flows import maintain, notify
from provisioner.flows.reconcile import run_pass
from provisioner.flows.usage import database_path, idle_now
from provisioner.host.lock import host_lock
from provisioner.reporting import applyreport
from provisioner.reporting.escape import command_data, log_line
from provisioner.reporting.notices import NoticeClient
from provisioner.values.errors import UsageDbError
from provisioner.values.policymodels import Policy
from provisioner.values.usage import IdleGpu


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "maintain",
        help="daily upkeep: expire leases, notify owners, delete past retention",
        description="Reconcile LXD with the checkout, stop and snapshot containers whose "
        "lease ended, delete those past retention where the policy allows it (exported first "
        "when it asks), and notify their owners on GitHub. The maintenance workflow runs it "
        "daily on the GPU host.",
        **examples(
            "ssp maintain --dry-run  # what would be stopped, deleted and notified",
            "ssp maintain --format markdown  # as the workflow's job summary shows it",
            status="Exit status: 0 done, 1 a request or a deletion failed, 2 usage, 3 error.",
        ),
    )
    add_repo_arg(parser)
    parser.add_argument("--dry-run", action="store_true", help="change nothing, list it")
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    add_lock_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    main = load_for_host(args.repo, env)
    if main.blocking:
        print_blocking(main.blocking)
        return 1
    config, validation, now = main.config, main.validation, main.now
    client = None if args.dry_run else _notice_client(env)
    with host_lock(lock_path(args, env), wait_s=args.lock_wait):
        lxd, servers = connect(config.policy, env)
        facts = host_facts(validation, env, lxd)
        applied = run_pass(
            validation,
            lxd,
            servers,
            now=now,
            sha=main.sha,
            **facts,
            dry_run=args.dry_run,
            log=_note,
        )
        idle = _idle_gpus(config.policy, env, now)
        done = maintain.maintain(
            applied,
            lxd,
            now=now,
            notice_client=client,
            log=_note,
            idle=idle,
            id_spans=facts["id_spans"],
            pin_ids=facts["pin_ids"],
        )
    policy = config.policy
    # After the lock: mail and webhooks wait on networks, never on the host.
    notified = notify.send_all(done, policy, log=_note)
    done = dataclasses.replace(done, delivered=notified.deliveries)
    if args.format == "json":
        sys.stdout.write(maintain.to_json(done, policy))
    elif args.format == "markdown":
        sys.stdout.write(maintain.markdown(done, policy))
    else:
        for line in maintain.text_lines(done, policy.timezone):
            print(log_line(line))
        for line in applyreport.text_lines(policy, applied.result, applied.skipped):
            print(log_line(line))
    sys.stdout.flush()
    for sent in done.sent:
        if sent.error:
            _warn(env, f"{sent.name}: notice not posted: {sent.error}")
    for failed in notified.failed:
        _warn(env, f"{failed.key}: {failed.channel}: not delivered: {failed.error}")
    for warning in notified.warnings:
        _warn(env, f"notices: {warning}")
    return 0 if done.ok else 1


def _idle_gpus(policy: Policy, env: Mapping[str, str], now: datetime) -> list[IdleGpu]:
    """The held GPUs idle for the policy's days, from the usage database; an unreadable
    database is a warning, never a reason to skip the upkeep."""
    try:
        return idle_now(database_path(policy, env), policy, now)
    except UsageDbError as e:
        _warn(env, f"idle GPUs not checked: {e}")
        return []


def _notice_client(env: Mapping[str, str]) -> NoticeClient | None:
    try:
        # PyGithub loads only when notices are to be posted.
        from provisioner.github.issues import IssuesClient  # noqa: PLC0415

        client = maybe_github_client(env, IssuesClient)
    except Exception as e:  # a bad setting must not stop the host's upkeep
        _warn(env, f"cannot reach GitHub for notices: {e}")
        return None
    if client is None:
        _note("GITHUB_TOKEN or GITHUB_REPOSITORY is not set: no notices are posted")
    return client


def _note(line: str) -> None:
    print(log_line(f"ssp maintain: {line}"), file=sys.stderr)


def _warn(env: Mapping[str, str], text: str) -> None:
    text = f"{text}; the next run posts it (the host is not affected)"
    if env.get("GITHUB_ACTIONS") == "true":
        print(f"::warning title=Lease notice not posted::{command_data(text)}", file=sys.stderr)
    else:
        print(log_line(f"ssp maintain: warning: {text}"), file=sys.stderr)
