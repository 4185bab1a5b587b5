"""config/hosts.yaml as `ssp gpus --write` edits it: one host's `gpus:` list replaced by
what NVML reports, the host's other keys and the file's leading comment block kept.

Pure: text in, text out. The file is read with the validator's own YAML 1.2 loader
(`provisioner.validation.sources`), so the editor and the validator agree on every value; it is
written back with PyYAML's dumper, PCI addresses quoted as in the hand-written file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from provisioner.validation.sources import load
from provisioner.values.errors import UsageError
from provisioner.values.gpuinventory import Gpu, nvml_to_lxd_pci
from provisioner.values.sizes import format_mib, size_bytes

HOSTS_FILE = Path("config") / "hosts.yaml"
# What --write records for each GPU, in this order (memory as a size string).
RECORDED = ("index", "model", "pci", "uuid", "memory")


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
        "memory": format_mib(g.memory),
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
    doc, problems = load(text.encode("utf-8"), str(HOSTS_FILE))
    if doc is None:
        first = problems[0]
        raise UsageError(f"{HOSTS_FILE}:{first.line}:{first.col}: {first.message}")
    data = doc.data
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


def recorded_memory(text: str, host: str) -> dict[str, int]:
    """UUID → memory size in bytes of each GPU the file records for `host` ({} if none)."""
    doc, _problems = load(text.encode("utf-8"), str(HOSTS_FILE))
    data = doc.data if doc is not None else None
    hosts = data.get("hosts") if isinstance(data, dict) else None
    entry = hosts.get(host) if isinstance(hosts, dict) else None
    gpus = entry.get("gpus") if isinstance(entry, dict) else None
    out = {}
    for gpu in gpus if isinstance(gpus, list) else ():
        if not isinstance(gpu, dict):
            continue
        try:
            out[str(gpu.get("uuid"))] = size_bytes(str(gpu.get("memory")))
        except ValueError:
            continue
    return out


def host_names(text: str) -> list[str]:
    """The host ids the file lists ([] when it cannot be read; `update_hosts_text` says why)."""
    doc, _problems = load(text.encode("utf-8"), str(HOSTS_FILE))
    data = doc.data if doc is not None else None
    hosts = data.get("hosts") if isinstance(data, dict) else None
    return [str(h) for h in hosts] if isinstance(hosts, dict) else []
