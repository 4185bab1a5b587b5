"""Releasing idle GPUs with the lab's consent (provisioner.status.idlerelease): nothing without
`usage.idle_action: release`; a final notice first, naming the day; the release only from that
day, only if the final notice was recorded as delivered and the GPUs were not used since; a
container with a GPU in use, or already released, is left alone; a renewal gives them back."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from test_leases import container, policy

from provisioner.status.idlerelease import renewed, review
from provisioner.values import state
from provisioner.values.policymodels import Policy
from provisioner.values.state import Instance
from provisioner.values.usage import IdleGpu

TODAY = date(2027, 1, 20)
PCI, OTHER = "0000:4b:00.0", "0000:b1:00.0"


def consenting(**usage: Any) -> Policy:
    return policy(usage={"idle_days": 7, "idle_action": "release", "idle_grace_days": 3, **usage})


def idle(since: date, pci: str = PCI, name: str = "alice-thesis") -> IdleGpu:
    at = int(datetime(since.year, since.month, since.day, 4, tzinfo=UTC).timestamp())
    return IdleGpu("", pci, name, "alice", at, 1)


def holding(*pcis: str, **labels: str) -> Instance:
    inst = container(**labels)
    devices = {f"gpu{i}": {"type": "gpu", "pci": p} for i, p in enumerate(pcis)}
    return Instance(inst.name, inst.status, inst.config, devices)


def test_without_the_policys_consent_nothing_is_due() -> None:
    base = policy(usage={"idle_days": 7})
    assert base.usage.idle_action == "none"
    assert review([idle(TODAY - timedelta(days=9))], [holding(PCI)], base, TODAY) == []


def test_a_final_notice_comes_first_and_names_the_day_after_the_grace() -> None:
    (hold,) = review([idle(TODAY - timedelta(days=9))], [holding(PCI)], consenting(), TODAY)
    assert (hold.due, hold.release_on, hold.final_on) == ("final", date(2027, 1, 23), None)
    assert hold.pcis == (PCI,) and hold.since == TODAY - timedelta(days=9)


def test_the_release_waits_for_the_grace_after_the_recorded_final_notice() -> None:
    told = holding(PCI, **{state.IDLE_FINAL: "2027-01-20"})
    gpus = [idle(date(2027, 1, 10))]
    (waits,) = review(gpus, [told], consenting(), date(2027, 1, 22))
    assert (waits.due, waits.final_on, waits.release_on) == (
        "wait",
        date(2027, 1, 20),
        date(2027, 1, 23),
    )
    (due,) = review(gpus, [told], consenting(), date(2027, 1, 23))
    assert due.due == "release"


def test_gpus_used_after_the_final_notice_need_a_new_one() -> None:
    told = holding(PCI, **{state.IDLE_FINAL: "2027-01-20"})
    # Idle again only since the 21st: the final notice of the 20th was about another stretch.
    (hold,) = review([idle(date(2027, 1, 21))], [told], consenting(), date(2027, 1, 30))
    assert hold.due == "final" and hold.release_on == date(2027, 2, 2)
    # Not idle now at all: nothing is due, however old the final notice.
    assert review([], [told], consenting(), date(2027, 1, 30)) == []


def test_a_container_with_one_gpu_in_use_is_not_idle() -> None:
    two = holding(PCI, OTHER, **{state.IDLE_FINAL: "2027-01-11"})
    assert review([idle(date(2027, 1, 1))], [two], consenting(), TODAY) == []
    both = [idle(date(2027, 1, 1)), idle(date(2027, 1, 3), OTHER)]
    (hold,) = review(both, [two], consenting(), TODAY)
    assert hold.pcis == (PCI, OTHER) and hold.since == date(2027, 1, 3)
    assert hold.due == "release"


def test_released_stopped_retired_and_unmanaged_containers_are_left_alone() -> None:
    gpus = [idle(date(2027, 1, 1))]
    released = holding(PCI, **{state.RELEASED: "2027-01-15 idle"})
    stopped = Instance("alice-thesis", "Stopped", holding(PCI).config, holding(PCI).devices)
    retired = holding(PCI, **{state.RETIRED: "2027-01-02"})
    foreign = Instance("alice-thesis", "Running", {}, holding(PCI).devices)
    for inst in (released, stopped, retired, foreign):
        assert review(gpus, [inst], consenting(), TODAY) == [], inst


def test_a_renewal_past_the_lease_at_release_gives_the_gpus_back() -> None:
    labels = {
        state.RELEASED: "2027-01-15 idle",
        state.IDLE_LEASE: container().config[state.EXPIRES],
    }
    assert renewed([holding(PCI, **labels)]) == []
    later = {**labels, state.EXPIRES: "2027-12-31"}
    assert renewed([holding(PCI, **later)]) == ["alice-thesis"]
    # Handed back by the owner (`/ssp stop`): only `/ssp start` undoes that.
    by_owner = {**later, state.RELEASED: "2027-01-15 owner"}
    assert renewed([holding(PCI, **by_owner)]) == []
