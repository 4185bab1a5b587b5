"""Keyboard slips behind a YAML syntax error, named on the line where they were typed.

A member typing with a Chinese input method easily leaves a full-width colon (`cpu：8`), a
full-width space or a tab in the indentation, or full-width quotes; and anyone can leave a
quote open. The parser then fails somewhere else (the line after the colon, the end of the
file for a quote) with words that never name the slip. When a file does not parse,
`sources.load` asks `first_slip` which slip, at or before the parser's line, explains it.

A tab or a full-width space in the indentation is always wrong, so it is named as found. A
full-width colon or quote, or a quote left open, may be legal text inside a longer value, so it
is named only if mending that one slip on a copy of the text lets the parser get past the line
of its error: a slip that does not explain the error is not blamed for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice

# Where a key ends with a full-width colon: only a key's characters before it, no ASCII ':',
# no quote and no comment (after an ASCII ':' it is part of a value such as `用途：说明`).
_KEY_COLON = re.compile(r"^[ ]*(?:-[ ]+)?[^\s:#'\"\[\]{},][^:#'\"]*?(：)")
_INDENT = re.compile(r"^[ \t\u3000]*")
# A value that opens with a full-width quote: “…”, ‘…’, ＂…＂ or 「…」.
_FULL_QUOTE = re.compile(r"^[ ]*(?:-[ ]+)?(?:[^\s:#'\"][^:#'\"]*:[ ]+)?([“‘＂「『])")
_FULL_QUOTES = str.maketrans(
    {"“": '"', "”": '"', "＂": '"', "‘": "'", "’": "'", "「": '"', "」": '"', "『": '"', "』": '"'}
)
# A value that opens with an ASCII quote: `key: "…`, `- '…`.
_OPEN_QUOTE = re.compile(r"^[ ]*(?:-[ ]+)?(?:[^\s:#'\"][^:#'\"]*:[ ]+)?(['\"])")
MAX_TRIES = 20  # mended copies parsed at most per file: each is a full parse


@dataclass(frozen=True)
class Slip:
    """A slip found: 1-based line and column, its rule id and what to say (en, zh)."""

    line: int
    col: int
    rule: str
    message: str
    zh: str


def _indent(number: int, line: str) -> Slip | None:
    lead = _INDENT.match(line)
    if lead is None or not line[lead.end() :].strip():
        return None  # a blank line may hold any white space
    for col, char in enumerate(lead.group(), start=1):
        if char == "\t":
            return Slip(
                number,
                col,
                "yaml.tab_indent",
                "tab character used for indentation; use spaces",
                "缩进里用了 Tab 字符；请用空格缩进",
            )
        if char == "\u3000":
            return Slip(
                number,
                col,
                "yaml.fullwidth",
                "full-width space (U+3000) used for indentation; use ASCII spaces "
                "(switch the input method to English)",
                "缩进里用了全角空格（U+3000）；请切换到英文（半角）输入，用普通空格缩进",
            )
    return None


def _clip(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "…"


def _quoted_end(line: str, start: int) -> bool:
    """Whether the quote opened at `start` closes on the same line."""
    quote = line[start]
    at = start + 1
    while at < len(line):
        if line[at] == "\\" and quote == '"':
            at += 2
            continue
        if line[at] == quote:
            if quote == "'" and line[at + 1 : at + 2] == "'":  # '' is a quote inside '…'
                at += 2
                continue
            return True
        at += 1
    return False


def _candidates(lines: list[str]) -> Iterator[tuple[Slip, str]]:
    """Slips that may explain the error, each with the mended line to try."""
    for number, line in enumerate(lines, start=1):
        colon = _KEY_COLON.match(line)
        if colon is not None:
            at = colon.start(1)
            key = _clip(line[:at].strip().removeprefix("-").strip())
            yield (
                Slip(
                    number,
                    at + 1,
                    "yaml.fullwidth",
                    f"full-width colon ： (U+FF1A) after {key!r}; type an "
                    "ASCII ':' and a space (switch the input method to English)",
                    f"“{key}”后面是全角冒号“：”（U+FF1A）；请切换到英文（半角）"
                    "输入，改成英文冒号“:”并在后面加一个空格",
                ),
                f"{line[:at]}: {line[at + 1 :]}",
            )
        quote = _FULL_QUOTE.match(line)
        if quote is not None:
            yield (
                Slip(
                    number,
                    quote.start(1) + 1,
                    "yaml.fullwidth",
                    f"full-width quote {quote.group(1)} (U+{ord(quote.group(1)):04X}); type "
                    "ASCII quotes \" or ' (switch the input method to English), or none",
                    f'用了全角引号“{quote.group(1)}”；请切换到英文（半角）输入，用英文引号 " '
                    "或 '，或者干脆不加引号",
                ),
                line.translate(_FULL_QUOTES),
            )
        opened = _OPEN_QUOTE.match(line)
        if opened is not None and not _quoted_end(line, opened.start(1)):
            mark = opened.group(1)
            yield (
                Slip(
                    number,
                    opened.start(1) + 1,
                    "yaml.unclosed_quote",
                    f"the quote {mark} opened here is not closed on this line; close it "
                    f"with {mark} at the end of the value",
                    f"这里开头的引号 {mark} 在本行没有闭合；请在值的末尾补上 {mark}",
                ),
                line.rstrip() + mark,
            )


def first_slip(text: str, error_line: int, parses: Callable[[str], int | None]) -> Slip | None:
    """The first slip at or before `error_line` that explains the parser's error, if any.

    `parses(text)` parses a mended copy and returns the line of its error (None: it parses).
    """
    lines = text.split("\n")
    for number, line in enumerate(lines[:error_line], start=1):
        slip = _indent(number, line)
        if slip is not None:
            return slip
    for slip, mended in islice(_candidates(lines[:error_line]), MAX_TRIES):
        copy = [*lines]
        copy[slip.line - 1] = mended
        after = parses("\n".join(copy))
        if after is None or after > error_line:  # mending it gets the parser past its error
            return slip
    return None
