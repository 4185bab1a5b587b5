"""`ssp gpus`: list this host's NVIDIA GPUs, and with `--write` record them in config/hosts.yaml.

Run it on the GPU host. The table shows what each card is (model, PCI address as LXD wants
it, UUID) and what it is doing (memory in use, utilisation, processes). `--write` replaces the
`gpus:` list of one host in `config/hosts.yaml` with what NVML reports, keeps the host's other
keys and the file's leading comment block, and prints what changed, so the admin can commit
the inventory the validator and `apply` rely on. When the file lists several hosts and LXD
here is a cluster, `--write` without `--host` rewrites every member's entry
(`provisioner.flows.inventory`): this member's from NVML, the others' from their own LXD.

Exit statuses: 0 listed (and written); 2 usage (bad --host, missing or malformed hosts file);
3 NVML unusable (no driver library, driver not loaded, no permission): the `GpuError` raised
by `provisioner.gpu.nvml` carries the message saying what to do, and `cli.main` prints it as
`ssp gpus: error: <message>`. A missing /dev/nvidia-uvm or /dev/nvidiactl is a warning on
stderr, not a failure: the inventory is still right, only containers started now lack CUDA.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

# The package, not the name: `provisioner.commands` imports this module while it is itself
# being initialised, and `add_repo_arg` is defined after that import runs.
from provisioner import commands
from provisioner.flows.inventory import Written, write_members
from provisioner.gpu.nvml import missing_device_nodes, read_gpus
from provisioner.validation.hostsfile import HOSTS_FILE, host_names, update_hosts_text
from provisioner.values.errors import LxdError, UsageError
from provisioner.values.gpuinventory import Gpu
from provisioner.values.sizes import format_mib

MiB = 1024 * 1024


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "gpus",
        help="list this host's NVIDIA GPUs; --write records them in config/hosts.yaml",
        description="List this host's NVIDIA GPUs (NVML) and, with --write, record them in "
        "config/hosts.yaml.",
        **commands.examples(
            "ssp gpus  # the host's GPUs, numbered as nvidia-smi on the host numbers them",
            "ssp gpus --write  # record them in config/hosts.yaml (then open a PR)",
            "ssp gpus --format json",
            status="Exit status: 0 listed (and written), 2 usage or hosts-file problem, "
            "3 NVML unusable (no driver, driver not loaded, no permission).",
        ),
    )
    commands.add_repo_arg(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.add_argument(
        "--write",
        action="store_true",
        help="replace the host's gpus: list in config/hosts.yaml with the live GPUs",
    )
    parser.add_argument(
        "--host",
        metavar="ID",
        help="host id in config/hosts.yaml to write (default: the only host in the file)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.host is not None and not args.write:
        raise UsageError("--host only applies with --write")
    gpus = read_gpus()
    missing = missing_device_nodes()
    if args.format == "json":
        document = {
            "gpus": [dataclasses.asdict(g) for g in gpus],
            "missing_device_nodes": missing,
        }
        print(json.dumps(document, indent=2))
    else:
        print(format_table(gpus))
    if missing:
        print(
            f"warning: {', '.join(missing)} missing: containers started now get no CUDA "
            '("CUDA unknown error"). Create them with runner/nvidia-devices.sh, and install '
            "the boot unit (runner/install-gpu-unit.sh) so it happens before LXD starts",
            file=sys.stderr,
        )
    if args.write:
        write(args, env, gpus)
    return 0


def write(args: argparse.Namespace, env: Mapping[str, str], gpus: Sequence[Gpu]) -> None:
    """--write: the host's entry (or, in a cluster, every member's) in config/hosts.yaml."""
    path = args.repo / HOSTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"{path} not found: create it with this host's entry (cpu, memory, disk) first"
        ) from None
    # In JSON mode stdout is for the document; the summary goes beside it.
    out = sys.stderr if args.format == "json" else sys.stdout
    if args.host is None and len(names := host_names(text)) > 1:
        why = "LXD here is not a cluster"
        try:
            lxd = commands.open_lxd("default", env, require_project=False)
            written = write_members(lxd, gpus, text)
        except LxdError as e:
            written, why = None, f"LXD does not answer ({e})"
        if written is None:
            raise UsageError(
                f"{HOSTS_FILE} lists several hosts ({', '.join(names)}) and {why}: "
                "name one with --host"
            )
        report(path, text, written, out)
        return
    new_text, host, changes, dropped_comments = update_hosts_text(text, args.host, gpus)
    if new_text == text:
        print(f"{path}: GPUs of host {host} already match; nothing written", file=out)
    else:
        write_atomically(path, new_text)
        print(f"{path}: host {host}: GPUs written", file=out)
        for line in changes:
            print(f"  {line}", file=out)
        if dropped_comments:
            print(
                f"note: comments below the header of {path} were not kept; "
                "check `git diff` before committing",
                file=sys.stderr,
            )


def report(path: Path, text: str, written: Written, out: TextIO) -> None:
    """Write every member's entry (in one rename) and say what changed, member by member."""
    if written.text == text:
        print(f"{path}: every member's GPUs that could be read already match", file=out)
    else:
        write_atomically(path, written.text)
        print(f"{path}: GPUs written for the cluster's members", file=out)
    for line in written.changes:
        print(f"  {line}", file=out)
    for line in written.skipped:
        print(f"warning: {line}", file=sys.stderr)
    if written.dropped_comments:
        print(f"note: comments below the header of {path} were not kept", file=sys.stderr)


def format_table(gpus: Sequence[Gpu]) -> str:
    if not gpus:
        return "no NVIDIA GPUs found (NVML works, but reports none)"
    header = ("IDX", "MODEL", "PCI", "UUID", "MEMORY (USED/TOTAL)", "UTIL", "PROCESSES")
    rows = [header]
    for g in gpus:
        procs = ", ".join(
            f"{p.pid} ({'?' if p.used_memory is None else format_mib(p.used_memory)})"
            for p in g.processes
        )
        rows.append(
            (
                str(g.index),
                g.model,
                g.pci,
                g.uuid,
                f"{g.memory_used // MiB}/{format_mib(g.memory)}",
                "n/a" if g.utilization is None else f"{g.utilization}%",
                procs or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one rename, so a crash leaves the old file or the new one."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
