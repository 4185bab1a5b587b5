"""The schema gate (provisioner/validation/schemagate.py) never passes what jsonschema refuses.

`schema.check` skips jsonschema for a document the gate passes, so a gate that said "yes" too
often would let a bad file through without its message. Here the gate and jsonschema's own
validator (ssp's, with its integer rule and format checking) judge the sample files and
thousands of mutations of them: wherever the gate says yes, jsonschema must find no error; and
the valid files must pass the gate, or it would speed nothing up.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.validation import schema
from provisioner.validation.schemagate import compile_schema
from provisioner.validation.sources import load

ROOT = Path(__file__).resolve().parents[1]
IMAGE = b"""kind: image
name: alice-env
owner: alice
purpose: my conda environment, for the lab
from: alice-thesis
snapshot: before-upgrade
expires: 2027-01-31
"""
# What a member might write in place of any value: each type, the edges of the ranges and
# lengths, impossible dates, a pattern's trailing newline, bool-for-int.
ODD: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2.0,
    2.5,
    10**12,
    float("inf"),
    "",
    "x",
    "x" * 300,
    "abc\n",
    "2026-02-30",
    "2027-01-31",
    "8GiB",
    "8 GB",
    "ssh-ed25519 AAAA",
    [],
    [1],
    ["a", "a"],
    {},
    {"x": 1},
]


def documents() -> list[tuple[str, str, Any]]:
    """(kind, path, data) of the sample checkout's files and an image request."""
    found = [
        ("policy", "config/policy.yaml", (ROOT / "config/policy.yaml").read_bytes()),
        ("hosts", "config/hosts.yaml", (ROOT / "config/hosts.yaml").read_bytes()),
        ("image", "requests/alice/alice-env.yaml", IMAGE),
    ]
    for path in sorted((ROOT / "requests").glob("*/*.yaml")):
        raw = path.read_bytes()
        kind = "account" if b"kind: account" in raw else "container"
        found.append((kind, str(path.relative_to(ROOT)), raw))
    out = []
    for kind, path, raw in found:
        doc, problems = load(raw, path)
        assert doc is not None, problems
        out.append((kind, path, doc.data))
    return out


def places(data: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside `data`."""
    yield at
    if isinstance(data, dict):
        for k, v in data.items():
            yield from places(v, (*at, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from places(v, (*at, i))


def mutants(data: Any) -> Iterator[Any]:
    """`data` with one value replaced by each odd value, one key removed, one key added."""
    for at in places(data):
        if not at:
            continue
        *parent_at, last = at
        for odd in ODD:
            changed = copy.deepcopy(data)
            parent = changed
            for step in parent_at:
                parent = parent[step]
            parent[last] = copy.deepcopy(odd)
            yield changed
        if isinstance(last, str):
            dropped = copy.deepcopy(data)
            parent = dropped
            for step in parent_at:
                parent = parent[step]
            del parent[last]
            yield dropped
            added = copy.deepcopy(data)
            parent = added
            for step in parent_at:
                parent = parent[step]
            if isinstance(parent, dict):
                parent[last + "x"] = "extra"
                yield added


@pytest.mark.parametrize(("kind", "path", "data"), documents(), ids=lambda x: str(x)[:40])
def test_the_gate_passes_a_valid_file_and_nothing_jsonschema_refuses(
    kind: str, path: str, data: Any
) -> None:
    gate = compile_schema(schema.generate(kind))
    full = schema._validator(kind)
    assert gate(data), f"{path} is valid and should pass the gate"
    assert not list(full.iter_errors(data))
    refused = passed = 0
    for changed in mutants(data):
        if gate(changed):
            passed += 1
            errors = [e.message for e in full.iter_errors(changed)]
            assert errors == [], (path, changed, errors)
        else:
            refused += 1
    assert refused > 0 and passed > 0  # both answers were exercised


def test_the_gate_follows_jsonschemas_edges() -> None:
    """Where JSON Schema and Python disagree: bool is no integer, 2.0 is no integer in ssp,
    a `$` matches before a final newline (re.search), an impossible date is refused."""
    gate = compile_schema(
        {
            "type": "object",
            "properties": {
                "n": {"type": "integer", "minimum": 1},
                "name": {"type": "string", "pattern": "^[a-z]+$"},
                "day": {"type": "string", "format": "date"},
                "kind": {"const": "container"},
            },
            "required": ["n"],
            "additionalProperties": False,
        }
    )
    assert gate({"n": 1, "name": "abc", "day": "2026-02-28", "kind": "container"})
    assert not gate({"n": True})
    assert not gate({"n": 2.0})
    assert not gate({"n": 0})
    assert gate({"n": 1, "name": "abc\n"})  # as jsonschema's re.search does
    assert not gate({"n": 1, "day": "2026-02-30"})
    assert not gate({"n": 1, "kind": ["container"]})
    assert not gate({"n": 1, "other": 1})
    assert not gate({})
    # A keyword the gate does not know: it leaves the answer to jsonschema.
    assert not compile_schema({"type": "array", "uniqueItems": True})([1, 2])
