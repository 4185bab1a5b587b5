"""GPU use kept and counted: the usage database (a real SQLite file: versioned, WAL, pruned),
the GPU-hours per member, idle GPUs, and `ssp usage`'s outputs and refusals."""

from __future__ import annotations

import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from helpers import run_cli, sample_repo

from provisioner.flows.usage import idle_now, prometheus
from provisioner.host.usagedb import LATEST, UsageDb
from provisioner.status import usage
from provisioner.values.errors import UsageDbError, UsageError
from provisioner.values.policymodels import Policy
from provisioner.values.usage import Reading

ROOT = Path(__file__).resolve().parents[1]
PCI = "0000:4b:00.0"
T0 = int(datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp())
DAY = 86_400


def reading(at: int, util: int | None = 0, owner: str = "alice", **kw: object) -> Reading:
    fields: dict[str, object] = {
        "pci": PCI,
        "seconds": 300,
        "memory_used": 0,
        "memory_total": 24 << 30,
        "processes": 0,
        "container": f"{owner}-box" if owner else "",
    }
    fields.update(kw)
    return Reading(at=at, utilization=util, owner=owner, **fields)  # type: ignore[arg-type]


def test_a_new_database_is_at_the_latest_version_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "var" / "usage.sqlite"
    with UsageDb(path) as db:
        db.record([reading(T0)])
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    with UsageDb(path, create=False) as db:
        assert db.readings(T0, T0 + 1) == [reading(T0)]


def test_a_database_from_a_newer_ssp_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite"
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {LATEST + 1}")
    raw.close()
    before = path.read_bytes()
    with pytest.raises(UsageDbError, match="newer than this ssp knows"):
        UsageDb(path)
    assert path.read_bytes() == before


def test_a_missing_database_is_not_created_by_a_reader(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite"
    with pytest.raises(UsageDbError, match=r"ssp-sample\.timer"):
        UsageDb(path, create=False)
    assert not path.exists()


def test_a_reader_sees_committed_readings_while_a_writer_is_mid_transaction(
    tmp_path: Path,
) -> None:
    path = tmp_path / "usage.sqlite"
    with UsageDb(path) as db:
        db.record([reading(T0)])
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO readings VALUES (?, '', ?, 300, 50, 0, 0, 0, 'bob', 'bob-box')",
        (T0 + 300, PCI),
    )
    try:
        # WAL: the reader neither waits for the writer nor sees its uncommitted row.
        with UsageDb(path, create=False) as reader:
            assert [r.at for r in reader.readings(0, T0 + DAY)] == [T0]
    finally:
        writer.execute("COMMIT")
        writer.close()
    with UsageDb(path, create=False) as reader:
        assert [r.at for r in reader.readings(0, T0 + DAY)] == [T0, T0 + 300]


def test_readings_past_retention_are_pruned_when_a_pass_records(tmp_path: Path) -> None:
    with UsageDb(tmp_path / "usage.sqlite") as db:
        db.record([reading(T0 + i * DAY) for i in range(10)])
        pruned = db.record([reading(T0 + 10 * DAY)], prune_before=T0 + 7 * DAY)
        assert pruned == 7
        assert [r.at for r in db.readings(0, T0 + 11 * DAY)] == [
            T0 + d * DAY for d in (7, 8, 9, 10)
        ]


def test_held_and_used_gpu_hours_per_member() -> None:
    hour = [reading(T0 + i * 300, util=50) for i in range(12)]  # alice: 1 h at 50 %
    bob = [reading(T0 + i * 300, util=100, owner="bob", pci="0000:1a:00.0") for i in range(24)]
    free = [reading(T0, util=90, owner="")]  # nobody holds it: nobody's hours
    rows = usage.account([*hour, *bob, *free], "2026-11")
    assert [(r.member, r.held_hours, r.used_hours) for r in rows] == [
        ("alice", 1.0, 0.5),
        ("bob", 2.0, 2.0),
    ]
    assert rows[0].containers == ("alice-box",)
    text = usage.text(rows, "2026-11")
    assert "alice" in text and "50%" in text and "total" in text


def test_months_follow_the_labs_time_zone_and_bad_months_are_refused() -> None:
    start, end = usage.month_span("2026-12", "Asia/Shanghai")
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert datetime.fromtimestamp(end, UTC) == datetime(2026, 12, 31, 16, tzinfo=UTC)
    for bad in ("2026-13", "26-11", "2026-1", "2026-11; rm"):
        with pytest.raises(UsageError, match="YYYY-MM"):
            usage.month_span(bad, "UTC")


def test_csv_and_prometheus_outputs() -> None:
    rows = usage.account([reading(T0, util=40)], "2026-11")
    assert usage.to_csv(rows).splitlines() == [
        "month,member,held_gpu_hours,used_gpu_hours,containers",
        "2026-11,alice,0.083,0.033,alice-box",
    ]
    # the GPU host's library (a dependency): what Prometheus's own parser reads back
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    text = prometheus(rows)
    prom = text.splitlines()
    assert "# TYPE ssp_gpu_held_hours gauge" in prom
    assert 'ssp_gpu_held_hours{member="alice",month="2026-11"} 0.083' in prom
    assert 'ssp_gpu_used_hours{member="alice",month="2026-11"} 0.033' in prom
    # the library's format, not a look-alike
    parsed = {
        (f.name, s.labels["member"], s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert parsed == {
        ("ssp_gpu_held_hours", "alice", 0.083),
        ("ssp_gpu_used_hours", "alice", 0.033),
    }


def test_without_prometheus_client_the_prometheus_format_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member's slim install leaves prometheus-client out: only the one output needs it."""
    repo = sample_repo(tmp_path / "repo")
    db = _db_with(tmp_path, [reading(T0, util=40)])
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if it were not installed
    args = ("usage", "--repo", str(repo), "--db", str(db), "--month", "2026-11")
    done = run_cli(*args, "--format", "prometheus")
    assert done.code == 2 and "Traceback" not in done.both
    assert "this needs prometheus-client" in done.err
    assert run_cli(*args, "--format", "csv").code == 0


def idle(readings: list[Reading], now: int, days: int = 3) -> list[usage.IdleGpu]:
    return usage.idle_gpus(readings, now, threshold=5, days=days, fresh_s=900)


def test_a_gpu_held_at_zero_for_the_policys_days_is_idle() -> None:
    now = T0 + 4 * DAY
    quiet = [reading(T0 + i * 3600, util=i % 2 * 5) for i in range(4 * 24 + 1)]
    (found,) = idle(quiet, now)
    assert (found.container, found.owner, found.since, found.peak) == ("alice-box", "alice", T0, 5)
    assert found.since_day("Asia/Shanghai").isoformat() == "2026-11-01"


def test_one_busy_reading_a_new_holder_or_an_unknown_utilisation_is_not_idle() -> None:
    now = T0 + 4 * DAY
    base = [reading(T0 + i * 3600) for i in range(4 * 24 + 1)]
    busy = list(base)
    busy[-30] = reading(busy[-30].at, util=40)  # used a day ago: idle since then only
    assert idle(busy, now) == []
    handed = [*base[:-48], *(reading(r.at, owner="bob") for r in base[-48:])]
    assert idle(handed, now) == []  # bob has held it for 2 days only
    unknown = [reading(r.at, util=None) for r in base]
    assert idle(unknown, now) == []
    assert idle(base, now + 3600) == []  # the sampler stopped: no notice on stale readings
    assert idle(base, now, days=0) == []  # the policy asks for no idle notices
    free = [reading(r.at, owner="") for r in base]
    assert idle(free, now) == []


def _db_with(tmp_path: Path, readings: list[Reading]) -> Path:
    path = tmp_path / "usage.sqlite"
    with UsageDb(path) as db:
        db.record(readings)
    return path


def test_ssp_usage_reports_a_month_as_csv(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "repo")
    db = _db_with(tmp_path, [reading(T0 + i * 300, util=100) for i in range(12)])
    got = run_cli(
        "usage", "--repo", str(repo), "--db", str(db), "--month", "2026-11", "--format", "csv"
    )
    assert got.code == 0, got.both
    assert got.out.splitlines()[1] == "2026-11,alice,1.0,1.0,alice-box"
    october = run_cli("usage", "--repo", str(repo), "--db", str(db), "--month", "2026-10")
    assert october.code == 0 and "no GPU was held" in october.out


def test_ssp_usage_refuses_a_bad_month_and_a_missing_database_clearly(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "repo")
    bad = run_cli("usage", "--repo", str(repo), "--db", str(tmp_path / "x"), "--month", "11/2026")
    assert bad.code == 2 and "YYYY-MM" in bad.err and "Traceback" not in bad.both
    missing = run_cli("usage", "--repo", str(repo), "--db", str(tmp_path / "none.sqlite"))
    assert missing.code == 3 and "no usage database" in missing.err
    assert not (tmp_path / "none.sqlite").exists()


def test_what_a_label_says_is_stored_as_data_never_as_sql(tmp_path: Path) -> None:
    hostile = "x'); DROP TABLE readings; --"
    path = tmp_path / "usage.sqlite"
    with UsageDb(path) as db:
        db.record([reading(T0, owner=hostile, container=hostile)])
    with UsageDb(path, create=False) as db:
        (back,) = db.readings(0, T0 + 1)
    assert back.owner == hostile and back.container == hostile


def test_an_idle_stretch_longer_than_the_window_keeps_the_day_it_began(tmp_path: Path) -> None:
    """The idle notice's marker names the day the stretch began: read only `idle_days + 1`
    back, that day crept forward every day and each pass posted a new notice."""
    path = _db_with(tmp_path, [reading(T0 + i * 3600) for i in range(30 * 24 + 1)])
    policy = Policy.model_validate(
        {**yaml.safe_load((ROOT / "config" / "policy.yaml").read_text()), "usage": {"idle_days": 3}}
    )
    for days in (10, 20, 30):
        now = datetime.fromtimestamp(T0 + days * DAY, UTC)
        (found,) = idle_now(path, policy, now)
        assert found.since == T0, days
    # Further back, what ended the stretch: a busy hour, or another holder before it.
    busy = tmp_path / "busy"
    busy.mkdir()
    stretch = [reading(T0 + i * 3600, util=3) for i in range(30 * 24 + 1)]
    stretch[5 * 24] = reading(T0 + 5 * DAY, util=60)
    stretch[:24] = [reading(r.at, owner="bob") for r in stretch[:24]]
    (found,) = idle_now(_db_with(busy, stretch), policy, datetime.fromtimestamp(T0 + 30 * DAY, UTC))
    assert (found.since, found.peak) == (T0 + 5 * DAY + 3600, 3)
    handed = tmp_path / "handed"
    handed.mkdir()
    stretch[5 * 24] = reading(T0 + 5 * DAY, util=3)
    (found,) = idle_now(
        _db_with(handed, stretch), policy, datetime.fromtimestamp(T0 + 30 * DAY, UTC)
    )
    assert found.since == T0 + DAY  # alice's stretch began when bob's hold ended


def test_the_pages_chart_puts_every_member_on_one_scale() -> None:
    last = [
        usage.MemberUse("2026-11", "alice", 10.0, 5.0, ("a",)),
        usage.MemberUse("2026-11", "bob", 20.0, 0.0, ("b",)),
    ]
    current = [usage.MemberUse("2026-12", "carol", 4.0, 4.0, ("c",))]
    drawn = usage.chart(last, current, ("2026-11", "2026-12"))
    bars = dict(drawn.members)
    assert list(bars) == ["alice", "bob", "carol"]
    assert (bars["alice"][0].held_pct, bars["alice"][0].used_pct) == (50.0, 50.0)
    assert (bars["bob"][0].held_pct, bars["bob"][0].used_pct) == (100.0, 0.0)
    assert bars["carol"][0].held_hours == 0.0 and bars["carol"][1].held_pct == 20.0
    assert usage.chart([], [], ("2026-11", "2026-12")).members == ()
