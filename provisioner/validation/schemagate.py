"""A fast yes/no answer to "does this data satisfy the JSON Schema?", for the schema pass.

`provisioner.validation.schema.check` asks the kind's gate first: a file that passes needs
no JSON-Schema error at all, so `jsonschema` (its import, and its generic validator that builds
a path for every value it visits) runs only for files that do not, and says what is wrong
exactly as before. Every message therefore still comes from the one place it always came from.

The gate is a tree of closures compiled once per schema, for the keywords ssp's generated
schemas use, with `jsonschema`'s Draft 2020-12 semantics (and ssp's own: 2.0 is no integer).
It may only err on the safe side: any keyword it does not know, or a `const`/`enum` it
cannot compare simply, makes it answer "no", and the full validator decides. So a file it
lets through is one `jsonschema` would pass too (tests/test_schema_gate.py compares the two
on the sample checkout's files and thousands of mutations of them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

Check = Callable[[Any], bool]

# Words that describe and do not constrain (2020-12's annotations ssp's schemas carry).
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$defs", "$comment"}
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)  # jsonschema's own, with fromisoformat


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    # ssp's integer: no bool, and no float (jsonschema would count 2.0): see schema._is_integer.
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": _is_number,
}


# Length keywords: the JSON type each constrains, and whether it is a lower bound.
_SIZED: dict[str, tuple[type, bool]] = {
    "minLength": (str, True),
    "maxLength": (str, False),
    "minItems": (list, True),
    "maxItems": (list, False),
    "minProperties": (dict, True),
    "maxProperties": (dict, False),
}


def _is_date(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _simple(value: Any) -> bool:
    """A constant the gate compares by itself: text, or a number that is not a bool."""
    return isinstance(value, str) or _is_number(value)


def _same(value: Any, constant: Any) -> bool:
    """jsonschema's equality for a simple constant: True is not 1, text is text."""
    if isinstance(value, bool | list | dict):
        return False
    return bool(value == constant)


def _when(kind: type | tuple[type, ...], test: Check) -> Check:
    """A keyword that constrains one JSON type only: any other value passes it."""
    return lambda v: not isinstance(v, kind) or test(v)


def _within(low: int, high: int | None) -> Callable[[int], bool]:
    return lambda n: n >= low and (high is None or n <= high)


def _all(checks: list[Check]) -> Check:
    # Loops, not all(genexpr): a check of 1,000 files calls these some 100,000 times.
    frozen = tuple(checks)
    if len(frozen) == 1:
        return frozen[0]

    def check(v: Any) -> bool:
        for f in frozen:  # noqa: SIM110  (faster than all() over a generator)
            if not f(v):
                return False
        return True

    return check


def _any(checks: list[Check]) -> Check:
    frozen = tuple(checks)
    if len(frozen) == 1:
        return frozen[0]

    def check(v: Any) -> bool:
        for f in frozen:  # noqa: SIM110  (faster than any() over a generator)
            if f(v):
                return True
        return False

    return check


def _properties(props: dict[str, Check]) -> Check:
    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for key, value in v.items():
            f = props.get(key) if isinstance(key, str) else None
            if f is not None and not f(value):
                return False
        return True

    return check


def _never(_value: Any) -> bool:
    return False


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def ref(self, target: str) -> Check:
        if target not in self.refs:
            node: Any = self.root if target.startswith("#/") else None
            for part in target[2:].split("/"):
                node = node.get(part) if isinstance(node, Mapping) else None
            if not isinstance(node, Mapping):
                return _never
            # Placeholder first: a schema that refers to itself would otherwise recurse here.
            slot: list[Check] = []
            self.refs[target] = lambda v: slot[0](v)  # noqa: PLW0108  (slot is filled below)
            slot.append(self.compile(node))
        return self.refs[target]

    def compile(self, schema: Any) -> Check:
        if schema is True:
            return lambda _v: True
        if not isinstance(schema, Mapping):
            return _never
        checks: list[Check] = []
        for key, arg in schema.items():
            if key in _ANNOTATIONS or key in ("additionalProperties", "patternProperties"):
                continue
            check = self.keyword(key, arg)
            if check is None:  # a keyword or value the gate does not know: jsonschema decides
                return _never
            checks.append(check)
        extra = self._additional(schema)
        if extra is not None:
            checks.append(extra)
        return _all(checks)

    def keyword(self, key: str, arg: Any) -> Check | None:  # noqa: PLR0912  (one per keyword)
        if key in _SIZED:
            kind, is_min = _SIZED[key]
            ok = _within(arg, None) if is_min else _within(0, arg)
            return _when(kind, lambda v: ok(len(v)))
        if key == "type":
            names = arg if isinstance(arg, list) else [arg]
            if not all(n in _TYPES for n in names):
                return None
            return _any([_TYPES[n] for n in names])
        if key == "properties":
            return _properties({name: self.compile(sub) for name, sub in arg.items()})
        if key == "required":
            fields = tuple(arg)
            return _when(dict, lambda v: all(k in v for k in fields))
        if key == "pattern":
            rx = re.compile(arg)
            return _when(str, lambda v: rx.search(v) is not None)
        if key in ("minimum", "maximum"):
            bound = arg
            if key == "minimum":
                return lambda v: not _is_number(v) or not v < bound
            return lambda v: not _is_number(v) or not v > bound
        if key in ("items", "propertyNames"):
            sub = self.compile(arg)
            if key == "items":
                return _when(list, lambda v: all(sub(i) for i in v))
            return _when(dict, lambda v: all(sub(k) for k in v))
        if key == "anyOf":
            return _any([self.compile(sub) for sub in arg])
        if key in ("const", "enum"):
            options = [arg] if key == "const" else list(arg)
            if not all(_simple(o) for o in options):
                return None
            return lambda v: any(_same(v, c) for c in options)
        if key == "format":
            return _is_date if arg == "date" else None
        if key == "$ref":
            return self.ref(str(arg))
        return None

    def _additional(self, schema: Mapping[str, Any]) -> Check | None:
        """patternProperties and additionalProperties together: every key not named in
        `properties` goes through each pattern it matches (re.search), and the keys that no
        pattern matched through `additionalProperties`."""
        patterns = [
            (re.compile(p), self.compile(sub))
            for p, sub in (schema.get("patternProperties") or {}).items()
        ]
        if "additionalProperties" not in schema and not patterns:
            return None
        named = frozenset(schema.get("properties") or ())
        rest = self.compile(schema.get("additionalProperties", True))

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key, value in v.items():
                if patterns and not isinstance(key, str):
                    return False  # jsonschema's re.search would fail on it: let it say so
                matched = False
                for rx, sub in patterns:
                    if isinstance(key, str) and rx.search(key):
                        matched = True
                        if not sub(value):
                            return False
                if not matched and key not in named and not rest(value):
                    return False
            return True

        return check


def compile_schema(schema: Mapping[str, Any]) -> Check:
    """The gate for one JSON Schema: True only where the schema surely holds."""
    return _Compiler(schema).compile(schema)
