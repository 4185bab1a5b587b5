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

from provisioner.commands import (
    add_repo_arg,
    clock,
    connect,
    emit,
    examples,
    load_main,
    print_invalid_config,
)
from provisioner.flows.reconcile import observe
from provisioner.status import page as statuspage
from provisioner.status.server import Live, PoolUse, ServerStatus, build
from provisioner.validation.validate import today_for
from provisioner.values.errors import GpuError
from provisioner.values.policymodels import Policy
from provisioner.values.state import Image, Instance

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
    from provisioner.gpu.nvml import read_gpus  # noqa: PLC0415  (loads NVML bindings)

    try:
        gpus = read_gpus()
    except GpuError as e:
        return {}, f"no live GPU readings: {e}"
    return {g.pci: Live(g.utilization, g.memory_used, g.memory) for g in gpus}, None


@dataclasses.dataclass(frozen=True)
class Observed:
    """The host's status, and what it was made from (for `ssp publish`)."""

    status: ServerStatus
    policy: Policy
    instances: tuple[Instance, ...]
    sha: str
    images: tuple[Image, ...] | None = None  # ssp's images, when asked for


def observe_status(
    repo: Path, env: Mapping[str, str], command: str, *, images: bool = False
) -> Observed | None:
    """The host as it is now against the checkout's main (and ssp's images, for `ssp
    publish`); None when config/ is not valid."""
    now = clock(env)
    validation, sha = load_main(repo, now)
    config = validation.config
    if config is None:
        print_invalid_config(command, validation)
        return None
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
    found = tuple(lxd.images()) if images else None
    return Observed(status, policy, observed.instances, sha, found)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    found = observe_status(args.repo, env, "status")
    if found is None:
        return 1
    emit("status", FORMATS[args.format](found.status), args.output)
    return 0
