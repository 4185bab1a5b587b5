"""No snapshot.json, however broken, fails the PR check: `ssp validate --snapshot` answers
what validation alone says (here 0: the PR is fine), never 3, and prints no traceback.

Members can push the `ssp-state` branch the PR check reads (issue 22, finding 4), so
Hypothesis mutates a good snapshot the way `ssp publish` writes it: any value replaced by
another JSON value (huge or negative numbers, fractions, NaN, strings with control characters
or lone surrogates, timestamps without a UTC offset or from the future, deep nesting, the wrong
type), keys deleted, added or renamed, list items duplicated; and the file's bytes cut,
spliced or made invalid UTF-8. The status page beside it stays the one published, so most
mutations reach the parser's model and many reach planning and the reports.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from helpers import GitRepo, valid_request, validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snapshots import container, make_snapshot

# Hundreds of whole `ssp validate` runs: part of `make test`, not of the minute-long fast suite.
pytestmark = pytest.mark.slow

ALICE = "requests/alice/alice-box.yaml"
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def lab() -> tuple[Path, Path, str]:
    """One PR (alice asks for a container with a GPU, and changes nothing else) and a good
    snapshot of a host with containers on three of the four GPUs, made once per session."""
    root = Path(tempfile.mkdtemp(prefix="ssp-snapshot-fuzz-"))
    atexit.register(shutil.rmtree, root, True)
    mine = valid_request(gpus="1", shares="[]")
    repo = GitRepo.pull_request(root / "lab", {}, {ALICE: mine})
    (root / "state").mkdir()
    good = make_snapshot(
        root / "state" / "snapshot.json",
        [
            container("carol-box", "carol", (0, 1), 22001, "50GiB"),
            container("old-box", "dave", (2,), 22002, "20GiB"),
        ],
    )
    return repo.root, good, good.read_text(encoding="utf-8")


TIMES = [
    "2026-11-28T11:00:00",
    "2026-11-28T11:00:00Z",
    "2026-11-28T11:00:00+08:00",
    "2099-01-01T00:00:00+00:00",
    "1970-01-01T00:00:00Z",
    "2026-11-28",
    "2026-02-30T00:00:00Z",
    "",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 65535, 65536, 2**63, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["\x1b[31m", "\ud800", "\u202e", "::error::x", "<script>", "a" * 5000]),
    st.sampled_from(TIMES),
    st.sampled_from(["0000:18:00.0", "0000:99:00.0", "alice-box", "ready", "retired", "creating"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in DOC a value sits (the document itself first)."""
    found = [at]
    if isinstance(doc, dict):
        for key, item in doc.items():
            found += _paths(item, (*at, key))
    elif isinstance(doc, list):
        for n, item in enumerate(doc):
            found += _paths(item, (*at, n))
    return found


def _holder(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """The good snapshot with one to four edits of its values, keys or bytes."""
    _, _, text = lab()
    doc = json.loads(text)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        holder, key = _holder(doc, path), path[-1]
        edit = draw(
            st.sampled_from(["replace", "replace", "delete", "add", "rename", "twice", "deep"])
        )
        if edit == "replace":
            holder[key] = draw(values)
        elif edit == "delete":
            del holder[key]
        elif edit == "add" and isinstance(holder, dict):
            holder[draw(st.text(max_size=10))] = draw(values)
        elif edit == "rename" and isinstance(holder, dict):
            holder[draw(st.text(max_size=10))] = holder.pop(key)
        elif edit == "twice" and isinstance(holder, list):
            holder.insert(key, holder[key])
        elif edit == "deep":
            nested: Any = holder[key]
            for _ in range(draw(st.integers(min_value=1, max_value=60))):
                nested = [nested]
            holder[key] = nested
    raw = json.dumps(doc, ensure_ascii=draw(st.booleans()), allow_nan=True).encode(
        "utf-8", "surrogatepass"
    )
    if draw(st.integers(min_value=0, max_value=4)) == 0:  # and sometimes the bytes themselves
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        piece = draw(st.one_of(st.binary(max_size=6), st.sampled_from([b"\xff", b"\xc3", b"\x00"])))
        raw = raw[:at] + piece + raw[at + draw(st.integers(min_value=0, max_value=8)) :]
    return raw


def _check(raw: bytes) -> dict[str, Any]:
    repo, good, _ = lab()
    good.write_bytes(raw)
    codes = set()
    for fmt in ("json", "github", "text"):
        done = validate(
            repo, "--base", "main", "--author", "alice", "--snapshot", str(good), "--format", fmt
        )
        assert "Traceback" not in done.both and "unexpected error" not in done.both, done.both
        codes.add(done.code)
        if fmt == "json":
            doc: dict[str, Any] = json.loads(done.out)
    # what validation alone says: alice's PR is valid (a flagged preview is only a warning)
    assert codes == {0}, codes
    return doc


@FUZZ
@given(mutated())
def test_a_mutated_snapshot_never_fails_the_check(raw: bytes) -> None:
    doc = _check(raw)
    assert doc["ok"] is True
    assert doc["preview"]["rows"][0]["path"] == ALICE


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_as_a_snapshot_never_fail_the_check(raw: bytes) -> None:
    assert _check(raw)["preview"]["usable"] is False


def test_the_fuzzer_reaches_usable_and_refused_snapshots() -> None:
    """The mutations are not so wild that every snapshot is refused at the first byte."""
    seen: dict[str, int] = {"usable": 0, "model": 0, "other": 0}

    @settings(max_examples=120, deadline=None, database=None, derandomize=True)
    @given(mutated())
    def collect(raw: bytes) -> None:
        preview = _check(raw)["preview"]
        if preview["usable"]:
            seen["usable"] += 1
        elif "it is not a valid snapshot (" in preview["source"]:
            seen["model"] += 1
        else:
            seen["other"] += 1

    collect()
    assert seen["usable"] >= 3 and seen["model"] >= 10, seen
