"""`ssp tunnel`: the tunnel client's configuration for the GPU host (frp's frpc.toml), one
proxy per forwarded port that LXD holds now and per shared server's SSH port.

Run on the host (it reads the LXD project); `--output FILE` writes the file frpc reads. With
the policy's `tunnel.admin_port`, `ssp apply` keeps that file and frpc in step itself
(flows/tunnel.py); this command then writes only the first file frpc starts with.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner.commands import add_repo_arg, clock, connect, emit, main_config
from provisioner.flows.reconcile import observe
from provisioner.planning import tunnel
from provisioner.values.errors import UsageError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "tunnel",
        help="the tunnel client's config for the host (frpc.toml), one proxy per forwarded port",
        description="Render the lab tunnel's client configuration from config/policy.yaml "
        "(`tunnel:`) and the forwarded ports LXD holds now: each container's SSH and remote "
        "desktop port and each shared server's SSH port, mapped to the frp server's ports.",
        epilog="examples:\n  ssp tunnel\n  sudo ssp tunnel --output /etc/frp/frpc.toml && "
        "sudo systemctl restart frpc",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_repo_arg(parser)
    parser.add_argument("--format", choices=("frpc",), default="frpc")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write here, not stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    config = main_config(args.repo, clock(env), "tunnel")
    if config is None:
        return 1
    policy = config.policy
    if policy.tunnel is None:
        raise UsageError(
            "config/policy.yaml has no `tunnel:` (the frp server members reach from outside); "
            "see the admin guide, 'Access from outside the lab'"
        )
    lxd, _servers = connect(policy, env)
    observed = observe(config, lxd, id_maps=False, members=False)  # the listing alone
    ports = tunnel.forwards(policy, observed.instances)
    text = tunnel.frpc_toml(policy, ports)
    emit("tunnel", text, args.output, f" ({len(ports)} proxies)")
    return 0
