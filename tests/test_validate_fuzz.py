"""No file, however broken, makes the validator crash: it returns findings or a valid result.

Hypothesis feeds the real pipeline (safe YAML → schema → rules → reports) with random bytes,
random text, and mutations of a valid request (lines deleted, duplicated or swapped,
characters changed, a field's value replaced by random YAML), and the same for the policy.
Every finding must point inside its file. A few mutated files also go through the command
line, which must answer 0 or 1, never 3 (an unexpected error).

A second family writes YAML escapes (`"\\e[31m"`, `"\\u202e"`, `"\\U0010fffe"`, any code point)
and numerals thousands of digits long into values, keys and SSH key comments: nothing the
text rule refuses may reach a valid request, every report must encode as UTF-8, and the
command line (tree and PR mode, every format) must never answer 3.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path

import yaml
from helpers import (
    CONTAINER_FIELDS,
    NOW,
    GitRepo,
    key,
    sample,
    sample_repo,
    valid_request,
    validate,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.reporting import validationreport
from provisioner.validation.config import load_config
from provisioner.validation.textpolicy import first_forbidden
from provisioner.validation.validate import Validation, load_request, validate_pull, validate_tree
from provisioner.values.changes import FileChange
from provisioner.values.loaded import Loaded
from provisioner.values.problems import Problem
from provisioner.values.tree import Tree

PATH = "requests/alice/alice-box.yaml"
OTHER = "requests/carol/carol-box.yaml"
NOW_DT = datetime.fromisoformat(NOW)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that stress the loader: YAML indicators, 1.1-style scalars, unicode, key material.
TOKENS = [
    "",
    " ",
    "\t",
    ":",
    "- ",
    "? ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    '"',
    "|",
    ">",
    "#",
    "&a ",
    "*a",
    "!!str ",
    "!x ",
    "<<: ",
    "%YAML 1.1\n",
    "---\n",
    "...\n",
    "yes",
    "no",
    "on",
    "~",
    "null",
    "0755",
    "0x1F",
    "0o17",
    "1e9",
    ".inf",
    "-.nan",
    "2027-02-30",
    "12:30:00",
    "9" * 30,
    "\u00e9",
    "\u202e",
    "\u2028",
    "\x00",
    "\r",
    "\ufeff",
    "😀",
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "ssh-rsa AAAA",
    'command="x" ',
]

# Values a member might really write: valid YAML, often valid schema, sometimes breaking a rule.
PLAUSIBLE = {
    "name": ["alice-box", "alice-two", "default", "root", "x"],
    "owner": ["alice", "bob", "carol", "dave", "Alice"],
    "image": ["common-server", "ubuntu-24.04", "windows"],
    "gpus": ["0", "2", "3", "5", "[0]", "[1, 1]", "[3]", "[9]", "[0, 1, 2]"],
    "cpu": ["1", "16", "17", "64", "65"],
    "memory": ["1MiB", "64GiB", "65GiB", "300GiB"],
    "disk": ["10GiB", "300GiB", "5TiB"],
    "shares": ["[]", "[share]", "[share, share]", "[home]"],
    "expires": ["2026-11-28", "2026-11-29", "2027-11-28", "2027-11-29", "2030-01-01"],
    "snapshots": ["none", "weekly", "hourly"],
    "host": ["super-server", "other"],
    "ssh_keys": [f"[{key('carol')}]", f"[{key('alice')}, {key('alice')}]"],
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(TOKENS),
    st.dates().map(str),
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.one_of(st.text(max_size=10), st.sampled_from(CONTAINER_FIELDS)), inner, max_size=5
        ),
    ),
    max_leaves=12,
)


def _dump(value: object) -> str:
    """A value as YAML flow text (what a member might type after `field: `)."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000)
    return text.removesuffix("\n...\n").strip()


@st.composite
def mutated_request(draw: st.DrawFn) -> str:
    """A valid request with a few random edits to its lines, characters or values."""
    lines = valid_request(gpus=draw(st.sampled_from(["1", "[0, 1]", "0"]))).splitlines()
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=max(len(lines) - 1, 0)))
        edit = draw(
            st.sampled_from(
                ["delete", "duplicate", "swap", "char", "token", "value", "indent", "plausible"]
            )
        )
        if not lines:
            lines = [""]
        if edit == "delete":
            del lines[at]
        elif edit == "duplicate":
            lines.insert(at, lines[at])
        elif edit == "swap":
            other = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif edit == "indent":
            lines[at] = draw(st.sampled_from([" ", "  ", "\t", "    "])) + lines[at]
        elif edit in ("char", "token"):
            line = lines[at]
            pos = draw(st.integers(min_value=0, max_value=len(line)))
            piece = draw(st.characters() if edit == "char" else st.sampled_from(TOKENS))
            cut = draw(st.integers(min_value=0, max_value=2))
            lines[at] = line[:pos] + piece + line[pos + cut :]
        else:
            if edit == "plausible":
                field = draw(st.sampled_from(sorted(PLAUSIBLE)))
                written = f"{field}: {draw(st.sampled_from(PLAUSIBLE[field]))}"
            else:
                field = draw(st.sampled_from([*CONTAINER_FIELDS, "host", "server", "extra"]))
                written = f"{field}: {_dump(draw(yaml_values))}"
            starts = [i for i, line in enumerate(lines) if line.startswith(f"{field}:")]
            if starts:
                lines[starts[0]] = written
            else:
                lines.append(written)
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n", "\n\n"]))


def _tree(files: dict[str, bytes]) -> Tree:
    base = {
        "config/policy.yaml": sample("config/policy.yaml").encode(),
        "config/hosts.yaml": sample("config/hosts.yaml").encode(),
        OTHER: valid_request(owner="carol", gpus="[3]").encode(),
    }
    return Tree({**base, **files})


def _assert_sound(result: Validation, files: dict[str, bytes]) -> None:
    """Findings are values that point inside their files; every report renders."""
    for problem in result.problems:
        assert isinstance(problem, Problem)
        assert problem.rule and problem.message
        assert problem.line >= 1 and problem.col >= 1
        raw = files.get(problem.path)
        if raw is not None:
            assert problem.line <= raw.count(b"\n") + raw.count(b"\r") + 1, str(problem)
        assert str(problem).startswith(f"{problem.path}:{problem.line}:{problem.col}: ")
        validationreport.annotation(problem)
    validationreport.text_lines(result)
    json.loads(validationreport.to_json(result))
    validationreport.summary_markdown(result, [FileChange("A", p) for p in files])


def _run(files: dict[str, bytes]) -> Validation:
    tree = _tree(files)
    result = validate_tree(tree, NOW_DT)
    _assert_sound(result, dict(tree.files))
    return result


def _load(raw: bytes) -> None:
    loaded, problems = load_request(PATH, raw)
    assert (loaded is None) == bool(problems)
    assert loaded is None or isinstance(loaded, Loaded)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_as_a_request(raw: bytes) -> None:
    _load(raw)
    _run({PATH: raw})


@FUZZ
@given(st.text(max_size=1000))
def test_random_text_as_a_request(text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    _load(raw)
    _run({PATH: raw})


@FUZZ
@given(mutated_request())
def test_mutated_requests(text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    _load(raw)
    result = _run({PATH: raw})
    _assert_one_verdict_per_file(result, raw)


def _assert_one_verdict_per_file(result: Validation, raw: bytes) -> None:
    """Every request file gets exactly one verdict: an error on it, valid (what plan builds
    on), or expired (what apply retires); and a file judged valid loads again on its own."""
    errors = {p.path for p in result.errors}
    valid = [item.path for item in result.valid]
    expired = [item.path for item in result.expired]
    assert len(valid) == len(set(valid)) and len(expired) == len(set(expired))
    for path in (PATH, OTHER):
        verdicts = [path in errors, path in valid, path in expired]
        assert verdicts.count(True) == 1, (path, verdicts, [str(p) for p in result.problems])
    if PATH in valid:
        loaded, problems = load_request(PATH, raw)
        assert loaded is not None and not problems, problems
        judged = next(i.request for i in result.valid if i.path == PATH)
        # the owner is spelt as the policy spells the login (GitHub logins ignore case)
        assert loaded.request.owner.casefold() == judged.owner.casefold()
        assert loaded.request.model_copy(update={"owner": judged.owner}) == judged


@FUZZ
@given(st.dictionaries(st.sampled_from(CONTAINER_FIELDS), yaml_values, max_size=4))
def test_random_values_for_fields(values: dict[str, object]) -> None:
    text = valid_request(**{k: _dump(v) for k, v in values.items()})
    _run({PATH: text.encode("utf-8", "surrogatepass")})


@st.composite
def mutated_config(draw: st.DrawFn) -> tuple[str, str]:
    path = draw(st.sampled_from(["config/policy.yaml", "config/hosts.yaml"]))
    lines = sample(path).splitlines()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        edit = draw(st.sampled_from(["delete", "duplicate", "token", "value"]))
        if edit == "delete" and len(lines) > 1:
            del lines[at]
        elif edit == "duplicate":
            lines.insert(at, lines[at])
        elif edit == "token":
            pos = draw(st.integers(min_value=0, max_value=len(lines[at])))
            lines[at] = lines[at][:pos] + draw(st.sampled_from(TOKENS)) + lines[at][pos:]
        else:
            head, colon, _ = lines[at].partition(":")
            if colon:
                lines[at] = f"{head}: {_dump(draw(yaml_values))}"
    return path, "\n".join(lines) + "\n"


@FUZZ
@given(mutated_config())
def test_mutated_config(edit: tuple[str, str]) -> None:
    path, text = edit
    raw = text.encode("utf-8", "surrogatepass")
    policy = raw if path == "config/policy.yaml" else sample("config/policy.yaml").encode()
    hosts = raw if path == "config/hosts.yaml" else sample("config/hosts.yaml").encode()
    config, problems = load_config(policy, hosts)
    assert (config is None) == bool(problems)
    _run({path: raw, PATH: valid_request().encode()})


PR_PATHS = [
    PATH,
    OTHER,
    "requests/bob/bob-common.yaml",
    "requests/alice",
    "requests/x.yaml",
    "requests/alice/sub/x.yaml",
    "config/policy.yaml",
    "README.md",
    "requests/ålice/x.yaml",
    "requests//x.yaml",
]


@FUZZ
@given(
    st.lists(
        st.tuples(st.sampled_from("AMD"), st.one_of(st.sampled_from(PR_PATHS), st.text())),
        max_size=6,
    ),
    st.one_of(st.sampled_from(["alice", "Alice", "lab-admin", "carol", ""]), st.text()),
    mutated_request(),
)
def test_random_pull_requests(changes: list[tuple[str, str]], author: str, text: str) -> None:
    files = {PATH: text.encode("utf-8", "surrogatepass")}
    tree = _tree(files)
    pull = [FileChange(status, path) for status, path in changes]
    result = validate_pull(tree, pull, author, frozenset({"lab-admin"}), NOW_DT)
    _assert_sound(result, dict(tree.files))
    touched_by_others = [c for c in pull if (c.owner_folder or "").casefold() != author.casefold()]
    if author.casefold() != "lab-admin" and touched_by_others:
        assert {"authz.other_owner", "authz.infra"} & {p.rule for p in result.problems}


@settings(max_examples=12, deadline=None)
@given(mutated_request())
def test_mutated_requests_through_the_command_line(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = sample_repo(Path(tmp) / "repo", {PATH: text.encode("utf-8", "surrogatepass")})
        result = validate(repo)
        assert result.code in (0, 1), result.both
        assert "Traceback" not in result.both
        for fmt in ("json", "github"):
            assert validate(repo, "--format", fmt).code == result.code


# --- escapes and long numerals (issue 15) ------------------------------------------------------

# Every escape YAML's double-quoted style has, and code points written in hex: what a member
# would use to smuggle a character the loader refuses when typed.
SIMPLE_ESCAPES = [*'0abtnvfre N_LP/\\"', "\t"]
CODE_POINTS = st.one_of(
    st.integers(min_value=0, max_value=0x10FFFF),
    st.sampled_from(
        [
            0x1B,
            0x9B,
            0x202E,
            0x2066,
            0x200B,
            0xFEFF,
            0xFFFE,
            0xFFFF,
            0xFDD0,
            0x1FFFF,
            0x10FFFF,
            0xD800,
            0xDFFF,
            0x110000,
            0xE000,
        ]
    ),
)


@st.composite
def escape(draw: st.DrawFn) -> str:
    """One escape sequence as written inside "...": `\\e`, `\\x9b`, `\\u202e`, `\\U0001fffe`."""
    form = draw(st.sampled_from(["simple", "x", "u", "U"]))
    if form == "simple":
        return "\\" + draw(st.sampled_from(SIMPLE_ESCAPES))
    code = draw(CODE_POINTS)
    width = {"x": 2, "u": 4, "U": 8}[form]
    return f"\\{form}{code % 16**width:0{width}x}"


@st.composite
def escaped_text(draw: st.DrawFn) -> str:
    """A double-quoted YAML scalar mixing plain words and escapes."""
    pieces = draw(
        st.lists(
            st.one_of(escape(), st.sampled_from(["x", "ok", " ", "训练", "é", "😀"])),
            min_size=1,
            max_size=6,
        )
    )
    return '"' + "".join(pieces) + '"'


@st.composite
def long_numeral(draw: st.DrawFn) -> str:
    """A number literal, often longer than the loader converts."""
    size = draw(st.one_of(st.integers(1, 120), st.integers(4000, 6000)))
    form = draw(st.sampled_from(["dec", "hex", "oct", "float", "signed", "exp"]))
    digits = draw(st.sampled_from("123456789")) * size
    return {
        "dec": digits,
        "hex": "0x" + "f" * size,
        "oct": "0o" + "7" * size,
        "float": digits + ".5",
        "signed": "-" + digits,
        "exp": "1e" + digits[:6],
    }[form]


@st.composite
def request_with_escapes(draw: st.DrawFn, *, number: bool = False) -> str:
    """A valid request with escapes or long numerals in values, keys or a key's comment
    (with `number`, always a numeral in a field that wants one, where the schema shows it)."""
    overrides: dict[str, str | list[str]] = {}
    if number:
        overrides[draw(st.sampled_from(["cpu", "gpus"]))] = draw(long_numeral())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        where = draw(st.sampled_from(["value", "key", "key-comment", "number", "list"]))
        field = draw(st.sampled_from(CONTAINER_FIELDS))
        if where == "value":
            overrides[field] = draw(escaped_text())
        elif where == "key":
            overrides[draw(escaped_text())] = draw(st.one_of(escaped_text(), long_numeral()))
        elif where == "key-comment":
            comment = draw(escaped_text())[1:-1]
            overrides["ssh_keys"] = [f'"{key("alice")} {comment}"']
        elif where == "number":
            overrides[field] = draw(long_numeral())
        else:
            overrides[field] = f"[{draw(escaped_text())}, {draw(long_numeral())}]"
    return valid_request(**overrides)


def _strings(value: object) -> list[str]:
    """Every string in loaded data, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _assert_only_allowed_text(result: Validation) -> None:
    """What passed the loader holds no character textpolicy refuses, and every report can be
    written out as UTF-8 (a lone surrogate would fail there, as an unexpected error)."""
    for item in result.valid:
        for text in _strings(item.doc.data):
            assert first_forbidden(text) is None, ascii(text)
    for text in (
        *validationreport.text_lines(result),
        validationreport.to_json(result),
        validationreport.summary_markdown(result),
    ):
        text.encode("utf-8")
    for problem in result.problems:
        validationreport.annotation(problem).encode("utf-8")


@FUZZ
@given(request_with_escapes())
def test_escapes_and_long_numerals_in_requests(text: str) -> None:
    raw = text.encode("utf-8")
    _load(raw)
    result = _run({PATH: raw})
    _assert_only_allowed_text(result)


@FUZZ
@given(st.sampled_from(["config/policy.yaml", "config/hosts.yaml"]), st.data())
def test_escapes_and_long_numerals_in_the_lab_files(path: str, data: st.DataObject) -> None:
    lines = sample(path).splitlines()
    at = data.draw(st.sampled_from([i for i, line in enumerate(lines) if ": " in line]))
    head, _, _ = lines[at].partition(": ")
    lines[at] = f"{head}: {data.draw(st.one_of(escaped_text(), long_numeral()))}"
    raw = ("\n".join(lines) + "\n").encode("utf-8")
    result = _run({path: raw, PATH: valid_request().encode()})
    _assert_only_allowed_text(result)


@settings(max_examples=10, deadline=None)
@given(request_with_escapes(number=True))
def test_escapes_and_long_numerals_through_the_command_line(text: str) -> None:
    """Tree mode and PR mode answer 0 or 1, never 3, in every output format."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = GitRepo.pull_request(Path(tmp) / "repo", {}, {PATH: text})
        for args in ((), ("--base", "main", "--author", "alice")):
            for fmt in ("text", "json", "github"):
                result = validate(repo.root, *args, "--format", fmt)
                assert result.code in (0, 1), result.both
                assert "unexpected error" not in result.both
                assert "Traceback" not in result.both


def test_the_fuzzer_reaches_valid_files_and_findings() -> None:
    """The strategies are not so wild that every run is a YAML syntax error."""
    rules: set[str] = set()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(mutated_request())
    def collect(text: str) -> None:
        result = _run({PATH: text.encode("utf-8", "surrogatepass")})
        rules.update(p.rule.split(".")[0] for p in result.problems)
        if result.ok:
            rules.add("ok")

    collect()
    assert {"ok", "yaml", "schema"} <= rules, rules
    # and the lab's rules (quota, gpus, name, lease, ...), not only the parser and the schema
    assert len(rules - {"ok", "yaml", "schema"}) >= 3, rules
