"""`ssp doctor`: one command an admin runs on the GPU host when something is off.

`provisioner.flows.checkup` observes the host and runs the checks of `provisioner.doctor.checks` and
`provisioner.doctor.gpus`; this command prints one line per check: ok, problem (with how to
fix it), n/a (hardware this host does not have) or skipped (an earlier check failed).

Exit statuses: 0 healthy (every check ok or n/a), 1 a problem or a skipped check, or an
invalid config/ in the checkout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from provisioner.commands import (
    add_repo_arg,
    clock,
    examples,
    github_client,
    github_env_from_clone,
    open_lxd,
)
from provisioner.doctor import checks as doctor
from provisioner.doctor import reach
from provisioner.doctor import repository as repocheck
from provisioner.doctor.checks import Check, Status
from provisioner.flows import notify
from provisioner.flows.checkout import load_main
from provisioner.flows.checkup import examine
from provisioner.planning.leases import lab_today
from provisioner.reporting.escape import log_line
from provisioner.values.errors import GithubError, UsageError

MARK = {Status.OK: "ok", Status.PROBLEM: "PROBLEM", Status.NA: "n/a", Status.SKIPPED: "skipped"}


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "doctor",
        help="check the GPU host: LXD, the project, pool, GPUs, ports, subordinate UIDs",
        description="Check the host this runs on against the checkout's policy and inventory; "
        "every problem comes with how to fix it.",
        **examples(
            "sudo ssp doctor  # check this host",
            "ssp doctor --format json  # the same, for scripts",
            "ssp doctor --github  # also check the GitHub token, repository and labels",
            "ssp doctor --notify  # and tell the admins by mail and chat (policy notify:)",
            status="Exit status: 0 healthy, 1 a problem (or a check that could not run).",
        ),
    )
    add_repo_arg(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--github",
        action="store_true",
        help="check the GitHub repository's settings instead of the host (GITHUB_TOKEN with "
        "administration read access, else `gh auth token`; GITHUB_REPOSITORY, else the "
        "clone's origin remote; GITHUB_API_URL)",
    )
    parser.add_argument(
        "--notify",
        action="store_true",
        help="tell the admins about the problems found through the policy's `notify:` mail "
        "and webhooks (the same findings once a day); a failed delivery is a warning",
    )
    parser.set_defaults(func=run)


def github_checks(repo: Path, env: Mapping[str, str]) -> list[Check]:
    """The repository's settings, read through GitHub's API, against the trust model."""
    client = github_client(github_env_from_clone(env, repo), needed_for="--github")
    try:
        settings = client.repository_settings(
            repocheck.MAIN,
            repocheck.PROBE_BRANCH,
            environment=reach.ENVIRONMENT,
            state_branch=reach.STATE_BRANCH,
        )
    except GithubError as e:
        raise UsageError(f"cannot read the repository's settings: {e}") from e
    owners = repo / ".github" / "CODEOWNERS"
    text = owners.read_text(encoding="utf-8") if owners.is_file() else None
    return repocheck.examine(settings, text)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.github:
        return show(github_checks(args.repo, env), args.format)
    validation, _sha = load_main(args.repo, clock(env))
    config = validation.config
    if config is None:
        print("ssp doctor: config/ is not valid, so the host cannot be checked against it:")
        for problem in validation.errors:
            print(log_line(problem))
        return 1
    lxd = open_lxd(config.policy.lxd.project, env, require_project=False)
    checks = examine(config, validation.valid, lxd, lxd.socket)
    code = show(checks, args.format)
    if args.notify:
        today = lab_today(clock(env), config.policy.timezone)
        told = notify.doctor_findings(config.policy, checks, today)
        for failed in told.failed:
            print(
                log_line(f"ssp doctor: warning: {failed.channel}: {failed.error}"), file=sys.stderr
            )
        for warning in told.warnings:
            print(log_line(f"ssp doctor: warning: {warning}"), file=sys.stderr)
    return code


def show(checks: Sequence[Check], fmt: str) -> int:
    """One line per check (and its fix), or JSON; 0 when every check is ok or n/a."""
    ok = doctor.healthy(checks)
    if fmt == "json":
        document = {"healthy": ok, "checks": [asdict(c) for c in checks]}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return 0 if ok else 1
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(log_line(f"{MARK[c.status]:<8} {c.name:<{width}}  {c.detail}"))
        if c.fix:
            print(log_line(f"{'':<8} {'':<{width}}  fix: {c.fix}"))
    problems = sum(c.status is Status.PROBLEM for c in checks)
    skipped = sum(c.status is Status.SKIPPED for c in checks)
    if ok:
        print("ssp doctor: healthy")
    else:
        print(f"ssp doctor: {problems} problem(s), {skipped} check(s) could not run")
    return 0 if ok else 1
