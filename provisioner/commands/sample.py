"""`ssp sample`: one pass of the GPU sampler (the ssp-sample.timer runs it every few minutes).

Reads each GPU through NVML, finds its holder among the managed containers, and records the
readings in the usage database (`provisioner.flows.sample`). Without a GPU it records
nothing, says why on one line and exits 0, so the timer stays quiet on a member without GPUs.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner.commands import (
    add_repo_arg,
    clock,
    examples,
    main_config,
    open_lxd,
)
from provisioner.flows.sample import sample
from provisioner.flows.usage import database_path
from provisioner.values.errors import GpuError
from provisioner.values.gpuinventory import Gpu


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "sample",
        help="record each GPU's use and holder in the usage database (run by a timer)",
        description="Read each GPU's utilisation, memory and processes through NVML and record "
        "them, with the container holding the GPU, in the usage database (SQLite). "
        "runner/install-sample-timer.sh installs the timer that runs it every 5 minutes.",
        **examples(
            "ssp sample  # one pass, into the policy's usage.database",
            "ssp sample --db /tmp/usage.sqlite",
            status="Exit status: 0 recorded (or no GPU: nothing recorded, and why), 1 config/ "
            "not valid, 3 LXD or the database failed.",
        ),
    )
    add_repo_arg(parser)
    parser.add_argument(
        "--db",
        type=Path,
        metavar="FILE",
        help="usage database (default: $SSP_USAGE_DB or the policy's usage.database)",
    )
    parser.set_defaults(func=run)


def _read_gpus(env: Mapping[str, str]) -> list[Gpu]:
    if env.get("SSP_GPU_CHECK") == "off":
        raise GpuError("SSP_GPU_CHECK=off")
    from provisioner.gpu.nvml import read_gpus  # noqa: PLC0415  (loads NVML bindings)

    return read_gpus()


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    now = clock(env)
    config = main_config(args.repo, now, "sample")
    if config is None:
        return 1
    policy = config.policy
    database = database_path(policy, env, args.db)
    done = sample(
        lambda: open_lxd(policy.lxd.project, env),
        database,
        policy.usage,
        now=now,
        read_gpus=lambda: _read_gpus(env),
    )
    if done.why:
        print(f"ssp sample: {done.why}")
        return 0
    held = sum(1 for r in done.readings if r.container)
    print(
        f"ssp sample: {len(done.readings)} GPU(s) recorded in {database} ({held} held)"
        + (
            f"; pruned {done.pruned} reading(s) older than {policy.usage.keep_days} days"
            if done.pruned
            else ""
        )
    )
    return 0
