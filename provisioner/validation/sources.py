"""Safe YAML loading with positions: untrusted bytes in, plain data + a position map out.

Request files are written by lab members and read by a process that can reach the LXD
socket, so the loader accepts only a small, boring subset of YAML (SECURITY.md "Input
handling"): a size cap before parsing, UTF-8 without BOM, one document, no anchors/aliases/
merge keys, no tags, no duplicate keys, bounded depth, bounded scalars, and YAML 1.2
core-schema scalars (`no` stays a string, `0755` is the decimal 755, dates stay strings for
the schema to check). It works on the parser's event stream, so nothing is ever constructed
from a tag.

What text may hold is decided by `textpolicy`, twice: on the file as written (so a raw ESC is
found on its exact column) and on every scalar and key as decoded (so `"\\e[31m"` or
`"\\u202e"`, which are those characters once YAML has read the escape, are refused too,
whatever the quoting). A plain scalar that looks like a number is bounded in length before
it is converted: Python's int() refuses long decimals and would build huge hex ones.

Every value and every mapping key gets its 1-based (line, column), so that later stages can
point at the exact place a problem is about.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import yaml

from provisioner.validation.sshkeys import private_refusal
from provisioner.validation.textpolicy import describe, first_forbidden
from provisioner.validation.yamlslips import first_slip
from provisioner.values.document import Document, Where
from provisioner.values.problems import Position, Problem
from provisioner.values.tree import MAX_BYTES

MAX_DEPTH = 8
MAX_SCALAR = 16 * 1024
# Characters in a number literal: far more than any field needs (the largest is a port),
# far fewer than int() refuses (4300 digits) or than would be slow to convert.
MAX_NUMBER = 100


try:  # libyaml's parser is several times faster; the events are the same
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), plain scalars only.
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_TRUE = re.compile(r"^(?:true|True|TRUE)$")
_FALSE = re.compile(r"^(?:false|False|FALSE)$")
_INT10 = re.compile(r"^[-+]?[0-9]+$")
_INT8 = re.compile(r"^0o[0-7]+$")
_INT16 = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")
_NUMBERS = (_INT10, _INT8, _INT16, _FLOAT, _INF, _NAN)
# Every pattern above matches only text that starts with one of these (or is empty): any
# other plain scalar (a name, a size, a key) is text, with no pattern to try.
_SPECIAL_START = frozenset("0123456789+-.~nNtTfF")


class RefusalError(Exception):
    """One refusal while walking the events; becomes a Problem at the event's position."""

    def __init__(self, rule: str, message: str, mark: Any) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.position = _pos(mark)


def _pos(mark: Any) -> Position:
    if mark is None:
        return _at(1, 1)
    return _at(int(mark.line) + 1, int(mark.column) + 1)


@lru_cache(maxsize=16384)
def _at(line: int, col: int) -> Position:
    # Positions are immutable and files alike repeat them: one made per place, not per value.
    return Position(line, col)


class NumberTooLongError(ValueError):
    """A plain scalar reads as a number but is longer than MAX_NUMBER characters."""


def resolve_plain(text: str) -> Any:
    """The value of a plain (unquoted) scalar under the YAML 1.2 core schema.

    Raises NumberTooLongError for a number literal longer than MAX_NUMBER characters.
    """
    if text and text[0] not in _SPECIAL_START:
        return text
    if len(text) > MAX_NUMBER and any(p.match(text) for p in _NUMBERS):
        raise NumberTooLongError(text)
    if _NULL.match(text):
        return None
    if _TRUE.match(text):
        return True
    if _FALSE.match(text):
        return False
    if _INT10.match(text):
        return int(text, 10)
    if _INT8.match(text):
        return int(text[2:], 8)
    if _INT16.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text) or _INF.match(text) or _NAN.match(text):
        return float(text.lower().replace(".", "", 1) if not _FLOAT.match(text) else text)
    return text


def field_name(where: Where) -> str:
    """`where` as a member reads it: `ssh_keys[0]`, `hosts.main.gpus[1].pci`."""
    parts: list[str] = []
    for part in where:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + part)
    return "".join(parts) or "(top level)"


# What to say, by the scalar's style, about a character refused once decoded.
_HINTS = {
    '"': ", not even as an escape",
    "|": " (write it without |)",
    ">": " (write it without >)",
}


def _check_text(event: Any, where: Where, what: str) -> None:
    """Refuse a scalar (a value at `where`, or a key of the mapping at `where`) that is too
    long, or that holds a character `textpolicy` refuses once its escapes are decoded."""
    if len(event.value) <= MAX_SCALAR and first_forbidden(event.value) is None:
        return  # the usual case: no name to build (a check of 1,000 files builds 16,000)
    if what == "key":
        name = f"a key in {field_name(where)}" if where else "a top-level key"
    else:
        name = field_name(where)
    if len(event.value) > MAX_SCALAR:
        raise RefusalError(
            "yaml.size", f"{name}: a {what} longer than {MAX_SCALAR} characters", event.start_mark
        )
    bad = first_forbidden(event.value)
    if bad is not None and (secret := private_refusal(event.value)) is not None:
        raise RefusalError(secret.rule, f"{name}: {secret.message}", event.start_mark)
    if bad is not None:
        # Never repeat the text: it may be key material, and it holds the character refused.
        raise RefusalError(
            "yaml.control_char",
            f"{name}: {describe(event.value[bad])} is not allowed"
            f"{_HINTS.get(event.style or '', '')}; a {what} is one line of visible text",
            event.start_mark,
        )


class _Builder:
    """Builds plain data from parser events, refusing what the input rules forbid."""

    def __init__(self, next_event: Callable[[], Any]) -> None:
        # The parser's own `get_event`, called directly: `yaml.parse`'s generator around it
        # costs a frame per event, some 40,000 for a check of 1,000 files.
        self._next = next_event
        self.values: dict[Where, Position] = {}
        self.keys: dict[Where, Position] = {}

    def document(self) -> Any:
        event = self._next()
        if not isinstance(event, yaml.StreamStartEvent):  # pragma: no cover - parser contract
            raise RefusalError("yaml.syntax", "not a YAML stream", event.start_mark)
        event = self._next()
        if isinstance(event, yaml.StreamEndEvent):
            raise RefusalError("yaml.empty", "the file is empty", event.start_mark)
        if not isinstance(event, yaml.DocumentStartEvent):  # pragma: no cover
            raise RefusalError("yaml.syntax", "expected a document", event.start_mark)
        if getattr(event, "tags", None):
            raise RefusalError("yaml.tag", "%TAG directives are not allowed", event.start_mark)
        data = self._node(self._next(), (), 1)
        end = self._next()
        if not isinstance(end, yaml.DocumentEndEvent):  # pragma: no cover
            raise RefusalError("yaml.syntax", "expected the end of the document", end.start_mark)
        event = self._next()
        if not isinstance(event, yaml.StreamEndEvent):
            raise RefusalError(
                "yaml.multiple_documents",
                "only one YAML document per file (remove the second '---')",
                event.start_mark,
            )
        return data

    def _check_props(self, event: Any) -> None:
        if getattr(event, "anchor", None) is not None:
            raise RefusalError(
                "yaml.anchor",
                f"anchors (&{event.anchor}) are not allowed; write values out",
                event.start_mark,
            )
        if getattr(event, "tag", None) is not None:
            raise RefusalError("yaml.tag", f"tags ({event.tag}) are not allowed", event.start_mark)

    def _node(self, event: Any, where: Where, depth: int) -> Any:
        if isinstance(event, yaml.AliasEvent):
            raise RefusalError(
                "yaml.alias",
                f"aliases (*{event.anchor}) are not allowed; write values out",
                event.start_mark,
            )
        self._check_props(event)
        if depth > MAX_DEPTH:
            raise RefusalError(
                "yaml.depth", f"nested deeper than {MAX_DEPTH} levels", event.start_mark
            )
        self.values[where] = _pos(event.start_mark)
        if isinstance(event, yaml.ScalarEvent):
            _check_text(event, where, "value")
            if event.style:
                return event.value
            try:
                return resolve_plain(event.value)
            except NumberTooLongError as e:
                raise RefusalError(
                    "yaml.size",
                    f"{field_name(where)}: a number {len(event.value)} characters long; "
                    f"the limit is {MAX_NUMBER}",
                    event.start_mark,
                ) from e
        if isinstance(event, yaml.SequenceStartEvent):
            items: list[Any] = []
            event = self._next()
            while not isinstance(event, yaml.SequenceEndEvent):
                items.append(self._node(event, (*where, len(items)), depth + 1))
                event = self._next()
            return items
        if isinstance(event, yaml.MappingStartEvent):
            return self._mapping(where, depth)
        raise RefusalError(  # pragma: no cover - parser contract
            "yaml.syntax", "unexpected YAML event", event.start_mark
        )

    def _mapping(self, where: Where, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        event = self._next()
        while not isinstance(event, yaml.MappingEndEvent):
            if isinstance(event, yaml.AliasEvent):
                self._node(event, where, depth)  # raises yaml.alias
            if not isinstance(event, yaml.ScalarEvent):
                raise RefusalError("yaml.key", "mapping keys must be plain words", event.start_mark)
            self._check_props(event)
            _check_text(event, where, "key")
            key = event.value
            if key == "<<" and not event.style:
                raise RefusalError(
                    "yaml.merge", "merge keys (<<) are not allowed", event.start_mark
                )
            if key in result:
                first = self.keys[(*where, key)]
                raise RefusalError(
                    "yaml.duplicate_key",
                    f"duplicate key '{key if len(key) <= 60 else key[:57] + '…'}' "
                    f"(first written on line {first.line})",
                    event.start_mark,
                )
            self.keys[(*where, key)] = _pos(event.start_mark)
            result[key] = self._node(self._next(), (*where, key), depth + 1)
            event = self._next()
        return result


def _decode(raw: bytes, path: str) -> tuple[str | None, list[Problem]]:
    if len(raw) > MAX_BYTES:
        return None, [
            Problem(
                path,
                Position(1, 1),
                "yaml.size",
                f"file is {len(raw)} bytes; the limit is {MAX_BYTES}",
            )
        ]
    if raw.startswith(b"\xef\xbb\xbf"):
        return None, [
            Problem(
                path,
                Position(1, 1),
                "yaml.encoding",
                "file starts with a byte-order mark; save it as UTF-8 without BOM",
            )
        ]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        return None, [
            Problem(path, Position(line, col), "yaml.encoding", "file is not valid UTF-8")
        ]
    bad = first_forbidden(text, layout=True)
    if bad is not None:
        line = text.count("\n", 0, bad) + 1
        col = bad - (text.rfind("\n", 0, bad) + 1) + 1
        return None, [
            Problem(
                path,
                Position(line, col),
                "yaml.control_char",
                f"{describe(text[bad])} is not allowed",
            )
        ]
    return text, []


def load(raw: bytes, path: str) -> tuple[Document | None, list[Problem]]:
    """Parse `raw` (the file's bytes) as the safe YAML subset. Never raises for bad input."""
    text, problems = _decode(raw, path)
    if text is None:
        return None, problems
    try:
        parser = _Loader(text)  # the pure-Python reader checks the text here already
        builder = _Builder(parser.get_event)
        data = builder.document()
    except RefusalError as e:
        return None, [Problem(path, _inside(text, e.position), e.rule, e.message)]
    except yaml.MarkedYAMLError as e:
        at = _pos(e.problem_mark or e.context_mark)
        slip = first_slip(text, at.line, _error_line)
        if slip is not None:  # a keyboard slip explains it: named where it was typed
            where = Position(slip.line, slip.col)
            return None, [Problem(path, where, slip.rule, slip.message, zh=slip.zh)]
        what = e.problem or e.context or "not valid YAML"
        return None, [Problem(path, _inside(text, at), "yaml.syntax", f"YAML syntax: {what}")]
    except yaml.YAMLError as e:  # reader errors (e.g. unprintable characters) carry no mark
        what = str(e).splitlines()[0] if str(e) else "not valid YAML"
        return None, [Problem(path, Position(1, 1), "yaml.syntax", f"YAML syntax: {what}")]
    # A value the parser places past the last line (the empty document of a file holding
    # only `---`) is reported where the file ends, like the parser's own errors.
    last = len(text.splitlines()) or 1
    values = {w: at if at.line <= last else _inside(text, at) for w, at in builder.values.items()}
    keys = {w: at if at.line <= last else _inside(text, at) for w, at in builder.keys.items()}
    return Document(path, data, values, keys), []


def _error_line(text: str) -> int | None:
    """The 1-based line of the parser's first error in `text`; None when it parses."""
    try:
        for _ in yaml.parse(text, Loader=_Loader):
            pass
    except yaml.MarkedYAMLError as e:
        return _pos(e.problem_mark or e.context_mark).line
    except yaml.YAMLError:
        return 1
    return None


def _inside(text: str, position: Position) -> Position:
    """The parser reports the end of the stream on a line after the file's last one, where an
    editor or a GitHub annotation cannot point: say the end of the last line instead."""
    lines = text.splitlines() or [""]
    if position.line <= len(lines):
        return position
    return Position(len(lines), len(lines[-1]) + 1)
