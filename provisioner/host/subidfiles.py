"""/etc/subuid and /etc/subgid read and appended to (`provisioner.values.subids` decides what).

Lines are only ever appended, never rewritten: other tools (useradd, an admin) own the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from provisioner.values.subids import Range


def read(path: Path) -> str:
    """The file's text; a missing file reads as empty (it is created when appended to)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def append(path: Path, ranges: Sequence[Range]) -> None:
    """Append the ranges, one per line, after a newline if the file lacks a final one."""
    if not ranges:
        return
    text = read(path)
    lead = "\n" if text and not text.endswith("\n") else ""
    with path.open("a", encoding="utf-8") as f:
        f.write(lead + "".join(f"{r}\n" for r in ranges))
