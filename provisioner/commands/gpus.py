"""`ssp gpus`: list this host's NVIDIA GPUs, and with `--write` record them in config/hosts.yaml.

Run it on the GPU host. The table shows what each card is (model, PCI address as LXD wants
it, UUID) and what it is doing (memory in use, utilisation, processes). `--write` replaces the
`gpus:` list of one host in `config/hosts.yaml` with what NVML reports, keeps the host's other
keys and the file's leading comment block, and prints what changed, so the admin can commit
the inventory the validator and `apply` rely on.

Exit statuses: 0 listed (and written); 2 usage (bad --host, missing or malformed hosts file);
3 NVML unusable (no driver library, driver not loaded, no permission): the `GpuError` raised
by `provisioner.gpus` carries the message saying what to do, and `cli.main` prints it as
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
from typing import Any

import yaml

# The package, not the name: `provisioner.commands` imports this module while it is itself
# being initialised, and `add_repo_arg` is defined after that import runs.
from provisioner import commands
from provisioner.errors import UsageError
from provisioner.gpus import Gpu, missing_device_nodes, nvml_to_lxd_pci, read_gpus

MiB = 1024 * 1024
HOSTS_FILE = Path("config") / "hosts.yaml"
# What --write records for each GPU, in this order (memory as a size string).
RECORDED = ("index", "model", "pci", "uuid", "memory")


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
        path = args.repo / HOSTS_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(
                f"{path} not found: create it with this host's entry (cpu, memory, disk) first"
            ) from None
        new_text, host, changes, dropped_comments = update_hosts_text(text, args.host, gpus)
        # In JSON mode stdout is for the document; the summary goes beside it.
        out = sys.stderr if args.format == "json" else sys.stdout
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
    return 0


def _mib(size: int) -> str:
    return f"{size // MiB}MiB"


def format_table(gpus: Sequence[Gpu]) -> str:
    if not gpus:
        return "no NVIDIA GPUs found (NVML works, but reports none)"
    header = ("IDX", "MODEL", "PCI", "UUID", "MEMORY (USED/TOTAL)", "UTIL", "PROCESSES")
    rows = [header]
    for g in gpus:
        procs = ", ".join(
            f"{p.pid} ({'?' if p.used_memory is None else _mib(p.used_memory)})"
            for p in g.processes
        )
        rows.append(
            (
                str(g.index),
                g.model,
                g.pci,
                g.uuid,
                f"{g.memory_used // MiB}/{_mib(g.memory)}",
                "n/a" if g.utilization is None else f"{g.utilization}%",
                procs or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


# -- config/hosts.yaml ------------------------------------------------------------------


class _Quoted(str):
    """A string always written in double quotes: a PCI address looks like a YAML 1.1
    sexagesimal number to some parsers, so it is quoted as in the hand-written file."""

    __slots__ = ()


class _Dumper(yaml.SafeDumper):
    # Indent list items under their key ("gpus:\n  - index: 0"), as the file is written by hand.
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


_Dumper.add_representer(
    _Quoted,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style='"'),
)


def _header(text: str) -> str:
    """The leading block of comment and blank lines (the schema modeline lives there)."""
    lines = text.splitlines(keepends=True)
    end = 0
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            break
        end += 1
    return "".join(lines[:end])


def _comments_after(text: str, start: int) -> bool:
    """Whether the YAML text has a comment after `start`: a '#' outside every token."""
    covered: list[tuple[int, int]] = [
        (token.start_mark.index, token.end_mark.index) for token in yaml.scan(text)
    ]
    for i, char in enumerate(text[start:], start):
        if char == "#" and not any(a <= i < b for a, b in covered):
            return True
    return False


def _pci_key(value: object) -> str:
    try:
        return nvml_to_lxd_pci(str(value))
    except ValueError:
        return str(value)


def _recorded(g: Gpu) -> dict[str, Any]:
    return {
        "index": g.index,
        "model": g.model,
        "pci": _Quoted(g.pci),
        "uuid": g.uuid,
        "memory": _mib(g.memory),
    }


def _describe(entry: Mapping[str, Any]) -> str:
    return (
        f"{entry.get('model')} ({entry.get('uuid')}, index {entry.get('index')}, "
        f"{entry.get('memory')})"
    )


def _changes(old: Sequence[Any], new: Sequence[dict[str, Any]]) -> list[str]:
    old_by_pci = {_pci_key(e.get("pci")): e for e in old if isinstance(e, dict)}
    new_by_pci = {str(e["pci"]): e for e in new}
    lines: list[str] = []
    for pci, entry in new_by_pci.items():
        before = old_by_pci.get(pci)
        if before is None:
            lines.append(f"added {pci}: {_describe(entry)}")
            continue
        diffs = [
            f"{key} {before.get(key)} -> {entry[key]}"
            for key in RECORDED
            if key != "pci" and str(before.get(key)) != str(entry[key])
        ]
        if diffs:
            lines.append(f"changed {pci}: {', '.join(diffs)}")
    lines.extend(
        f"removed {pci}: {_describe(entry)}"
        for pci, entry in old_by_pci.items()
        if pci not in new_by_pci
    )
    return lines


def _pick_host(hosts: Mapping[str, Any], wanted: str | None) -> str:
    names = [str(name) for name in hosts]
    if wanted is not None:
        if wanted not in hosts:
            raise UsageError(
                f"host {wanted!r} is not in {HOSTS_FILE} (hosts: {', '.join(names) or 'none'})"
            )
        return wanted
    if len(names) == 1:
        return names[0]
    if not names:
        raise UsageError(f"{HOSTS_FILE} lists no hosts: add this host's entry first")
    raise UsageError(f"{HOSTS_FILE} lists several hosts ({', '.join(names)}): name one with --host")


def update_hosts_text(
    text: str, host: str | None, gpus: Sequence[Gpu]
) -> tuple[str, str, list[str], bool]:
    """The hosts file with `host`'s gpus replaced by `gpus`.

    Returns (new text, host id, change lines, whether comments below the header were
    dropped). The text is returned unchanged when the GPUs already match, so running
    `--write` twice writes once.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UsageError(f"{HOSTS_FILE} is not valid YAML: {e}") from e
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, dict):
        raise UsageError(f"{HOSTS_FILE} has no 'hosts:' mapping")
    name = _pick_host(hosts, host)
    entry = hosts[name]
    if entry is None:
        entry = hosts[name] = {}
    if not isinstance(entry, dict):
        raise UsageError(f"{HOSTS_FILE}: host {name!r} is not a mapping")
    old = entry.get("gpus") or []
    if not isinstance(old, list):
        raise UsageError(f"{HOSTS_FILE}: host {name!r}: 'gpus' is not a list")
    new = [_recorded(g) for g in gpus]
    changes = _changes(old, new)
    if not changes and [_plain(e) for e in old] == [_plain(e) for e in new]:
        return text, name, [], False
    if not changes:  # same GPUs, written differently (order, extra keys, spelling)
        changes = ["same GPUs; entries rewritten in the recorded form"]
    entry["gpus"] = new
    header = _header(text)
    body = yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000, indent=2
    )
    return header + body, name, changes, _comments_after(text, len(header))


def _plain(entry: object) -> object:
    """An entry compared by value: the quoted PCI address equals the loaded string."""
    if isinstance(entry, dict):
        return {str(k): str(v) for k, v in entry.items()}
    return entry


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
