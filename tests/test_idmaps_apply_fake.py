"""Host ID blocks in a project that forbids ssp's choice: one create at a time, and checked.

ssp's own restricted project refuses `security.idmap.base` (a low-level key), so LXD chooses
the blocks there. The in-memory LXD plays LXD 5.0.2's fault on demand (`forced_blocks`: the
next create gets a block another instance holds): apply must find it before the container
ever starts, remove it and make it again.
"""

from __future__ import annotations

import shutil

import pytest
from fakelxd import NOW, FakeLxd, Lab

from provisioner.flows.reconcile import Pass, run_pass
from provisioner.values import idranges

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def fake() -> FakeLxd:
    fake = FakeLxd.seeded()
    fake.daemon.low_level_blocked.add("ssp")
    return fake


def apply(lab: Lab, fake: FakeLxd, *requests: tuple[str, bytes]) -> Pass:
    v = lab.validate(*requests)
    return run_pass(v, fake, fake.servers, now=NOW, sha="", pin_ids=False)


def block(fake: FakeLxd, name: str) -> idranges.IdRange | None:
    return idranges.use_of("ssp", name, fake.record(name).config).current


def test_a_restricted_project_refuses_ssps_choice_so_none_is_sent(lab: Lab, fake: FakeLxd) -> None:
    done = apply(lab, fake, lab.container("alice-a", gpus=0))
    assert done.result.ok, done.result.outcomes
    assert idranges.BASE not in fake.record("alice-a").config
    assert block(fake, "alice-a") is not None
    # and had ssp sent it, LXD would have said no
    v = lab.validate(lab.container("alice-b", gpus=0))
    pinned = run_pass(v, fake, fake.servers, now=NOW, sha="")
    (o,) = [x for x in pinned.result.outcomes if x.name == "alice-b"]
    assert not o.ok and 'low-level config "security.idmap.base"' in o.message


def test_a_block_lxd_gave_twice_is_found_before_start_and_made_again(
    lab: Lab, fake: FakeLxd
) -> None:
    a = lab.container("alice-a", gpus=0)
    assert apply(lab, fake, a).result.ok
    held = block(fake, "alice-a")
    assert held is not None
    fake.daemon.forced_blocks.append(held.base)  # LXD's fault: alice-b gets alice-a's block
    done = apply(lab, fake, a, lab.container("alice-b", gpus=0))
    assert {o.name: (o.action, o.ok) for o in done.result.outcomes} == {
        "alice-a": ("unchanged", True),
        "alice-b": ("created", True),
    }
    creates = [n for m, n in fake.calls if m == "create"]
    assert creates.count("alice-b") == 2  # removed and made again, never started in between
    again = block(fake, "alice-b")
    assert again is not None and not again.overlaps(held)
    assert idranges.overlaps(fake.id_maps()) == []


def test_a_block_that_keeps_clashing_fails_that_request_only_and_leaves_nothing(
    lab: Lab, fake: FakeLxd
) -> None:
    a = lab.container("alice-a", gpus=0)
    assert apply(lab, fake, a).result.ok
    held = block(fake, "alice-a")
    assert held is not None
    fake.daemon.forced_blocks += [held.base] * 3
    done = apply(lab, fake, a, lab.container("alice-b", gpus=0))
    outcomes = {o.name: o for o in done.result.outcomes}
    assert (outcomes["alice-a"].action, outcomes["alice-a"].ok) == ("unchanged", True)
    failed = outcomes["alice-b"]
    assert (failed.action, failed.ok) == ("failed", False)
    assert failed.message == (
        "LXD gave alice-b host IDs that another instance has (ssp/alice-a's, around "
        f"{held}) 3 times; it was removed: see `ssp doctor` (idmaps.overlap)"
    )
    assert "alice-b" not in fake.daemon.projects["ssp"]


def test_containers_sharing_a_block_in_a_restricted_project_are_reported(
    lab: Lab, fake: FakeLxd
) -> None:
    a, b = lab.container("alice-a", gpus=0), lab.container("alice-b", gpus=0)
    assert apply(lab, fake, a, b).result.ok
    # made by an older ssp, which left the choice to LXD and sent creates at once
    shared = fake.record("alice-a").config["volatile.idmap.next"]
    for key in ("volatile.idmap.next", "volatile.idmap.current"):
        fake.record("alice-b").config[key] = shared
    done = apply(lab, fake, a, b)
    assert [(d.name, d.message.split(" (")[0]) for d in done.plan.drift] == [
        ("alice-a", "shares host IDs with ssp/alice-b")
    ]
