"""The monthly GPU-hours summary issue (provisioner.flows.usagesummary) on the fake GitHub
through the GitHub adapter: opened once for last month, with held and used GPU-hours per
member and the top idle holders, found again by its marker on every later pass; a GitHub
failure is recorded and the next pass opens it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml
from fakegithub import FAKE_REPO, FakeGitHub
from test_notices import client  # noqa: F401  (the fixture: the GitHub adapter on the fake)

from provisioner.flows import usagesummary
from provisioner.github.issues import IssuesClient
from provisioner.host.usagedb import UsageDb
from provisioner.status.usage import MemberUse, previous_month, summary_body
from provisioner.values.policymodels import Policy
from provisioner.values.usage import Reading

pytest_plugins = ["fakegithub.fixtures"]

ROOT = Path(__file__).resolve().parents[1]
PCI = "0000:4b:00.0"


def policy() -> Policy:
    return Policy.model_validate(yaml.safe_load((ROOT / "config" / "policy.yaml").read_text()))


def test_last_month_is_the_labs_month_before() -> None:
    # 2026-12-01 01:00 in Shanghai is still 2026-11-30 in UTC: the lab's zone decides.
    now = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
    assert previous_month(now, "Asia/Shanghai") == "2026-11"
    assert previous_month(now, "UTC") == "2026-10"
    assert previous_month(datetime(2027, 1, 5, tzinfo=UTC), "UTC") == "2026-12"


def test_the_body_lists_members_and_the_top_idle_holders_without_mentions() -> None:
    rows = [
        MemberUse("2026-11", "alice", 700.0, 650.0, ("alice-a",)),
        MemberUse("2026-11", "bob", 720.0, 10.0, ("bob-b",)),
        MemberUse("2026-11", "carol", 100.0, 100.0, ("carol-c",)),
    ]
    body = summary_body(rows, "2026-11")
    assert "| `bob` | 720.0 | 10.0 | 1% |" in body
    assert "| **total** | 1520.0 | 760.0 | |" in body
    idle = body.split("Top idle holders")[1]
    assert idle.index("`bob`: 710.0") < idle.index("`alice`: 50.0") and "carol" not in idle
    assert "@" not in body  # a summary notifies nobody
    assert "No GPU was held" in summary_body([], "2026-11")


def test_the_issue_is_opened_once_from_the_database_and_found_again(
    client: IssuesClient,  # noqa: F811
    fake_github: FakeGitHub,
    tmp_path: Path,
) -> None:
    db = tmp_path / "usage.sqlite"
    november = int(datetime(2026, 11, 10, tzinfo=UTC).timestamp())
    with UsageDb(db) as store:
        store.record(
            [
                Reading(november + i * 300, PCI, 300, 0, 0, 24 << 30, 0, "bob", "bob-b")
                for i in range(12)
            ]
        )
    now = datetime(2026, 12, 1, 4, tzinfo=UTC)
    assert usagesummary.last_month(tmp_path / "none.sqlite", policy(), now) is None
    use = usagesummary.last_month(db, policy(), now)
    assert use is not None and use.month == "2026-11"

    fake_github.fail_next(1, status=422, method="POST", path_prefix=f"/repos/{FAKE_REPO}/issues")
    failed = usagesummary.post(client, use)
    assert failed.error and failed.issue is None
    assert fake_github.issues_of(FAKE_REPO) == []

    made = usagesummary.post(client, use)
    again = usagesummary.post(client, use)
    assert made.new and not made.error and not again.new and again.issue == made.issue
    (issue,) = fake_github.issues_of(FAKE_REPO)
    assert issue.title == "GPU-hours in 2026-11"
    assert [label.name for label in issue.labels] == ["ssp-usage"]
    assert "| `bob` | 1.0 | 0.0 | 0% |" in (issue.body or "")
    assert "`bob`: 1.0" in (issue.body or "")
    fake_github.assert_no_violations()
