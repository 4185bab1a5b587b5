"""The plan preview on a pull request: `ssp validate --base main --snapshot FILE`.

Each test is a real git repository (the sample config on `main`, a PR branch on top) and a
snapshot made the way `ssp publish` makes it on the host: `status.build` over LXD instances,
then `snapshot.make` (redacted as the policy says) and its JSON. The CLI then judges the PR
as the PR check does, and the preview must say what `make_plan` would give each request,
flag what would not fit (free GPUs, the pool's free disk) as a warning on the request's line,
show a change as a diff, and, without a usable snapshot, say why and validate all the same.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from helpers import ENV, NOW, ROOT, GitRepo, line_of, valid_request, validate
from snapshots import PCI, GiB, container, make_snapshot, snapshot_text

from provisioner.status import snapshot as snapshots
from provisioner.values.state import RELEASED, Instance

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

CAROL = "requests/carol/carol-box.yaml"
ALICE = "requests/alice/alice-box.yaml"
CAROL_REQUEST = valid_request(owner="carol", gpus="3", shares="[]")


def pull_request(tmp_path: Path, base: dict[str, str], head: dict[str, str | None]) -> GitRepo:
    return GitRepo.pull_request(tmp_path / "lab", base, head)  # type: ignore[arg-type]


def check(repo: GitRepo, snap: Path, *extra: str, env: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    done = validate(
        repo.root,
        "--base",
        "main",
        "--author",
        "alice",
        "--snapshot",
        str(snap),
        "--format",
        "json",
        *extra,
        env=env,
    )
    doc = json.loads(done.out)
    doc["exit"] = done.code
    return doc


def rows(doc: dict) -> dict:  # type: ignore[type-arg]
    return {r["path"]: r for r in doc["preview"]["rows"]}


def warnings(doc: dict) -> list[tuple[str, int, str]]:  # type: ignore[type-arg]
    return [
        (p["path"], p["line"], p["rule"]) for p in doc["problems"] if p["severity"] == "warning"
    ]


def test_a_new_request_gets_the_free_gpu_and_the_next_port_as_apply_would(tmp_path: Path) -> None:
    mine = valid_request(gpus="1", shares="[]")
    repo = pull_request(tmp_path, {CAROL: CAROL_REQUEST}, {ALICE: mine})
    snap = make_snapshot(
        tmp_path / "s.json", [container("carol-box", "carol", (0, 1, 2), 22001, "50GiB")]
    )

    doc = check(repo, snap)

    assert doc["exit"] == 0 and warnings(doc) == []
    row = rows(doc)[ALICE]
    assert (row["verb"], row["gpus"], row["port"]) == ("create", "3", "22002")
    assert row["disk"] == "50GiB (+50GiB; pool has 500GiB free)"
    assert row["quota"] == "1/2 GPUs, 1/2 containers, 50GiB/300GiB disk"
    assert doc["preview"]["free_gpus"] == "3" and doc["preview"]["usable"]


def test_more_gpus_than_are_free_is_a_warning_on_the_gpus_line(tmp_path: Path) -> None:
    # The inventory has room (4 GPUs, nobody on main asks for one), the host does not: an
    # instance no valid request manages (an admin's experiment, a lapsed lease not yet
    # retired) holds three of them.
    mine = valid_request(gpus="2", shares="[]")
    repo = pull_request(tmp_path, {}, {ALICE: mine})
    snap = make_snapshot(
        tmp_path / "s.json", [container("old-box", "carol", (0, 1, 2), 22001, "50GiB")]
    )

    doc = check(repo, snap)

    assert doc["exit"] == 0  # a warning: the check itself passes
    assert warnings(doc) == [(ALICE, line_of(mine, "gpus:"), "preview.fit")]
    (flag,) = rows(doc)[ALICE]["flags"]
    assert "only 1 of the 2 GPUs asked for are free" in flag
    assert rows(doc)[ALICE]["gpus"] == "—"


def test_a_pinned_gpu_someone_holds_is_flagged(tmp_path: Path) -> None:
    mine = valid_request(gpus=["2"], shares="[]")
    repo = pull_request(tmp_path, {}, {ALICE: mine})
    # an instance no request manages holds GPU 2 (say, an admin's experiment)
    other = Instance("admin-test", "Running", devices={"gpu": {"type": "gpu", "pci": PCI[2]}})
    snap = make_snapshot(tmp_path / "s.json", [other])

    doc = check(repo, snap)

    assert warnings(doc) == [(ALICE, line_of(mine, "  - 2"), "preview.fit")]
    assert "GPU 2 (0000:86:00.0) is in use by instance 'admin-test'" in rows(doc)[ALICE]["flags"][0]


def errors(doc: dict) -> list[tuple[str, int, str]]:  # type: ignore[type-arg]
    return [(p["path"], p["line"], p["rule"]) for p in doc["problems"] if p["severity"] == "error"]


def test_pinning_a_gpu_a_count_container_holds_is_an_error_naming_the_holder(
    tmp_path: Path,
) -> None:
    # carol's count got GPU 0 (the snapshot shows her container with it); alice now pins 0.
    carol_count = valid_request(owner="carol", gpus="1", shares="[]")
    mine = valid_request(gpus=["0"], shares="[]")
    repo = pull_request(tmp_path, {CAROL: carol_count}, {ALICE: mine})
    snap = make_snapshot(
        tmp_path / "s.json", [container("carol-box", "carol", (0,), 22001, "50GiB")]
    )

    doc = check(repo, snap)

    assert doc["exit"] == 1 and not doc["ok"]
    assert errors(doc) == [(ALICE, line_of(mine, "  - 0"), "preview.gpu_held")]
    (problem,) = [p for p in doc["problems"] if p["rule"] == "preview.gpu_held"]
    assert "GPU 0 (0000:18:00.0) is held by container 'carol-box'" in problem["message"]
    assert "GPUs never move under a container" in problem["message"]
    # the preview says what carol keeps: she is not on the PR, her GPU is not free
    assert doc["preview"]["free_gpus"] == "1, 2, 3"


def test_a_free_pinned_gpu_beside_a_count_container_passes_and_says_which_gpus(
    tmp_path: Path,
) -> None:
    carol_count = valid_request(owner="carol", gpus="1", shares="[]")
    mine = valid_request(gpus=["1"], shares="[]")
    repo = pull_request(tmp_path, {CAROL: carol_count}, {ALICE: mine})
    snap = make_snapshot(
        tmp_path / "s.json", [container("carol-box", "carol", (0,), 22001, "50GiB")]
    )

    doc = check(repo, snap)

    assert doc["exit"] == 0 and errors(doc) == [] and warnings(doc) == []
    assert rows(doc)[ALICE]["gpus"] == "1"


def test_without_a_snapshot_a_new_pin_is_a_warning_that_nobody_checked_its_holder(
    tmp_path: Path,
) -> None:
    mine = valid_request(gpus=["0"], shares="[]")
    counted = valid_request(name="alice-other", gpus="1", shares="[]")
    repo = pull_request(tmp_path, {}, {ALICE: mine, "requests/alice/alice-other.yaml": counted})

    doc = check(repo, tmp_path / "missing.json")

    assert doc["exit"] == 0 and doc["ok"]
    # the pin is warned about; the count is not (it takes whatever is free)
    assert warnings(doc) == [(ALICE, line_of(mine, "  - 0"), "preview.gpu_unchecked")]
    (problem,) = [p for p in doc["problems"] if p["rule"] == "preview.gpu_unchecked"]
    assert "whether a container already holds GPU 0 could not be checked" in problem["message"]


def test_more_disk_than_the_pool_has_free_is_a_warning_on_the_disk_line(tmp_path: Path) -> None:
    mine = valid_request(gpus="0", disk="200GiB", shares="[]")
    repo = pull_request(tmp_path, {}, {ALICE: mine})
    snap = make_snapshot(tmp_path / "s.json", [], free_disk=120 * GiB)

    doc = check(repo, snap)

    assert doc["exit"] == 0
    assert warnings(doc) == [(ALICE, line_of(mine, "disk:"), "preview.disk")]
    assert rows(doc)[ALICE]["flags"] == ["its disk needs 200GiB more and the pool has 120GiB free"]


def test_a_change_shows_its_diff_and_keeps_its_gpus_and_port(tmp_path: Path) -> None:
    before = valid_request(gpus="1", shares="[]", expires="2027-03-31")
    after = valid_request(gpus="1", shares="[]", expires="2027-09-30", disk="80GiB")
    repo = pull_request(tmp_path, {ALICE: before, CAROL: CAROL_REQUEST}, {ALICE: after})
    snap = make_snapshot(
        tmp_path / "s.json",
        [
            container("carol-box", "carol", (0, 1, 2), 22001, "50GiB"),
            container("alice-box", "alice", (3,), 22005, "50GiB"),
        ],
    )

    doc = check(repo, snap)

    row = rows(doc)[ALICE]
    assert row["verb"] == "change"
    assert row["diff"] == ["disk: 50GiB → 80GiB", "expires: 2027-03-31 → 2027-09-30"]
    assert (row["gpus"], row["port"]) == ("3", "22005 (kept)")
    assert row["disk"] == "50GiB → 80GiB (+30GiB; pool has 500GiB free)"
    assert warnings(doc) == []


def test_the_job_summary_shows_the_preview_and_flags_at_a_glance(tmp_path: Path) -> None:
    mine = valid_request(gpus="2", shares="[]")
    repo = pull_request(tmp_path, {}, {ALICE: mine})
    snap = make_snapshot(
        tmp_path / "s.json", [container("old-box", "carol", (0, 1, 2), 22001, "50GiB")]
    )
    summary = tmp_path / "summary.md"

    done = validate(
        repo.root, "--base", "main", "--author", "alice", "--snapshot", str(snap),
        "--format", "github", env={**ENV, "GITHUB_STEP_SUMMARY": str(summary)},
    )  # fmt: skip

    assert done.code == 0
    assert f"::warning file={ALICE},line={line_of(mine, 'gpus:')}" in done.out
    text = summary.read_text(encoding="utf-8")
    assert "### Plan preview" in text
    assert "⚠️ **1 request(s) would not fit on the host now**" in text
    assert "Free GPUs now: **3**" in text
    # the warning is also among the summary's first lines, before the tables
    assert text.index("would wait: 1st in line") < text.index("### Quota use")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "no state snapshot was found (the host has not published one yet)"),
        ("stale", "older than the policy's snapshot.max_age_hours (30)"),
        ("format", "it is in format 2, this ssp reads format 1"),
        ("garbage", "it is not a valid snapshot"),
        ("extra key", "it is not a valid snapshot (instances.0.address: Extra inputs"),
    ],
)
def test_without_a_usable_snapshot_it_says_why_and_still_validates(
    tmp_path: Path, case: str, expected: str
) -> None:
    before = valid_request(gpus="1", shares="[]", expires="2027-03-31")
    after = valid_request(gpus="1", shares="[]", expires="2027-09-30")
    repo = pull_request(tmp_path, {ALICE: before}, {ALICE: after})
    snap = tmp_path / "s.json"
    good = [container("alice-box", "alice", (3,), 22005, "50GiB")]
    if case == "stale":
        make_snapshot(snap, good, made=datetime.fromisoformat(NOW) - timedelta(hours=31))
    elif case == "format":
        make_snapshot(snap, good)
        snap.write_text(
            snap.read_text()
            .replace('"format":1', '"format":2')
            .replace('"format": 1', '"format": 2')
        )
    elif case == "garbage":
        snap.write_text("<html>not json</html>")
    elif case == "extra key":
        make_snapshot(snap, good)
        doc = json.loads(snap.read_text())
        doc["instances"][0]["address"] = "10.0.0.1"
        snap.write_text(json.dumps(doc))

    doc = check(repo, snap)

    assert doc["exit"] == 0 and doc["ok"]
    assert doc["preview"]["usable"] is False
    assert expected in doc["preview"]["source"]
    row = rows(doc)[ALICE]
    assert row["diff"] == ["expires: 2027-03-31 → 2027-09-30"]  # the diff needs no snapshot
    assert (row["gpus"], row["port"], row["disk"]) == ("—", "—", "—")


def test_a_bad_request_still_fails_with_a_snapshot(tmp_path: Path) -> None:
    mine = valid_request(gpus="7", shares="[]")  # more than the host has
    repo = pull_request(tmp_path, {}, {ALICE: mine})
    snap = make_snapshot(tmp_path / "s.json", [])

    doc = check(repo, snap)

    assert doc["exit"] == 1
    assert rows(doc)[ALICE]["what"] == "(not valid: see the problems above)"


def test_the_snapshot_holds_no_addresses_or_config_unless_the_policy_allows(
    tmp_path: Path,
) -> None:
    box = container("alice-box", "alice", (3,), 22005, "50GiB")
    text = make_snapshot(tmp_path / "s.json", [box]).read_text(encoding="utf-8")
    assert "10.161.5.23" not in text and "never published" not in text
    assert json.loads(text)["addresses"] is False

    allowing = (
        (ROOT / "config/policy.yaml").read_text().replace("addresses: false", "addresses: true")
    )
    text = make_snapshot(tmp_path / "t.json", [box], policy_text=allowing).read_text()
    assert "10.161.5.23" in text and "never published" not in text


def _edit(snap: Path, change: object) -> None:
    """Apply CHANGE (a function of the parsed document) to the snapshot at SNAP."""
    doc = json.loads(snap.read_text(encoding="utf-8"))
    change(doc)  # type: ignore[operator]
    snap.write_text(json.dumps(doc), encoding="utf-8")


def _set(*keys: str | int, value: object) -> object:
    def change(doc: dict) -> None:  # type: ignore[type-arg]
        for key in keys[:-1]:
            doc = doc[key]
        doc[keys[-1]] = value  # type: ignore[index]

    return change


# What a push to ssp-state could hold (issue 22, finding 4): each is a note, never exit 3.
DEFECTS = [
    ("naive generated_at", _set("generated_at", value="2026-11-28T11:00:00"), "UTC offset"),
    ("naive status time", _set("status", "generated", value="2026-11-28T11:00:00"), "UTC offset"),
    ("from the future", _set("generated_at", value="2099-01-01T00:00:00Z"), "still to come"),
    ("huge disk", _set("instances", 0, "disk", value=10**400), "larger than any host"),
    ("huge pool", _set("status", "pool", "total", value=10**320), "larger than any host"),
    ("a fraction", _set("status", "pool", "used", value=1.5), "a fraction"),
    ("escape in a name", _set("status", "host", value="gpu\x1b[31m"), "control character"),
    ("lone surrogate", _set("status", "host", value="\ud800"), "lone surrogate"),
    ("wrong type", _set("instances", value={"a": 1}), "it is not a valid snapshot"),
    ("missing key", lambda d: d.pop("status"), "status: Field required"),
    ("no digest", lambda d: d.pop("page_sha256"), "records no SHA-256 of its status page"),
    ("wrong digest", _set("page_sha256", value="0" * 64), "its SHA-256 differs"),
]


@pytest.mark.parametrize(("case", "change", "expected"), DEFECTS, ids=[d[0] for d in DEFECTS])
def test_a_defective_snapshot_on_the_state_branch_is_a_note_and_never_fails_the_check(
    tmp_path: Path, case: str, change: object, expected: str
) -> None:
    mine = valid_request(gpus="1", shares="[]")
    repo = pull_request(tmp_path, {}, {ALICE: mine})
    snap = make_snapshot(tmp_path / "s.json", [container("old-box", "carol", (0,), 22001, "50GiB")])
    _edit(snap, change)

    for fmt in ("json", "text", "github"):
        done = validate(
            repo.root, "--base", "main", "--author", "alice", "--snapshot", str(snap),
            "--format", fmt,
        )  # fmt: skip
        assert done.code == 0, done.both  # what validation alone says: this PR is fine
        assert "Traceback" not in done.both and "unexpected error" not in done.both
    doc = check(repo, snap)
    assert doc["preview"]["usable"] is False
    assert expected in doc["preview"]["source"]
    assert rows(doc)[ALICE]["verb"] == "create"  # the rows are still there, without numbers


@pytest.mark.parametrize(
    "case", ["not UTF-8", "nested", "very deep", "page missing", "page edited"]
)
def test_a_broken_file_on_the_state_branch_is_a_note(tmp_path: Path, case: str) -> None:
    repo = pull_request(tmp_path, {}, {ALICE: valid_request(gpus="1", shares="[]")})
    snap = make_snapshot(tmp_path / "s.json", [])
    page = tmp_path / "index.html"
    if case == "not UTF-8":
        snap.write_bytes(snap.read_bytes().replace(b'"host"', b'"h\xffost"'))
    elif case in ("nested", "very deep"):
        depth = 40 if case == "nested" else 100_000  # deeper than Python's json can read
        snap.write_text('{"format": 1, "x": ' + "[" * depth + "]" * depth + "}")
    elif case == "page missing":
        page.unlink()
    else:
        page.write_text(page.read_text() + "<script>alert(1)</script>", encoding="utf-8")

    doc = check(repo, snap)

    assert doc["exit"] == 0 and doc["preview"]["usable"] is False
    source = doc["preview"]["source"]
    assert source.startswith("the published state snapshot cannot be used: ")
    assert {
        "not UTF-8": "not UTF-8 text",
        "nested": "nested deeper than a snapshot is",
        "very deep": "nested deeper than a snapshot is",
        "page missing": "is not beside it to be checked",
        "page edited": "is not the one `ssp publish` wrote with it",
    }[case] in source


def test_publish_records_the_digest_of_the_page_it_wrote(tmp_path: Path) -> None:
    snap = make_snapshot(tmp_path / "s.json", [])
    digest = json.loads(snap.read_text(encoding="utf-8"))["page_sha256"]
    page = (tmp_path / "index.html").read_bytes()
    assert digest == hashlib.sha256(page).hexdigest()
    doc = check(pull_request(tmp_path, {}, {ALICE: valid_request(shares="[]")}), snap)
    assert doc["preview"]["usable"] is True


def test_a_fault_in_the_preview_itself_is_a_note_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever the snapshot trips that the parser did not foresee (here: planning raising),
    # the verdict is validation's alone.
    from provisioner.status import preview  # noqa: PLC0415

    real = preview.build

    def tripping(*args: object, **kwargs: object) -> object:
        if args[3] is not None:  # the snapshot
            raise OverflowError("int too large to convert to float")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(preview, "build", tripping)
    repo = pull_request(tmp_path, {}, {ALICE: valid_request(gpus="1", shares="[]")})
    doc = check(repo, make_snapshot(tmp_path / "s.json", []))
    assert doc["exit"] == 0 and doc["ok"]
    assert doc["preview"]["usable"] is False
    assert "OverflowError in the preview" in doc["preview"]["source"]
    assert rows(doc)[ALICE]["verb"] == "create"


def test_a_released_container_is_published_as_asking_no_gpus() -> None:
    """The snapshot carries a GPU release (never the label's text): the preview's plan, like
    the host's, gives that container no GPUs; its status row says so."""
    carol = container("carol-box", "carol", (), 22001, "50GiB")
    released = Instance(
        carol.name, carol.status, {**carol.config, RELEASED: "2027-01-14 idle"}, carol.devices
    )
    text = snapshot_text([released, container("alice-box", "alice", (0,), 22002, "50GiB")])
    snap = snapshots.parse(text.encode(), datetime.fromisoformat(NOW), timedelta(hours=30))
    by_name = {i.name: i for i in snapshots.instances(snap)}
    assert by_name["carol-box"].gpus_released and not by_name["alice-box"].gpus_released
    assert "2027-01-14 idle" not in text
    (row,) = [c for c in snap.status.containers if c.name == "carol-box"]
    assert (row.released, row.released_why) == (date(2027, 1, 14), "idle")


def test_a_request_whose_gpus_are_taken_would_wait_behind_those_already_in_line(
    tmp_path: Path,
) -> None:
    # Every GPU is held by a container whose request is gone (kept until it is retired, its
    # lease ending 2027-06-30); carol's request on main already waits for one. alice's PR,
    # merged now, would wait behind her: 2nd in line, told when the first GPU frees.
    carol_count = valid_request(owner="carol", gpus="1", shares="[]")
    mine = valid_request(gpus="1", shares="[]")
    repo = pull_request(tmp_path, {CAROL: carol_count}, {ALICE: mine})
    snap = make_snapshot(
        tmp_path / "s.json", [container("old-box", "bob", (0, 1, 2, 3), 22001, "50GiB")]
    )

    doc = check(repo, snap)

    assert doc["exit"] == 0  # a warning: the check passes, an admin sees it
    assert warnings(doc) == [(ALICE, line_of(mine, "gpus:"), "preview.fit")]
    (flag,) = rows(doc)[ALICE]["flags"]
    assert flag.startswith("would wait: 2nd in line; GPU 0 frees on 2027-07-01 (")
    (problem,) = [p for p in doc["problems"] if p["path"] == ALICE]
    assert problem["message"].startswith("would wait: 2nd in line; GPU 0 frees on 2027-07-01")
