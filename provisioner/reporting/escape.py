"""Escaping for every output channel, in one place: what ssp prints never acts as markup.

File names, YAML keys and values come from pull requests; printed raw they could act as
something other than text:
- a terminal or CI log line: a line break splits a finding in two, bidi controls reorder what
  is shown, and under GitHub Actions a line starting (after blanks) with `::` or `##[` is a
  workflow command (`::add-mask::`, `::stop-commands::`, `::error …::`);
- a workflow command's data and properties (annotations): `%`, CR, LF, and in properties `:`
  and `,`, as the Actions toolkit escapes them;
- Markdown (job summaries, PR comments, notices): a backtick ends a code span, `|` ends a
  table cell, `<`, `[`, `@` make HTML, links and mentions, and GitHub turns a bare
  `https://…`, `http://…`, `ftp://…` or `www.…` into a link by itself (its autolink
  extension), with no punctuation to escape; a zero-width joiner breaks each of those.
Each channel has one function here; every other module calls these and escapes nothing itself.
Pure: str in, str out.
"""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 controls, DEL, line/paragraph separators and the bidi controls (Trojan Source).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# What the Actions runner takes as a command at the start of a line, after blanks.
_COMMAND_START = re.compile(r"^(\s*)(::|##\[)")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!|~>])")
# Where GitHub's autolinks start: any `://` (`https://`, `http://`, `ftp://`) and any `www.`
# (also after `_` or `*`, which GitHub allows before it), in any case, as GitHub matches them.
# E-mail and `mailto:` autolinks need an `@`, which `md` breaks already.
_AUTOLINK = re.compile(r"(?i)(:)(?=//)|(www)(?=\.)")
_ZWJ = "\u200d"


def one_line(value: Any) -> str:
    """Text on one line, control and bidi characters shown as escapes (`\\n`, `\\u202e`)."""
    return _CONTROLS.sub(lambda m: ascii(m.group())[1:-1], str(value))


def log_line(value: Any) -> str:
    """A line for a terminal or a CI log: one line, and never a workflow command (a leading
    `::` or `##[` has its first character escaped as `\\x3a` or `\\x23`)."""
    text = one_line(value)

    def defuse(m: re.Match[str]) -> str:
        blanks, start = m.group(1), m.group(2)
        return f"{blanks}\\x{ord(start[0]):02x}{start[1:]}"

    return _COMMAND_START.sub(defuse, text)


def command_data(value: Any) -> str:
    """The message of a workflow command (`::error …::MESSAGE`)."""
    return str(value).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def command_property(value: Any) -> str:
    """A property value of a workflow command (`file=…`, `title=…`)."""
    return command_data(value).replace(":", "%3A").replace(",", "%2C")


def md(value: Any) -> str:
    """Text for GitHub Markdown (inline, table cells too): punctuation, HTML, @-mentions,
    `|` and line breaks escaped, and bare URLs (`https://…`, `www.…`) kept from autolinking."""
    text = one_line(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _AUTOLINK.sub(lambda m: (m.group(1) or m.group(2)) + _ZWJ, text)
    return text.replace("@", "@\u200b")


def code(value: Any) -> str:
    """Inline code, safe in a table cell: the fence is longer than any run of backticks in
    the value (so none ends it early), `|` is escaped, line breaks are shown as escapes."""
    text = one_line(value).replace("|", "\\|")
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    if longest:
        text = f" {text} "  # a value starting or ending with a backtick needs the space
    return f"{fence}{text}{fence}"
