"""`ssp maintain`: the daily upkeep of leases, under the host lock like an apply.

It reconciles (as `ssp apply`, which stops and snapshots containers whose lease ended), then
deletes what is past retention where the policy consents (exported first when it asks), and
tells owners on GitHub: reminders, the expiry, the final notice. With GITHUB_TOKEN and
GITHUB_REPOSITORY set (as in maintenance.yml) notices go through GITHUB_API_URL; without
them nothing is posted, and nothing that waits on a final notice is deleted. GitHub failures
print a warning and never change the exit status. With a policy `notify:` section the same
notices (and, for admins, the run's failures and drift) then go by e-mail and webhook after the
host lock is released (provisioner.flows.notify); a failed delivery is a warning too.
From the usage database it also finds GPUs held but idle: a notice, and where the policy
consents (`usage.idle_action: release`) a final notice and then the release, made before the
reconcile so that it takes the GPUs off in the same pass (provisioner.flows.idlerelease); and
once a month it opens last month's GPU-hours summary issue (provisioner.flows.usagesummary).
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
from provisioner.commands.apply import comment_context, keep_tunnel_in_step
from provisioner.flows import idlerelease, maintain, notify, usagesummary
from provisioner.flows.reconcile import Pass, run_pass
from provisioner.flows.usage import database_path, idle_now
from provisioner.flows.usagesummary import MonthUse
from provisioner.host.lock import host_lock
from provisioner.planning.leases import lab_today
from provisioner.reporting import applyreport, mergecomment
from provisioner.reporting.escape import command_data, log_line
from provisioner.reporting.notices import NoticeClient
from provisioner.validation.validate import Validation
from provisioner.values.errors import UsageDbError
from provisioner.values.policymodels import Policy
from provisioner.values.usage import IdleGpu
from provisioner.values.waitlist import Landed


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "maintain",
        help="daily upkeep: expire leases, notify owners, delete past retention",
        description="Reconcile LXD with the checkout, stop and snapshot containers whose "
        "lease ended, delete those past retention where the policy allows it (exported first "
        "when it asks), and notify their owners on GitHub; tell owners of idle GPUs and, "
        "where the policy consents, release them after a final notice; open last month's "
        "GPU-hours summary issue. The maintenance workflow runs it daily on the GPU host.",
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
        idle = _idle_gpus(config.policy, env, now)
        month_use = _last_month(config.policy, env, now) if client is not None else None
        # Before the reconcile, so that it takes the released GPUs off in this same pass.
        holds, released = idlerelease.before_reconcile(
            lxd,
            config.policy,
            idle,
            lab_today(now, config.policy.timezone),
            dry_run=args.dry_run,
            log=_note,
        )
        applied = run_pass(
            validation,
            lxd,
            servers,
            now=now,
            sha=main.sha,
            **facts,
            dry_run=args.dry_run,
            log=_note,
            merged=main.merged,
        )
        done = maintain.maintain(
            applied,
            lxd,
            now=now,
            notice_client=client,
            log=_note,
            idle=idle,
            idle_holds=holds,
            idle_steps=released,
            month_use=month_use,
            id_spans=facts["id_spans"],
            pin_ids=facts["pin_ids"],
        )
        # Retired and deleted containers leave the tunnel (under the lock, as in apply).
        keep_tunnel_in_step(config, lxd, applied.result, env, args.dry_run, "maintain")
    policy = config.policy
    # After the lock: mail and webhooks wait on networks, never on the host.
    notified = notify.send_all(done, policy, log=_note)
    if not args.dry_run:  # a request this pass made after it waited in line for GPUs
        made = notify.made_after_waiting(applied, main.landed, "", policy, done.today, log=_note)
        notified = dataclasses.replace(
            notified,
            deliveries=notified.deliveries + made.deliveries,
            warnings=notified.warnings + made.warnings,
        )
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
    if not args.dry_run:
        _comment_waitlist(env, policy, validation, applied, main.landed)
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


def _last_month(policy: Policy, env: Mapping[str, str], now: datetime) -> MonthUse | None:
    """Last month's GPU-hours for its summary issue; an unreadable database is a warning."""
    try:
        return usagesummary.last_month(database_path(policy, env), policy, now)
    except UsageDbError as e:
        _warn(env, f"monthly GPU-hours summary not made: {e}")
        return None


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


def _comment_waitlist(
    env: Mapping[str, str],
    policy: Policy,
    validation: Validation,
    applied: Pass,
    landed: Mapping[str, Landed],
) -> None:
    """The PR comment of a request in line for GPUs: its place, or the ssh command once this
    pass made it (the daily pass may be the one that frees its GPUs). Never raises."""
    ctx = comment_context(env, policy, validation)
    if ctx is None:
        return
    try:
        client = maybe_github_client(env)
        if client is None:
            return
        # A maintenance pass follows no merge: whatever it creates had landed before.
        late = mergecomment.made_late(applied.result, landed, "", notify.created(applied))
        posted = mergecomment.post_waitlist(client, ctx, applied.result, landed, late, log=_note)
    except Exception as e:
        posted = [mergecomment.Posted(0, error=str(e))]
    for p in posted:
        if p.error:
            _warn(env, mergecomment.redact(f"PR comment not updated: {p.error}", ctx.secrets))


def _note(line: str) -> None:
    print(log_line(f"ssp maintain: {line}"), file=sys.stderr)


def _warn(env: Mapping[str, str], text: str) -> None:
    text = f"{text}; the next run posts it (the host is not affected)"
    if env.get("GITHUB_ACTIONS") == "true":
        print(f"::warning title=Lease notice not posted::{command_data(text)}", file=sys.stderr)
    else:
        print(log_line(f"ssp maintain: warning: {text}"), file=sys.stderr)
