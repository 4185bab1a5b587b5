"""Which backups are due and which old ones go (provisioner.planning.backups), and how
maintenance reports them: pure, on the policy's `backup:` section as an admin writes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from provisioner.planning import backups as plan
from provisioner.values.policymodels import BackupPolicy

NOW = datetime(2027, 1, 10, 16, 0, tzinfo=UTC)


def policy(**fields: object) -> BackupPolicy:
    return BackupPolicy.model_validate({"target": "/mnt/nas/ssp", **fields})


def test_file_names_carry_the_container_and_the_utc_time_and_nothing_else_is_taken() -> None:
    name = plan.file_name("web-1", NOW)
    assert name == "web-1.20270110T160000Z.tar.gz"
    assert plan.parse_file(name) == ("web-1", NOW)
    # Whatever else is in the folder (an admin's notes, a partial export) is never a backup,
    # so it is neither counted nor removed.
    for other in ("README", "web-1.20270110T160000Z.tar.gz.partial", "web-1.tar.gz", "x.y.tar.gz"):
        assert plan.parse_file(other) is None
    found = plan.by_container([name, "README", plan.file_name("web-1", NOW - timedelta(days=7))])
    assert [f for _, f in found["web-1"]] == [name, "web-1.20270103T160000Z.tar.gz"]


def test_a_backup_is_due_after_every_days_with_an_hours_slack_and_always_when_there_is_none() -> (
    None
):
    weekly = policy(every_days=7)
    existing = {
        "fresh": [(NOW - timedelta(days=6), "f")],
        "early": [(NOW - timedelta(days=7) + timedelta(minutes=30), "e")],  # ran a bit later
        "old": [(NOW - timedelta(days=8), "o")],
    }
    due = plan.due(weekly, ["early", "fresh", "new", "old"], existing, NOW)
    assert [(d.name, d.last is None) for d in due] == [
        ("early", False),
        ("new", True),
        ("old", False),
    ]


def test_only_the_newest_keep_stay_and_opted_in_picks_the_requests_that_ask() -> None:
    found = [(NOW - timedelta(days=d), f"b{d}") for d in (0, 7, 14, 21)]
    assert plan.to_prune(policy(keep=2), found) == ["b14", "b21"]
    assert plan.to_prune(policy(keep=5), found) == []
    managed = ["a", "b", "c"]
    assert plan.wanted(policy(), managed, frozenset()) == ["a", "b", "c"]
    assert plan.wanted(policy(containers="opted-in"), managed, frozenset({"b", "z"})) == ["b"]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"target": "backups"}, "target"),  # a relative path: where would it go?
        ({"keep": 0}, "keep"),
        ({"every_days": 0}, "every_days"),
        ({"containers": "some"}, "containers"),
    ],
)
def test_a_bad_backup_section_is_refused(fields: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        BackupPolicy.model_validate({"target": "/mnt/nas", **fields})
