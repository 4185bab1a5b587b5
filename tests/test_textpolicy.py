"""The one rule on what text may hold, and the loader applying it whatever the quoting.

A value typed raw, quoted, or spelled with YAML escapes must come out of the loader either
exactly as written or refused: never a refused character smuggled through an escape.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.validation.sources import load
from provisioner.validation.textpolicy import allowed, describe, first_forbidden

NONCHARACTERS = [
    *range(0xFDD0, 0xFDF0),
    *(p * 0x10000 + o for p in range(17) for o in (0xFFFE, 0xFFFF)),
]


def test_the_classes_refused() -> None:
    for char in "\x00\x07\t\n\r\x1b\x7f\x85\x9b":
        assert not allowed(char), ascii(char)  # controls, tab and line breaks among them
    for char in "\u061c\u200b\u200e\u202a\u202e\u2066\u2069\u00ad\ufeff\U000e0041":
        assert not allowed(char), ascii(char)  # invisible formatting (bidi, zero-width, tags)
    for char in "\u2028\u2029\ud800\udfff":
        assert not allowed(char), ascii(char)  # separators, lone surrogates
    assert len(NONCHARACTERS) == 66
    assert not any(allowed(chr(c)) for c in NONCHARACTERS)


@pytest.mark.parametrize(
    "text", ["alice-box", "训练扩散模型", "Ελληνικά", "🚀 ©", "a\u00a0b", "\ue000"]
)
def test_visible_text_is_allowed(text: str) -> None:
    assert first_forbidden(text) is None


def test_a_file_may_hold_tabs_and_line_ends_between_its_values() -> None:
    assert first_forbidden("a:\t1\r\nb: 2\n", layout=True) is None
    assert first_forbidden("a: 1\rb: 2\n", layout=True) == 4  # a lone CR is no line end
    assert first_forbidden("a: 1\r", layout=True) == 4
    assert first_forbidden("a:\t1", layout=False) == 2  # a value is one line


def test_refused_characters_are_named_by_code_point() -> None:
    assert describe("\x1b") == "control character U+001B (escape)"
    assert describe("\t") == "control character U+0009 (tab)"
    assert describe("\n") == "line break U+000A (line feed)"
    assert describe("\u2028") == "line break U+2028 (line separator)"
    assert describe("\u202e") == "invisible formatting character U+202E (right-to-left override)"
    assert describe("\ufdd0") == "noncharacter U+FDD0"
    assert describe("\U0010ffff") == "noncharacter U+10FFFF"


def _loaded(text: str) -> tuple[object, str | None]:
    doc, problems = load(text.encode("utf-8", "surrogatepass"), "f.yaml")
    if doc is None:
        return None, problems[0].rule
    assert isinstance(doc.data, dict)
    return doc.data.get("v"), None


def _escaped(value: str) -> str:
    """`value` as a double-quoted YAML scalar with every non-ASCII or control character
    spelled as an escape (`\\U0000001b`): only the decoded text can be judged."""
    return (
        '"'
        + "".join(c if " " <= c <= "~" and c not in '"\\' else f"\\U{ord(c):08x}" for c in value)
        + '"'
    )


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
def test_a_value_comes_back_exactly_or_is_refused_whatever_the_quoting(value: str) -> None:
    """Typed in double quotes (what `ssp new` writes), spelled with escapes, or typed in single
    quotes: the loader gives the value back exactly when the rule allows it, else refuses it."""
    fine = first_forbidden(value) is None
    spellings = [json.dumps(value, ensure_ascii=False), _escaped(value)]
    if "\n" not in value and "\r" not in value:  # raw line ends are layout: they would fold
        spellings.append("'" + value.replace("'", "''") + "'")
    for spelled in spellings:
        got, rule = _loaded(f"v: {spelled}\n")
        if fine:
            assert (got, rule) == (value, None), spelled
        else:
            # refused by the rule, or by the parser itself for a lone surrogate's escape
            assert rule in ("yaml.control_char", "yaml.encoding", "yaml.syntax"), spelled
            assert rule != "yaml.syntax" or any("\ud800" <= c <= "\udfff" for c in value)


@settings(max_examples=300, deadline=None)
@given(st.characters(codec=None))
def test_every_character_gets_one_verdict_as_a_key_and_as_a_value(char: str) -> None:
    for text in (f"v: {_escaped(char)}\n", f"{_escaped(char)}: 1\n"):
        _, rule = _loaded(text)
        assert (rule is None) == allowed(char), (ascii(char), rule)
