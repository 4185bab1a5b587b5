"""The guide's rule tables as a catalogue: what `ssp explain RULE` prints.

The user guide (docs/user-guide.md, and its Chinese twin) explains every rule id the validator
can report in tables of `| rule | what it means | how to fix it |`; tests/test_docs.py holds
the guide to the code's rule ids. Reading the entries from the guide keeps one text for both
the reader of the guide and the reader of a terminal.
"""

from __future__ import annotations

import difflib
import re
import textwrap
from dataclasses import dataclass

_ROW = re.compile(r"^\|\s*`([a-z][a-z_]*\.[a-z][a-z0-9_]*)`\s*\|(.*)\|\s*$")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")  # [text](#anchor) → text


@dataclass(frozen=True)
class Entry:
    rule_id: str
    section: str  # the heading the rule sits under, e.g. "Fields and values"
    columns: tuple[tuple[str, str], ...]  # (header, text): ("what it means", "...")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def catalogue(guide: str) -> dict[str, Entry]:
    """Every rule row of the guide's tables, by rule id (the first row wins on a repeat)."""
    entries: dict[str, Entry] = {}
    section, header = "", [""]
    for line in guide.splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        elif (row := _ROW.match(line)) is not None:
            texts = [_LINK.sub(r"\1", c) for c in _cells(row[2])]
            columns = tuple(zip(header[1:], texts, strict=False))
            entries.setdefault(row[1], Entry(row[1], section, columns))
        elif line.startswith("|") and not line.startswith("|-"):
            header = _cells(line)
    return entries


def close_to(wanted: str, known: list[str]) -> list[str]:
    """Ids a mistyped or partial `wanted` probably meant: a family (`quota`) lists its rules."""
    family = [r for r in known if r.startswith(wanted.rstrip(".") + ".")]
    return family or difflib.get_close_matches(wanted, known, n=5, cutoff=0.6)


def show(entry: Entry) -> str:
    """The entry as a few lines of plain text."""
    width = max(len(h) for h, _ in entry.columns) if entry.columns else 0
    lines = [f"{entry.rule_id}  ({entry.section})"]
    for head, text in entry.columns:
        lead = f"  {head + ':':<{width + 1}} "
        lines.append(
            textwrap.fill(
                text,
                100,
                initial_indent=lead,
                subsequent_indent=" " * len(lead),
                break_long_words=False,
            )
        )
    return "\n".join(lines)
