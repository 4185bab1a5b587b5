"""The safe YAML loader: YAML 1.2 scalars, refusals with positions, and the position map."""

from __future__ import annotations

import math

import pytest

from provisioner.problems import Position
from provisioner.sources import MAX_BYTES, MAX_DEPTH, MAX_SCALAR, load, resolve_plain


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


def test_block_scalars_keep_their_text() -> None:
    assert ok("a: |\n  one\n  two\nb: >\n  three\n  four\n") == {
        "a": "one\ntwo\n",
        "b": "three four\n",
    }


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
        ("a: 'open\n", "yaml.syntax", 1, 9),
        ("a: b: c\n", "yaml.syntax", 1, 5),
        ("a:\n\t- 1\n", "yaml.syntax", 2, 1),
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
