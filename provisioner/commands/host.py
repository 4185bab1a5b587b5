"""`ssp host init`: the policy's LXD project as a second line of defence, and the members' UIDs.

Run it once on a new GPU host, and again whenever config/policy.yaml changes its members,
shares, project, pool or network, or config/hosts.yaml its capacity. It compares what LXD has
with what `provisioner.planning.hostproject` computes from the policy and changes only what
differs, so a second run prints "nothing to change" and sends no mutating request. `--dry-run`
prints the same list and changes nothing. /etc/subuid and /etc/subgid only ever gain lines; LXD
reads them when it starts, so the command says when the daemon must be restarted.

It also checks the policy's `gpu_userspace`: with nvidia-runtime, a host whose NVIDIA driver is
loaded must have nvidia-container-cli (LXD refuses `nvidia.runtime` without it).

Exit statuses: 0 done (or nothing to do), 1 the checkout's config is invalid or the host lacks
what the project needs (pool, network, a profile the policy names, nvidia-container-cli), 3
LXD refused or is down.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner.applying.hostinit import (
    apply_host_plan,
    cluster_lines,
    gpu_userspace_lines,
    missing_prerequisites,
    pool_advice,
)
from provisioner.commands import add_repo_arg, clock, examples, open_lxd
from provisioner.flows.checkout import load_main
from provisioner.host import nvidia, subidfiles
from provisioner.planning.hostproject import DEFAULT_PROFILE, plan_host
from provisioner.reporting.escape import log_line
from provisioner.values import subids
from provisioner.values.errors import SspError

PREFIX = "ssp host init"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "host",
        help="set up the GPU host: the hardened LXD project, subordinate UIDs",
        description="Set up the GPU host (run as root on it).",
        **examples("sudo ssp host init --dry-run  # what would change", "sudo ssp host init"),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    init = actions.add_parser(
        "init",
        help="create or update the policy's LXD project and /etc/subuid, /etc/subgid",
        description="Create or update the LXD project named in config/policy.yaml (restricted: "
        "unprivileged containers only, host paths limited to the share catalogue, host UIDs "
        "to the members', no unix/usb/pci devices; limits from config/hosts.yaml) with its "
        "default profile, and delegate the members' UIDs to LXD in /etc/subuid and "
        "/etc/subgid. Changes only what differs; safe to run again.",
        **examples(
            "sudo ssp host init --dry-run  # what would change, changing nothing",
            "sudo ssp host init  # create or update the project and /etc/subuid, /etc/subgid",
            status="Exit status: 0 done or nothing to do, 1 invalid config or missing pool, "
            "network or profile, 3 LXD refused or unreachable.",
        ),
    )
    add_repo_arg(init)
    init.add_argument("--dry-run", action="store_true", help="show what would change only")
    init.add_argument(
        "--subuid",
        type=Path,
        default=subids.SUBUID,
        metavar="FILE",
        help=f"subordinate UID file LXD reads (default: {subids.SUBUID})",
    )
    init.add_argument(
        "--subgid",
        type=Path,
        default=subids.SUBGID,
        metavar="FILE",
        help=f"subordinate GID file LXD reads (default: {subids.SUBGID})",
    )
    init.set_defaults(func=run_init)


def run_init(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    validation, _sha = load_main(args.repo, clock(env))
    config = validation.config
    if config is None:
        print(f"{PREFIX}: config/ is not valid; nothing was changed:", file=sys.stderr)
        for problem in validation.errors:
            print(log_line(problem), file=sys.stderr)
        return 1
    policy = config.policy
    lxd = open_lxd(policy.lxd.project, env, require_project=False)
    observed = lxd.read_project()
    missing = missing_prerequisites(lxd, policy, observed is not None)
    gpu_errors, host_warnings = gpu_userspace_lines(
        policy, config.inventory, nvidia.driver_loaded(), nvidia.container_cli(env.get("PATH"))
    )
    missing += gpu_errors
    host_warnings += [w for w in (pool_advice(lxd.storage_pool(policy.lxd.pool)),) if w]
    profile = lxd.read_profile(DEFAULT_PROFILE) if observed is not None else None
    plan = plan_host(policy, config.inventory, observed, profile)
    uids = [user.uid for user in policy.users.values()]
    files = {
        path: subids.additions(subidfiles.read(path), uids) for path in (args.subuid, args.subgid)
    }

    lines = [str(change) for change in plan.changes]
    if plan.create_project:
        lines.insert(0, f"project {policy.lxd.project}: create")
    lines += [f"{path}: append {r}" for path, ranges in files.items() for r in ranges]
    print(
        "".join(f"{PREFIX}: {line}\n" for line in cluster_lines(lxd.members(), config.inventory)),
        end="",
    )
    if lines:
        print(f"{PREFIX}: {'would change' if args.dry_run else 'changing'}:")
    for line in lines:
        print(f"  {line}")
    print("".join(f"{PREFIX}: warning: {w}\n" for w in host_warnings), end="", file=sys.stderr)
    if missing:
        for line in missing:
            print(f"{PREFIX}: error: {line}", file=sys.stderr)
        print(f"{PREFIX}: nothing was changed", file=sys.stderr)
        return 1
    if args.dry_run:
        print(f"{PREFIX}: dry run: {len(lines)} changes, nothing was changed")
        return 0
    for path, ranges in files.items():
        target = path if path.exists() else path.parent
        if ranges and not os.access(target, os.W_OK):
            raise SspError(f"cannot write {path}: run `ssp host init` as root; nothing was changed")
    apply_host_plan(lxd, plan)
    for path, ranges in files.items():
        subidfiles.append(path, ranges)
    print(f"{PREFIX}: {len(lines)} changes made" if lines else f"{PREFIX}: nothing to change")
    if any(files.values()):
        print(f"{PREFIX}: {subids.RESTART_HINT}")
    return 0
