"""`ssp apply`: make the LXD host match the checkout (main), then report per request.

When GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_SHA are set (as in apply.yml), it then
comments on the pull request(s) merged by GITHUB_SHA, one sticky comment each, through
GITHUB_API_URL; and on earlier pull requests whose requests wait in line for GPUs (their
place) or were made now after waiting (the ssh command), edited in place. Commenting comes
last and can only print a warning: a GitHub outage never changes the exit status and never
undoes host work; re-running the apply for the same commit posts or updates the comments.
The owner of a request made after it waited also gets a notice by mail or chat (`notify:`).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Collection, Mapping
from typing import Any

from provisioner.applying.apply import DEFAULT_JOBS
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
from provisioner.flows import notify, tunnel
from provisioner.flows.reconcile import run_pass
from provisioner.host.lock import host_lock
from provisioner.reporting import applyreport, mergecomment
from provisioner.reporting.escape import command_data, log_line
from provisioner.validation.config import Config
from provisioner.validation.validate import Validation, today_for
from provisioner.values.outcomes import ApplyResult
from provisioner.values.policymodels import Policy
from provisioner.values.problems import Problem
from provisioner.values.state import LxdApi
from provisioner.values.waitlist import Landed

MAX_JOBS = 32


def _jobs(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_JOBS:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_JOBS} (not {text!r})"
        )
    return int(text)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "apply",
        help="reconcile LXD with the requests on this checkout",
        description="Make LXD match the requests on this checkout (the GPU host's runner runs "
        "it after each merge) and comment the outcome on the merged pull requests.",
        **examples(
            "ssp apply --dry-run  # what would change, changing nothing",
            "ssp apply --no-comment  # apply without commenting on GitHub",
            "ssp apply --format json  # the outcome for scripts",
            status="Exit status: 0 all applied (a request waiting in line for GPUs is not a "
            "failure), 1 a request failed, was refused or is on a server that is down ('member "
            "down': the next apply does it), 2 usage, 3 error.",
        ),
    )
    add_repo_arg(parser)
    parser.add_argument("--dry-run", action="store_true", help="show what would change only")
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    parser.add_argument(
        "--no-comment",
        action="store_true",
        help="do not comment on the merged PR(s) even when GITHUB_* is set",
    )
    parser.add_argument(
        "--jobs",
        type=_jobs,
        default=DEFAULT_JOBS,
        metavar="N",
        help=f"new containers to make at once, 1-{MAX_JOBS} (default: {DEFAULT_JOBS})",
    )
    add_lock_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    main = load_for_host(args.repo, env)
    validation = main.validation
    if main.blocking:
        print_blocking(main.blocking)
        if not args.dry_run and not args.no_comment:
            policy = validation.config.policy if validation.config else None
            comment(env, policy, validation, None, main.blocking)
        return 1
    config = main.config
    with host_lock(lock_path(args, env), wait_s=args.lock_wait):
        lxd, servers = connect(config.policy, env)
        done = run_pass(
            validation,
            lxd,
            servers,
            now=main.now,
            sha=main.sha,
            **host_facts(validation, env, lxd),
            dry_run=args.dry_run,
            jobs=args.jobs,
            log=lambda line: print(f"ssp apply: {line}", file=sys.stderr),
            merged=main.merged,
        )
        # Still under the lock: frpc's file is host state, written by one apply at a time.
        result = keep_tunnel_in_step(config, lxd, done.result, env, args.dry_run, "apply")
        done = dataclasses.replace(done, result=result)
    policy = config.policy
    if args.format == "json":
        sys.stdout.write(applyreport.to_json(policy, done.result, done.skipped))
    elif args.format == "markdown":
        sys.stdout.write(applyreport.markdown(policy, done.result, done.skipped))
    else:
        for line in applyreport.text_lines(policy, done.result, done.skipped):
            print(line)
    sys.stdout.flush()  # the report first, whatever commenting prints or however long it takes
    if not args.dry_run and not args.no_comment:
        made = notify.created(done)
        comment(env, policy, done.validation, done.result, done.skipped, main.landed, made)
    if not args.dry_run:
        tell = notify.made_after_waiting(
            done, main.landed, main.sha, policy, today_for(config, main.now), log=_note
        )
        for failed in tell.failed:
            _warn(env, f"{failed.key}: {failed.channel}: not delivered: {failed.error}")
    return 0 if done.result.ok and not done.skipped else 1


def comment(
    env: Mapping[str, str],
    policy: Policy | None,
    validation: Validation,
    result: ApplyResult | None,
    problems: tuple[Problem, ...] | list[Problem],
    landed: Mapping[str, Landed] | None = None,
    made: Collection[str] = (),
) -> None:
    """Post or update the sticky comment on each PR merged by GITHUB_SHA; warn on failure.
    With LANDED (when each request first landed on main), also the comments of earlier PRs
    whose requests wait in line for GPUs, or that the pass made (MADE: the paths its plan
    created) after they waited.

    Never raises: by now the host work is done, and its exit status stands.
    """
    ctx = comment_context(env, policy, validation)
    if ctx is None:
        return
    try:
        # PyGithub loads only when a comment is to be written.
        client = maybe_github_client(env)
        if client is None:
            return
        posted = mergecomment.post(client, ctx, result, problems, log=_note)
        if result is not None and landed:
            late = mergecomment.made_late(result, landed, ctx.sha, made)
            posted += mergecomment.post_waitlist(
                client, ctx, result, landed, late, log=_note, posted=ctx.sha
            )
    except Exception as e:
        _warn(env, mergecomment.redact(f"could not comment on the merged PR(s): {e}", ctx.secrets))
        return
    if not posted:
        _note(f"no merged pull request found for {ctx.sha[:12]}; no comment")
    for p in posted:
        if p.error:
            text = f"could not comment on #{p.number}: {p.error}"
            _warn(env, mergecomment.redact(text, ctx.secrets))
        else:
            _note(
                f"{'commented on' if p.created else 'updated the comment on'} #{p.number}: {p.url}"
            )


def keep_tunnel_in_step(
    config: Config,
    lxd: LxdApi,
    result: ApplyResult,
    env: Mapping[str, str],
    dry_run: bool,
    command: str,
) -> ApplyResult:
    """frpc's file rewritten and frpc reloaded after a pass (`apply`, `maintain`), when the
    policy's tunnel has an admin API; RESULT with the ports the tunnel carries. What it did
    is a line on stderr, a warning (on the run, in Actions) when a port is not carried: the
    comment then leaves its off-LAN command out, and the host work stands."""
    policy = config.policy
    name = policy.tunnel.admin_password_env if policy.tunnel else ""
    # The variable frpc reads, when ssp has it too; else the policy's private file.
    password = env.get(name) if name else ""
    result, done = tunnel.after_apply(config, lxd, result, password, dry_run=dry_run)
    if done is None:
        return result
    if done.ok:
        print(log_line(f"ssp {command}: {done.summary()}"), file=sys.stderr)
        return result
    text = f"{done.summary()} (no off-LAN command is offered for those ports)"
    if env.get("GITHUB_ACTIONS") == "true":
        print(f"::warning title=Tunnel not in step::{command_data(text)}", file=sys.stderr)
    else:
        print(log_line(f"ssp {command}: warning: {text}"), file=sys.stderr)
    return result


def _note(line: str) -> None:
    print(f"ssp apply: {line}", file=sys.stderr)


def _warn(env: Mapping[str, str], text: str) -> None:
    text = f"{text}; re-run the apply for this commit to post it (the host is not affected)"
    if env.get("GITHUB_ACTIONS") == "true":
        # A workflow command: shown as a warning on the run. stderr, because stdout is the
        # report that apply.yml writes into the job summary.
        print(f"::warning title=PR comment not posted::{command_data(text)}", file=sys.stderr)
    else:
        print(log_line(f"ssp apply: warning: {text}"), file=sys.stderr)


# Environment variables whose values never appear in a PR comment, besides GITHUB_TOKEN.
_SECRET_NAME = re.compile(r".*(TOKEN|SECRET|PASSWORD|PRIVATE_KEY)$")


def comment_context(
    env: Mapping[str, str], policy: Policy | None, validation: Validation
) -> mergecomment.Context | None:
    """What the PR comments of a run share (`ssp apply`, and `ssp maintain` for a request in
    line), from GITHUB_* as Actions sets them; None unless token, repository and sha are."""
    token, repository, sha = (
        env.get(k, "").strip() for k in ("GITHUB_TOKEN", "GITHUB_REPOSITORY", "GITHUB_SHA")
    )
    if not (token and repository and sha):
        return None
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    run_id, attempt = env.get("GITHUB_RUN_ID", ""), env.get("GITHUB_RUN_ATTEMPT", "1")
    run_url = f"{server}/{repository}/actions/runs/{run_id}" if run_id.isdigit() else ""
    if run_url and attempt.isdigit() and int(attempt) > 1:
        run_url += f"/attempts/{attempt}"  # a re-run keeps the run's id
    secrets = [token] + [v for k, v in env.items() if _SECRET_NAME.fullmatch(k) and v.strip()]
    purposes = {i.path: i.request.purpose for i in (*validation.valid, *validation.expired)}
    return mergecomment.Context(policy, sha, run_url, purposes, tuple(secrets))
