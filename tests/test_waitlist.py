"""The waitlist in the pure plan: a merged request whose GPUs are taken waits (a `Wait`, not a
refusal) with its place in line by merge order; when GPUs come free the first in line gets
them, whatever the paths; a later request fits only in GPUs no earlier one can use
(backfill that never delays the first); a container whose GPUs were handed back waits for
nothing, and once started asks for them in line by its request's merge order.

Built like tests/test_plan.py: the sample config (four RTX 4090s), real request files,
`make_plan` with `merged` (request path → merge position) as apply reads it from git.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date

import pytest
from fakelxd import Lab
from test_plan import applied, by_name, converged, gpu, gpu_indices, plan, spec_of, unmanaged

from provisioner.values.plandata import Create, Ready, Update, Wait
from provisioner.values.state import EXPIRES, RELEASED

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("keys"))


def path(owner: str, name: str) -> str:
    return f"requests/{owner}/{name}.yaml"


def waiting(p: object, name: str) -> Wait:
    action = by_name(p)[name]  # type: ignore[arg-type]
    assert isinstance(action, Wait), action
    return action


def test_the_first_merged_gets_the_free_gpu_though_a_later_one_sorts_first_by_path(
    lab: Lab,
) -> None:
    # An admin's instance holds GPUs 0-2; one is free. carol's request was merged first,
    # bob's later: bob's path sorts first, but carol is first in line.
    admin = unmanaged("admin-box", a=gpu(0), b=gpu(1), c=gpu(2))
    v = lab.validate(
        lab.container("carol-z", owner="carol", gpus=1),
        lab.container("bob-a", owner="bob", gpus=1),
    )
    merged = {path("carol", "carol-z"): 1, path("bob", "bob-a"): 2}
    p = plan(v, [admin], merged=merged)
    assert isinstance(by_name(p)["carol-z"], Create) and gpu_indices(by_name(p)["carol-z"]) == (3,)
    bob = waiting(p, "bob-a")
    assert (bob.place, bob.message) == (1, "only 0 of the 1 GPUs asked for are free")
    assert bob.line == "1st in line"  # the admin's instance has no lease: no day to promise


def test_places_follow_merge_order_and_the_freed_gpu_goes_to_the_first(lab: Lab) -> None:
    admin = unmanaged("admin-box", a=gpu(0), b=gpu(1), c=gpu(2), d=gpu(3))
    requests = (
        lab.container("alice-a", gpus=1),
        lab.container("bob-b", owner="bob", gpus=1),
        lab.container("carol-c", owner="carol", gpus=1),
    )
    merged = {path("carol", "carol-c"): 1, path("alice", "alice-a"): 2, path("bob", "bob-b"): 3}
    p = plan(lab.validate(*requests), [admin], merged=merged)
    assert [waiting(p, n).place for n in ("carol-c", "alice-a", "bob-b")] == [1, 2, 3]
    # The admin hands GPU 2 back: carol, first in line, gets it; the others move up.
    fewer = replace(admin, devices={k: d for k, d in admin.devices.items() if k != "c"})
    after = plan(lab.validate(*requests), [fewer], merged=merged)
    assert gpu_indices(by_name(after)["carol-c"]) == (2,)
    assert [waiting(after, n).place for n in ("alice-a", "bob-b")] == [1, 2]


def test_a_later_count_does_not_jump_ahead_into_the_gpus_the_first_waits_for(lab: Lab) -> None:
    # carol waits for 2 GPUs with one free (GPU 3): it stays free for her, so bob's later
    # request for 1, which would fit, waits behind her (strict for GPUs she can use).
    admin = unmanaged("admin-box", a=gpu(0), b=gpu(1), c=gpu(2))
    v = lab.validate(
        lab.container("carol-c", owner="carol", gpus=2),
        lab.container("bob-b", owner="bob", gpus=1),
    )
    merged = {path("carol", "carol-c"): 1, path("bob", "bob-b"): 2}
    p = plan(v, [admin], merged=merged)
    assert waiting(p, "carol-c").place == 1
    assert waiting(p, "bob-b").place == 2


def test_a_later_request_may_use_gpus_the_first_in_line_cannot(lab: Lab) -> None:
    # carol's pin waits for GPU 0, which alice's count holds until her lease ends; bob's
    # later count fits in GPU 1 without delaying carol (Slurm's backfill rule).
    holder = converged(lab, lab.container("alice-x", gpus=1))
    v = lab.validate(
        lab.container("alice-x", gpus=1),
        lab.container("carol-c", owner="carol", gpus=[0]),
        lab.container("bob-b", owner="bob", gpus=1),
    )
    merged = {path("alice", "alice-x"): 1, path("carol", "carol-c"): 2, path("bob", "bob-b"): 3}
    p = plan(v, holder, merged=merged)
    carol = waiting(p, "carol-c")
    assert (carol.place, carol.gpus, carol.gpu_holders) == (1, (0,), ("alice-x",))
    # GPU 0 frees the day after alice's last day (the sample lease ends 2027-06-30)
    assert carol.frees == date(2027, 7, 1)
    assert carol.line == "1st in line; GPU 0 frees on 2027-07-01"
    assert isinstance(by_name(p)["bob-b"], Create) and gpu_indices(by_name(p)["bob-b"]) == (1,)


def test_the_gpu_of_a_lease_that_ended_is_waited_for_until_its_holder_is_stopped(
    lab: Lab,
) -> None:
    # alice's lease ended (her request is expired, not valid): her container still holds
    # GPU 0 until this pass retires it, so carol's pin waits, due the day after the lease.
    (alice,) = converged(lab, lab.container("alice-x", gpus=[0]))
    ended = replace(alice, config={**alice.config, EXPIRES: "2026-11-27"})
    v = lab.validate(
        lab.container("alice-x", gpus=[0], expires=date(2026, 11, 27)),
        lab.container("carol-c", owner="carol", gpus=[0]),
    )
    p = plan(v, [ended], merged={path("carol", "carol-c"): 2})
    carol = waiting(p, "carol-c")
    assert (carol.place, carol.gpus, carol.frees) == (1, (0,), date(2026, 11, 28))
    assert by_name(p)["alice-x"].kind == "retire"


def test_released_gpus_go_to_the_first_in_line_and_a_restart_waits_by_merge_order(
    lab: Lab,
) -> None:
    # alice's count holds GPUs 0-1; an admin's instance holds 2-3; carol waits for 2.
    (alice,) = converged(lab, lab.container("alice-x", gpus=2))
    admin = unmanaged("admin-box", a=gpu(2), b=gpu(3))
    requests = (lab.container("alice-x", gpus=2), lab.container("carol-c", owner="carol", gpus=2))
    merged = {path("alice", "alice-x"): 1, path("carol", "carol-c"): 2}
    before = plan(lab.validate(*requests), [alice, admin], merged=merged)
    assert waiting(before, "carol-c").place == 1
    # alice's GPUs are released (`/ssp stop`, an idle release): carol gets them now.
    released = replace(alice, config={**alice.config, RELEASED: "2026-11-28 idle"})
    p = plan(lab.validate(*requests), [released, admin], merged=merged)
    assert isinstance(by_name(p)["carol-c"], Create) and gpu_indices(by_name(p)["carol-c"]) == (
        0,
        1,
    )
    assert isinstance(by_name(p)["alice-x"], Update) and gpu_indices(by_name(p)["alice-x"]) == ()
    # carol runs with them; alice is started again (the mark cleared, no GPU devices): she
    # asks for two, none is free, and she waits, 1st in line by her request's merge order.
    carol = applied(by_name(p)["carol-c"].spec)  # type: ignore[union-attr]
    bare = applied(
        spec_of(lab, lab.container("alice-x", gpus=2)),
        devices={k: None for k, d in alice.devices.items() if d.get("type") == "gpu"},
    )
    started = plan(lab.validate(*requests), [bare, carol, admin], merged=merged)
    assert isinstance(by_name(started)["carol-c"], Ready)  # GPUs never move under her
    again = waiting(started, "alice-x")
    assert (again.place, again.message) == (1, "only 0 of the 2 GPUs asked for are free")
    assert again.exists  # it keeps running without GPUs meanwhile; carol's never waited so
    assert not waiting(before, "carol-c").exists
    assert again.gpus == (0, 1, 2, 3)  # carol's first: her lease ends, the admin's never
