"""Leases as days (provisioner.planning.leases): the last day is inclusive in the lab's time zone,
reminders fall due once each, and a retired container is deleted only with the policy's
consent, after a final notice given long enough before. The clock is always handed in."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from provisioner.planning.leases import (
    WARNED,
    Stage,
    days_left,
    lab_today,
    lease_ended,
    reminder_due,
    review,
)
from provisioner.validation.config import load_config
from provisioner.values import state
from provisioner.values.policymodels import Policy
from provisioner.values.state import Instance

ROOT = Path(__file__).resolve().parents[1]
LAST = date(2027, 6, 30)


def policy(**changes: object) -> Policy:
    data = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    data.update(changes)
    return Policy.model_validate(data)


def container(name: str = "alice-thesis", retired: date | None = None, **labels: str) -> Instance:
    config = {
        state.MANAGED: "true",
        state.OWNER: "alice",
        state.REQUEST: f"requests/alice/{name}.yaml",
        state.STATE: "ready",
        state.EXPIRES: LAST.isoformat(),
        **labels,
    }
    if retired is not None:
        config[state.RETIRED] = retired.isoformat()
    return Instance(name, "Stopped" if retired else "Running", config)


def test_the_lab_day_is_the_policy_time_zones_day_at_the_boundary() -> None:
    # 15:59:59 UTC is 23:59:59 in Shanghai: still the last day; a second later it is over.
    before = datetime(2027, 6, 30, 15, 59, 59, tzinfo=UTC)
    after = before + timedelta(seconds=1)
    assert lab_today(before, "Asia/Shanghai") == LAST
    assert lab_today(after, "Asia/Shanghai") == LAST + timedelta(days=1)
    assert not lease_ended(LAST, lab_today(before, "Asia/Shanghai"))
    assert lease_ended(LAST, lab_today(after, "Asia/Shanghai"))
    # The same instant is still the 30th in New York: the zone decides, not UTC.
    assert not lease_ended(LAST, lab_today(after, "America/New_York"))


def test_the_last_day_is_part_of_the_lease() -> None:
    assert days_left(LAST, LAST) == 0
    assert not lease_ended(LAST, LAST)
    assert lease_ended(LAST, LAST + timedelta(days=1))


@pytest.mark.parametrize(
    ("left", "due"),
    [(30, None), (15, None), (14, 14), (13, 14), (4, 14), (3, 3), (1, 3), (0, 3), (-1, None)],
)
def test_the_smallest_reminder_not_yet_passed_is_due(left: int, due: int | None) -> None:
    assert reminder_due(LAST, LAST - timedelta(days=left), [14, 3]) == due


def test_reminders_and_the_expiry_each_have_their_own_notice() -> None:
    p = policy()
    keys = []
    for left in range(20, -3, -1):
        (lease,) = review([container()], p, LAST - timedelta(days=left))
        keys.append(lease.notice)
    distinct = list(dict.fromkeys(k for k in keys if k))
    assert distinct == [f"reminder-14-{LAST}", f"reminder-3-{LAST}", f"expired-{LAST}"]
    (last_day,) = review([container()], p, LAST)
    assert last_day.stage is Stage.REMINDER
    (day_after,) = review([container()], p, LAST + timedelta(days=1))
    assert day_after.stage is Stage.EXPIRED


def test_a_renewal_brings_new_reminders() -> None:
    later = LAST + timedelta(days=90)
    (lease,) = review([container(**{state.EXPIRES: later.isoformat()})], policy(), later)
    assert lease.notice == f"reminder-3-{later}"


def test_without_consent_a_retired_container_is_kept_forever() -> None:
    retired = LAST + timedelta(days=1)
    p = policy(retention_days=30)
    (lease,) = review([container(retired=retired)], p, retired + timedelta(days=400))
    assert (lease.stage, lease.delete_on) == (Stage.KEPT, None)
    assert lease.notice == f"expired-{LAST}"  # told once that it ended; never a final notice


def test_with_consent_the_final_notice_comes_first_then_deletion() -> None:
    retired = LAST + timedelta(days=1)
    p = policy(retention_days=30, retention={"delete": True, "final_notice_days": 3})
    keep_until = retired + timedelta(days=30)

    (early,) = review([container(retired=retired)], p, keep_until - timedelta(days=4))
    assert (early.stage, early.delete_on) == (Stage.EXPIRED, keep_until)
    (warn,) = review([container(retired=retired)], p, keep_until - timedelta(days=3))
    assert (warn.stage, warn.delete_on, warn.notice) == (
        Stage.FINAL_NOTICE,
        keep_until,
        f"final-{retired}",
    )
    # Never deleted without the notice having gone out, however late it is.
    (late,) = review([container(retired=retired)], p, keep_until + timedelta(days=10))
    assert late.stage is Stage.FINAL_NOTICE
    assert late.delete_on == keep_until + timedelta(days=13)

    warned = container(retired=retired, **{WARNED: (keep_until - timedelta(days=3)).isoformat()})
    (waiting,) = review([warned], p, keep_until - timedelta(days=1))
    assert waiting.stage is Stage.EXPIRED
    (due,) = review([warned], p, keep_until)
    assert due.stage is Stage.DELETE


def test_a_notice_sent_late_pushes_deletion_back() -> None:
    retired = LAST + timedelta(days=1)
    p = policy(retention_days=30, retention={"delete": True, "final_notice_days": 3})
    told = retired + timedelta(days=40)  # maintenance was down for weeks
    inst = container(retired=retired, **{WARNED: told.isoformat()})
    assert review([inst], p, told + timedelta(days=2))[0].stage is Stage.EXPIRED
    assert review([inst], p, told + timedelta(days=3))[0].stage is Stage.DELETE


def test_a_given_back_container_gets_no_expiry_notice() -> None:
    retired = LAST - timedelta(days=100)  # its request was removed long before the lease ended
    (lease,) = review([container(retired=retired)], policy(), retired + timedelta(days=1))
    assert (lease.stage, lease.notice) == (Stage.RETIRED, "")


def test_unmanaged_half_made_and_unlabelled_instances() -> None:
    p = policy()
    other = Instance("admin-box", "Running", {})
    half = container("half-made", **{state.STATE: "creating"})
    unlabelled = container("no-date", **{state.EXPIRES: "not a date"})
    leases = review([other, half, unlabelled], p, LAST + timedelta(days=5))
    assert [(lease.name, lease.stage) for lease in leases] == [("no-date", Stage.ACTIVE)]


@pytest.mark.parametrize(
    ("old", "new", "rule", "line_text"),
    [
        ("reminders: [14, 3]", "reminders: [14, 3, 14]", "policy.reminders", None),
        (
            "  delete: false\n  final_notice_days: 3",
            "  delete: true\n  final_notice_days: 40",
            "policy.final_notice",
            "  final_notice_days: 40",
        ),
    ],
)
def test_bad_lease_settings_are_named_on_their_line(
    old: str, new: str, rule: str, line_text: str | None
) -> None:
    base = (ROOT / "config" / "policy.yaml").read_text(encoding="utf-8")
    assert f"\n{old}\n" in base
    raw = base.replace(f"\n{old}\n", f"\n{new}\n")
    line_text = line_text or new
    hosts = (ROOT / "config" / "hosts.yaml").read_bytes()
    config, problems = load_config(raw.encode(), hosts)
    assert config is None
    (problem,) = problems
    assert problem.rule == rule
    assert raw.splitlines()[problem.position.line - 1] == line_text


def test_the_validator_keeps_a_lease_running_through_its_last_day(tmp_path: Path) -> None:
    from helpers import request_path, sample_repo, valid_request  # noqa: PLC0415

    from provisioner.git import files as gitfiles  # noqa: PLC0415
    from provisioner.validation.validate import validate_tree  # noqa: PLC0415

    text = valid_request(expires=LAST.isoformat())
    root = sample_repo(tmp_path / "lab", {request_path(text): text})
    # 23:59 in Shanghai on the last day: still part of the lease.
    now = datetime(2027, 6, 30, 15, 59, tzinfo=UTC)
    validation = validate_tree(gitfiles.worktree(root), now)
    assert [p.rule for p in validation.problems] == []
    assert len(validation.valid) == 1
