"""A pull request that only renews leases is said so in the check's summary, with the old and
new last days: only a later `expires` on requests that exist, nothing else changed."""

from __future__ import annotations

from datetime import date

import pytest
from fakelxd import NOW, Lab

from provisioner.reporting import validationreport
from provisioner.validation.validate import Renewal, renewals_only, validate_pull
from provisioner.values.changes import FileChange

ALICE = "requests/alice/alice-x.yaml"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("keys"))


def test_a_later_expires_and_nothing_else_is_a_renewal_in_the_summary(lab: Lab) -> None:
    before = lab.tree(lab.container("alice-x", expires="2027-03-01"))
    after = lab.tree(lab.container("alice-x", expires="2027-05-31"))
    result = validate_pull(after, [FileChange("M", ALICE)], "alice", frozenset(), NOW, before)
    assert result.ok and result.renewals == (Renewal(ALICE, date(2027, 3, 1), date(2027, 5, 31)),)
    summary = validationreport.summary_markdown(result, [FileChange("M", ALICE)])
    assert "### Renewal only" in summary
    assert f"| `{ALICE}` | 2027-03-01 → **2027-05-31** |" in summary


@pytest.mark.parametrize(
    ("old", "new", "status"),
    [
        ({"expires": "2027-03-01"}, {"expires": "2027-02-01"}, "M"),  # shorter: not a renewal
        ({"expires": "2027-03-01"}, {"expires": "2027-03-01", "gpus": 1}, "M"),  # same day
        ({"expires": "2027-03-01"}, {"expires": "2027-05-31", "cpu": 8}, "M"),  # more than that
        ({"expires": "2027-03-01"}, {"expires": "2027-05-31"}, "A"),  # a new request
    ],
    ids=["earlier", "same-day", "and-cpu", "new-file"],
)
def test_anything_more_than_a_later_last_day_is_not_renewal_only(
    lab: Lab, old: dict[str, object], new: dict[str, object], status: str
) -> None:
    before = lab.tree(lab.container("alice-x", **old))
    after = lab.tree(lab.container("alice-x", **new))
    assert renewals_only(before, after, [FileChange(status, ALICE)]) == ()
    result = validate_pull(after, [FileChange(status, ALICE)], "alice", frozenset(), NOW, before)
    assert "Renewal only" not in validationreport.summary_markdown(result)


def test_a_renewal_together_with_another_change_is_not_renewal_only(lab: Lab) -> None:
    before = lab.tree(lab.container("alice-x", expires="2027-03-01"))
    after = lab.tree(
        lab.container("alice-x", expires="2027-05-31"), lab.container("alice-y", gpus=0)
    )
    changes = [FileChange("M", ALICE), FileChange("A", "requests/alice/alice-y.yaml")]
    assert renewals_only(before, after, changes) == ()
