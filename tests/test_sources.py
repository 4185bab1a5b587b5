"""The safe YAML loader: YAML 1.2 scalars, refusals with positions, and the position map."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import sample_repo, validate

from provisioner.validation.sources import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NUMBER,
    MAX_SCALAR,
    NumberTooLongError,
    load,
    resolve_plain,
)
from provisioner.values.problems import Position


def ok(text: str | bytes) -> object:
    doc, problems = load(text.encode() if isinstance(text, str) else text, "f.yaml")
    assert doc is not None, problems
    assert problems == []
    return doc.data


def refused(text: str | bytes) -> tuple[str, int, int]:
    doc, problems = load(text.encode() if isinstance(text, str) else text, "f.yaml")
    assert doc is None
    assert len(problems) == 1
    (p,) = problems
    assert p.path == "f.yaml"
    return p.rule, p.line, p.col


# --- YAML 1.2 core schema ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plain", "value"),
    [
        ("no", "no"),  # YAML 1.1 said false
        ("yes", "yes"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("NO", "NO"),
        ("true", True),
        ("True", True),
        ("FALSE", False),
        ("tRUE", "tRUE"),
        ("~", None),
        ("null", None),
        ("", None),
        ("0755", 755),  # YAML 1.1 said octal 493
        ("0o17", 15),
        ("0x1F", 31),
        ("+12", 12),
        ("-0", 0),
        ("1_000", "1_000"),  # YAML 1.1 said 1000
        ("0b101", "0b101"),
        ("1e3", 1000.0),
        ("-2.5", -2.5),
        (".5", 0.5),
        ("12:30", "12:30"),  # YAML 1.1 said 750 (base 60)
        ("2027-06-30", "2027-06-30"),  # dates stay text for the schema to check
        ("32GiB", "32GiB"),
    ],
)
def test_plain_scalars_resolve_as_yaml_1_2(plain: str, value: object) -> None:
    got = resolve_plain(plain)
    assert got == value and type(got) is type(value)
    # and the loader gives the same, in a mapping
    assert ok(f"v: {plain}\n") == {"v": value}


def test_infinities_and_nan_are_floats() -> None:
    assert resolve_plain(".inf") == float("inf")
    assert resolve_plain("-.Inf") == float("-inf")
    nan = resolve_plain(".NaN")
    assert isinstance(nan, float) and math.isnan(nan)


@pytest.mark.parametrize("quoted", ["'no'", '"yes"', "'1'", '"true"', "'~'", '""'])
def test_quoted_scalars_are_always_text(quoted: str) -> None:
    assert ok(f"v: {quoted}\n") == {"v": quoted[1:-1]}


def test_a_yaml_1_1_directive_does_not_bring_back_1_1_booleans() -> None:
    assert ok("%YAML 1.1\n---\nv: no\nw: 010\n") == {"v": "no", "w": 10}


def test_block_scalars_of_one_line_keep_their_text() -> None:
    assert ok("a: |-\n  one\nb: >-\n  three\n  four\n") == {"a": "one", "b": "three four"}


@pytest.mark.parametrize(
    ("text", "col"),
    [
        ("a: |\n  one\n  two\n", 4),
        ("a: >\n  three\n  four\n", 4),  # folded, but `>` keeps the final line break
        ("a: x\n\n  y\n", 4),  # a blank line inside a plain scalar is a line break
        ("a: 'x\n\n  y'\n", 4),
    ],
)
def test_a_value_of_several_lines_is_refused(text: str, col: int) -> None:
    """A value is one line: it becomes a description in `lxc list`, a table cell, a log line."""
    assert refused(text) == ("yaml.control_char", 1, col)


def test_an_explicit_document_start_and_end_are_fine() -> None:
    assert ok("---\na: 1\n...\n") == {"a": 1}


def test_a_quoted_merge_key_is_just_a_key() -> None:
    assert ok('"<<": 1\n') == {"<<": 1}


# --- positions ---------------------------------------------------------------------------------


TEXT = """\
# comment
name: box
gpus: [2, 3]
ssh_keys:
  - first
  -   second
nested:
  deep: {x: 1}
"""


def test_every_value_and_key_has_its_line_and_column() -> None:
    doc, _ = load(TEXT.encode(), "f.yaml")
    assert doc is not None
    assert doc.position(("name",)) == Position(2, 7)
    assert doc.key_position(("name",)) == Position(2, 1)
    assert doc.position(("gpus", 1)) == Position(3, 11)
    assert doc.position(("ssh_keys", 0)) == Position(5, 5)
    assert doc.position(("ssh_keys", 1)) == Position(6, 7)
    assert doc.position(("nested", "deep", "x")) == Position(8, 13)
    assert doc.key_position(("nested", "deep")) == Position(8, 3)
    assert doc.position(()) == Position(2, 1)


def test_a_missing_part_points_at_its_closest_written_parent() -> None:
    doc, _ = load(TEXT.encode(), "f.yaml")
    assert doc is not None
    assert doc.position(("gpus", 7)) == Position(3, 7)
    assert doc.position(("nested", "deep", "y", 0)) == Position(8, 9)
    assert doc.position(("nowhere",)) == Position(2, 1)
    assert doc.key_position(("nowhere",)) == Position(2, 1)


def test_windows_line_ends_give_the_same_positions() -> None:
    doc, _ = load(TEXT.replace("\n", "\r\n").encode(), "f.yaml")
    assert doc is not None
    assert doc.position(("gpus", 1)) == Position(3, 11)
    assert doc.position(("nested", "deep", "x")) == Position(8, 13)


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule", "line", "col"),
    [
        ("a: 1\nb: &x 2\n", "yaml.anchor", 2, 4),
        ("a: 1\nb: *x\n", "yaml.alias", 2, 4),
        ("a: [1, *x]\n", "yaml.alias", 1, 8),
        ("a: 1\n*x : 2\n", "yaml.alias", 2, 1),
        ("a: 1\n<<: {b: 2}\n", "yaml.merge", 2, 1),
        ("a: !!str 1\n", "yaml.tag", 1, 4),
        ("a: !custom 1\n", "yaml.tag", 1, 4),
        ("!!map\na: 1\n", "yaml.tag", 1, 1),
        ("%TAG !e! tag:example.com,2000:\n---\na: 1\n", "yaml.tag", 1, 1),
        ("a: 1\nb: 2\na: 3\n", "yaml.duplicate_key", 3, 1),
        ("a:\n  b: 1\n  b: 2\n", "yaml.duplicate_key", 3, 3),
        ("a: 1\n---\na: 2\n", "yaml.multiple_documents", 2, 1),
        ("[a]: 1\n", "yaml.key", 1, 1),
        ("{a: 1}: 2\n", "yaml.key", 1, 1),
        ("", "yaml.empty", 1, 1),
        ("# only a comment", "yaml.empty", 1, 17),
        ("a: [1, 2\n", "yaml.syntax", 1, 9),
        ("a: 'open\n", "yaml.unclosed_quote", 1, 4),  # where it opens, not where YAML gave up
        ("a: b: c\n", "yaml.syntax", 1, 5),
        ("a:\n\t- 1\n", "yaml.tab_indent", 2, 1),
        ("a: ok\nb: x\x07y\n", "yaml.control_char", 2, 5),
        ("a: \u202eevil\n", "yaml.control_char", 1, 4),
        ("a: x\u2029y\n", "yaml.control_char", 1, 5),
        ("a: x\u0085y\n", "yaml.control_char", 1, 5),
        ("a: x\ry\n", "yaml.control_char", 1, 5),
        ("a: x\ufeffy\n", "yaml.control_char", 1, 5),
        ("a: x\uffffy\n", "yaml.control_char", 1, 5),
        (b"\xef\xbb\xbfa: 1\n", "yaml.encoding", 1, 1),
        (b"a: 1\nb: \xc3\x28\n", "yaml.encoding", 2, 4),
        (b"a: 1\nb: \xff\n", "yaml.encoding", 2, 4),
        ("a: " + "9" * 5000 + "\n", "yaml.size", 1, 4),
    ],
)
def test_refusals_point_at_the_offending_place(
    text: str | bytes, rule: str, line: int, col: int
) -> None:
    assert refused(text) == (rule, line, col)


def _nested(levels: int) -> str:
    """A document whose deepest node is at `levels`: the top mapping is 1, its value 2, ..."""
    return "a: " + "[" * (levels - 2) + "1" + "]" * (levels - 2) + "\n"


def test_nesting_is_bounded() -> None:
    assert ok(_nested(MAX_DEPTH))
    # refused at the first node too deep: the `1` after the brackets
    assert refused(_nested(MAX_DEPTH + 1)) == ("yaml.depth", 1, 3 + MAX_DEPTH)


# --- text as decoded (issue 15) -----------------------------------------------------------------

# Characters refused when typed raw, and the YAML escapes that spell them inside "...".
ESCAPED = [
    ("\\0", "\x00"),
    ("\\a", "\x07"),
    ("\\e[31m", "\x1b"),
    ("\\x9b", "\x9b"),
    ("\\t", "\t"),
    ("\\n", "\n"),
    ("\\r", "\r"),
    ("\\N", "\x85"),
    ("\\L", "\u2028"),
    ("\\P", "\u2029"),
    ("\\u061c", "\u061c"),
    ("\\u200e", "\u200e"),
    ("\\u202e", "\u202e"),
    ("\\u2067", "\u2067"),
    ("\\u200b", "\u200b"),
    ("\\ufeff", "\ufeff"),
    ("\\uffff", "\uffff"),
    ("\\ufdd0", "\ufdd0"),
    ("\\U0010FFFE", "\U0010fffe"),
]


@pytest.mark.parametrize(("escape", "char"), ESCAPED)
def test_an_escaped_character_is_refused_like_a_typed_one(escape: str, char: str) -> None:
    # typed raw: refused too (a raw line feed is the file's layout: it folds into a space)
    if char != "\n":
        assert refused(f"a: ok\nb: 'x{char}y'\n")[0] == "yaml.control_char"
    # written as an escape: the decoded value is refused at the value, whatever it is under
    for text, line, col in (
        (f'a: ok\nb: "x{escape}y"\n', 2, 4),
        (f'a: ok\nb: [1, "x{escape}y"]\n', 2, 8),
        (f'a: ok\nb:\n  c: {{d: "x{escape}y"}}\n', 3, 10),
        (f'a: ok\n"b{escape}": 1\n', 2, 1),  # a key
        (f'a: ok\nb:\n  "{escape}": 1\n', 3, 3),  # a nested key
    ):
        doc, problems = load(text.encode(), "f.yaml")
        assert doc is None
        (p,) = problems
        assert (p.rule, p.line, p.col) == ("yaml.control_char", line, col), text
        assert f"U+{ord(char):04X}" in p.message
        assert char not in p.message


def test_the_refusal_names_the_field_and_the_character() -> None:
    _, problems = load(b'a:\n  b: [ok, "\\e[2J"]\n', "f.yaml")
    assert problems[0].message == (
        "a.b[1]: control character U+001B (escape) is not allowed, not even as an escape; "
        "a value is one line of visible text"
    )
    _, problems = load(b'a:\n  "x\\u202ey": 1\n', "f.yaml")
    assert problems[0].message.startswith(
        "a key in a: invisible formatting character U+202E (right-to-left override)"
    )
    _, problems = load(b"a: |\n  x\n", "f.yaml")
    assert "(write it without |)" in problems[0].message


def test_a_raw_tab_inside_a_value_is_refused_but_not_between_values() -> None:
    assert ok("a:\t1\nb: [1,\t2]  \t# note\n") == {"a": 1, "b": [1, 2]}
    assert refused("a: x\ty\n") == ("yaml.control_char", 1, 4)


@pytest.mark.parametrize(
    "text",
    [
        "Diffusion experiments for my thesis",
        "训练扩散模型，写毕业论文",
        "Ελληνικά, русский, العربية, עברית, हिन्दी",
        "emoji 🚀 and symbols ©®™ ≤ ≥ → ✓",
        "private use \ue000 and non-breaking\u00a0space",
    ],
)
def test_visible_text_of_any_script_is_kept(text: str) -> None:
    assert ok(f'a: "{text}"\n') == {"a": text}
    assert ok(f"{text}: 1\n") == {text: 1}


def test_a_pasted_private_key_is_named_for_what_it_is() -> None:
    """Its line breaks would be refused too; the member must hear that the key is leaked."""
    body = "".join(
        f"    {line}\n"
        for line in ("-----BEGIN OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjE", "-----END")
    )
    _, problems = load(f"ssh_keys:\n  - |\n{body}".encode(), "f.yaml")
    (p,) = problems
    assert (p.rule, p.line, p.col) == ("ssh_key.private", 2, 5)
    assert p.message.startswith("ssh_keys[0]: this looks like a PRIVATE key")
    assert "b3BlbnNzaC1rZXktdjE" not in p.message


@pytest.mark.parametrize(
    "number",
    [
        "9" * 5000,  # int() refuses it
        "0x" + "f" * 5000,  # int() builds it, str() of it fails later
        "0o" + "7" * 5000,
        "-" + "1" * 4300,
        "1" * 3000 + ".5e3",
        "1" * (MAX_NUMBER + 1),
    ],
)
def test_a_number_too_long_is_refused_before_it_is_converted(number: str) -> None:
    _, problems = load(f"a: ok\nb: [1, {number}]\n".encode(), "f.yaml")
    (p,) = problems
    assert (p.rule, p.line, p.col) == ("yaml.size", 2, 8)
    assert p.message == f"b[1]: a number {len(number)} characters long; the limit is {MAX_NUMBER}"
    with pytest.raises(NumberTooLongError):
        resolve_plain(number)


def test_numbers_up_to_the_limit_and_long_text_are_fine() -> None:
    assert ok(f"a: {'1' * MAX_NUMBER}\n") == {"a": int("1" * MAX_NUMBER)}
    assert ok(f"a: 0x{'f' * (MAX_NUMBER - 2)}\n") == {"a": 16 ** (MAX_NUMBER - 2) - 1}
    # text that only starts like a number is text, however long
    assert ok(f"a: {'1' * 5000}x\n") == {"a": "1" * 5000 + "x"}
    assert ok(f'a: "{"9" * 5000}"\n') == {"a": "9" * 5000}


def test_the_file_size_is_capped_before_parsing() -> None:
    filler = "# " + "x" * 98 + "\n"
    fits = "a: 1\n" + filler * ((MAX_BYTES - 5) // len(filler))
    fits += "#" * (MAX_BYTES - len(fits) - 1) + "\n"
    assert len(fits.encode()) == MAX_BYTES
    assert ok(fits) == {"a": 1}
    assert refused(fits + "\n") == ("yaml.size", 1, 1)
    # even bytes that are not YAML at all are not looked at past the cap
    assert refused(b"\xff" * (MAX_BYTES + 1)) == ("yaml.size", 1, 1)


def test_one_value_is_capped() -> None:
    assert ok("a: " + "x" * MAX_SCALAR + "\n")
    assert refused("a: " + "x" * (MAX_SCALAR + 1) + "\n") == ("yaml.size", 1, 4)


def test_a_duplicate_key_says_where_it_was_first() -> None:
    _, problems = load(b"kind: container\nname: a\nkind: account\n", "f.yaml")
    assert problems[0].message == "duplicate key 'kind' (first written on line 1)"


def test_a_refusal_never_repeats_a_long_value() -> None:
    long_key = "k" * 500
    _, problems = load(f"{long_key}: 1\n{long_key}: 2\n".encode(), "f.yaml")
    assert problems[0].rule in ("yaml.duplicate_key", "yaml.syntax")
    assert long_key not in problems[0].message


@pytest.mark.parametrize(
    ("text", "where"), [("---", "1:4"), ("---\n", "1:4"), ("# a comment\n---\n", "2:4")]
)
def test_a_file_holding_only_a_document_start_is_reported_on_a_line_it_has(
    tmp_path: Path, text: str, where: str
) -> None:
    # before: line 2 of a one-line file, which no editor or annotation can point at
    root = sample_repo(tmp_path / "repo", {"requests/alice/alice-box.yaml": text})
    result = validate(root, env={"SSP_NOW": "2026-11-28T12:00:00+00:00"})
    assert result.code == 1, result.both
    assert result.out.splitlines() == [
        f"requests/alice/alice-box.yaml:{where}: error: a request is a mapping of fields "
        "(kind: container, name: …) [schema.type]"
    ]
