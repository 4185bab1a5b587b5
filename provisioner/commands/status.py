"""`ssp status`: who holds which GPU until when, containers, accounts, quotas, the pool.

Reads the checkout (for leases and quotas), the LXD project and the shared servers, the
storage pool, and NVML's live readings when a driver answers (without one, the board shows
holders only and says why). `--output FILE` writes the page or report to a file.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner import statuspage
from provisioner.commands import (
    add_repo_arg,
    clock,
    connect,
    emit,
    examples,
    load_main,
    print_invalid_config,
)
from provisioner.errors import GpuError
from provisioner.reconcile import observe
from provisioner.status import Live, PoolUse, build
from provisioner.validate import today_for

FORMATS = {
    "text": lambda s: "\n".join(statuspage.text_lines(s)) + "\n",
    "json": statuspage.to_json,
    "markdown": statuspage.markdown,
    "html": statuspage.html,
}


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "status",
        help="who holds which GPU until when: containers, accounts, quotas, pool",
        description="The GPU host as it is now: the GPU board, every managed container and "
        "account with its lease, quota use per member and the storage pool.",
        **examples(
            "ssp status",
            "ssp status --format html --output status.html",
            "ssp status --format json | jq '.free_gpus'",
        ),
    )
    add_repo_arg(parser)
    parser.add_argument("--format", choices=tuple(FORMATS), default="text")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write here, not stdout")
    parser.set_defaults(func=run)


def live_gpus(env: Mapping[str, str]) -> tuple[dict[str, Live], str | None]:
    """NVML's readings by PCI address, or why there are none."""
    if env.get("SSP_GPU_CHECK") == "off":
        return {}, None
    from provisioner.gpus import read_gpus  # noqa: PLC0415  (loads NVML bindings)

    try:
        gpus = read_gpus()
    except GpuError as e:
        return {}, f"no live GPU readings: {e}"
    return {g.pci: Live(g.utilization, g.memory_used, g.memory) for g in gpus}, None


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    now = clock(env)
    validation, _sha = load_main(args.repo, now)
    config = validation.config
    if config is None:
        print_invalid_config("status", validation)
        return 1
    policy = config.policy
    lxd, servers = connect(policy, env)
    observed = observe(config, lxd, servers, id_maps=False)
    got = lxd.storage_pool(policy.lxd.pool)
    pool = PoolUse(got.name, got.used, got.total) if got is not None else None
    live, why = live_gpus(env)
    status = build(
        policy=policy,
        inventory=config.inventory,
        requests=(*validation.valid, *validation.expired),
        instances=observed.instances,
        servers=observed.servers,
        now=now,
        today=today_for(config, now),
        pool=pool,
        live=live,
    )
    if why:
        status = dataclasses.replace(status, notes=(*status.notes, why))
    text = FORMATS[args.format](status)
    emit("status", text, args.output)
    return 0
