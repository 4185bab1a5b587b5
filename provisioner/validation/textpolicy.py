"""What text read from a request or config file may hold: the one rule every string obeys.

A request's text reaches places that interpret characters: the container's LXD description
(and so `lxc list` on an admin's terminal), the PR comment, the job summary, log lines. So
every value and every mapping key, *after* YAML has decoded its escapes (`"\\e"`, `"\\u202e"`,
`"\\0"` are the characters themselves), is one line of visible text:

- no control characters (Unicode category Cc: NUL, ESC, DEL, the C1 range, and tab, line feed
  and carriage return too: a value is one line);
- no invisible format characters (Cf): bidirectional overrides and isolates that make text
  read differently from how it is stored, zero-width characters, the byte-order mark;
- no line or paragraph separators (Zl, Zp), no lone surrogates (Cs), no noncharacters
  (U+FDD0–U+FDEF and the last two code points of every plane, U+FFFE/U+FFFF, ...).

Letters, digits, punctuation, symbols, emoji and spaces of any script are fine. A whole file
is held to the same rule, except that it is made of lines: tabs, line feeds and CR LF pairs are
allowed between the values. The loader (`sources`), `ssp new` and the SSH key parser all ask
this module; nothing else decides what text may hold. Pure and stdlib-only.
"""

from __future__ import annotations

import re
import unicodedata

_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Candidates worth a category lookup: everything but printable ASCII. Tab, LF and CR are
# candidates too; a file's layout allows them (below), a value does not.
_CANDIDATE = re.compile(r"[^\x20-\x7e]")
_NAMES = {
    "\x00": "NUL",
    "\t": "tab",
    "\n": "line feed",
    "\r": "carriage return",
    "\x1b": "escape",
    "\x7f": "delete",
    "\x85": "next line",
    "\u00ad": "soft hyphen",
    "\u200b": "zero-width space",
    "\u2028": "line separator",
    "\u2029": "paragraph separator",
    "\ufeff": "byte-order mark",
}


def _noncharacter(code: int) -> bool:
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE


def allowed(char: str) -> bool:
    """Whether a value may hold `char` (one character)."""
    return unicodedata.category(char) not in _FORBIDDEN_CATEGORIES and not _noncharacter(ord(char))


def first_forbidden(text: str, *, layout: bool = False) -> int | None:
    """The index of the first character `text` may not hold, or None when it is all allowed.

    With `layout`, `text` is a whole file: tabs, line feeds and carriage returns that end a
    line (CR LF) are allowed between its values.
    """
    if text.isascii() and text.isprintable():
        return None  # printable ASCII is letters, digits, punctuation and space: all allowed
    for match in _CANDIDATE.finditer(text):
        char, at = match.group(), match.start()
        if layout and (char in "\t\n" or (char == "\r" and text.startswith("\n", at + 1))):
            continue
        if not allowed(char):
            return at
    return None


def describe(char: str) -> str:
    """How a refused character is named in a finding: `control character U+001B (escape)`."""
    code = ord(char)
    category = unicodedata.category(char)
    if char in "\n\r\x85\u2028\u2029":
        kind = "line break"
    elif category == "Cc":
        kind = "control character"
    elif category == "Cf":
        kind = "invisible formatting character"
    elif category == "Cs":
        kind = "lone surrogate"
    else:
        kind = "noncharacter"
    name = _NAMES.get(char) or unicodedata.name(char, "").lower()
    return f"{kind} U+{code:04X}" + (f" ({name})" if name else "")
