"""`ssp backup`: the backups `ssp maintain` writes off the host (the policy's `backup:`
section): list a container's, and restore one as a new container, under the host lock.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from provisioner.commands import (
    add_lock_args,
    add_repo_arg,
    examples,
    host_id_spans,
    ids_pinnable,
    load_for_host,
    lock_path,
    open_lxd,
    print_blocking,
)
from provisioner.flows import backup
from provisioner.host.lock import host_lock
from provisioner.reporting.escape import log_line


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "backup",
        help="list a container's backups off the host, or restore one as a new container",
        description="The backups `ssp maintain` writes into the policy's backup.target. "
        "`restore` brings a container's newest (or --file) back as a new, stopped container "
        "in the policy's LXD project: under its own name when the original is gone (ssp "
        "manages it again), or --as another name, a copy ssp leaves to the admin.",
        **examples(
            "ssp backup list web  # web's backups, newest first",
            "ssp backup restore web  # bring web back (the original is gone)",
            "ssp backup restore web --as web-copy  # a copy beside the original, stopped",
            status="Exit status: 0 done, 2 usage (no such backup, the name is taken), 3 error.",
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="a container's backups, newest first")
    listing.add_argument("name", metavar="NAME", help="the container")
    add_repo_arg(listing)
    listing.set_defaults(func=run_list)
    again = actions.add_parser("restore", help="restore a backup as a new container")
    again.add_argument("name", metavar="NAME", help="the container that was backed up")
    again.add_argument(
        "--as", dest="as_name", default="", metavar="NEW", help="the new container's name"
    )
    again.add_argument(
        "--file", default="", metavar="PATH", help="this tarball, not NAME's newest backup"
    )
    add_repo_arg(again)
    add_lock_args(again)
    again.set_defaults(func=run_restore)


def run_list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    main = load_for_host(args.repo, env)
    if main.blocking:
        print_blocking(main.blocking)
        return 1
    for path in backup.backups_of(main.config.policy, args.name):
        print(log_line(path))
    return 0


def run_restore(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    main = load_for_host(args.repo, env)
    if main.blocking:
        print_blocking(main.blocking)
        return 1
    policy = main.config.policy
    with host_lock(lock_path(args, env), wait_s=args.lock_wait):
        lxd = open_lxd(policy.lxd.project, env)
        done = backup.restore(
            lxd,
            policy,
            args.name,
            args.as_name,
            args.file,
            id_spans=host_id_spans(),
            pin_ids=ids_pinnable(lxd),
        )
    print(log_line(f"restored {done.source} as {done.name!r} (stopped)"))
    if done.ids:
        print(log_line(f"{done.name!r}: {done.ids}"))
    if done.managed:
        print("ssp manages it again: the next apply starts it if its request is still there.")
    else:
        print(
            log_line(
                f"{done.name!r} is a copy ssp leaves alone; its devices (GPUs, forwarded "
                f"ports) are the original's: change them before `lxc start {done.name}`."
            )
        )
    return 0
