"""The warm pool's planning (provisioner.planning.warm), pure: which clones maintenance keeps,
makes and removes; which new container claims one, with the clone's ID block; when the claim
may skip LXD's re-own. Built like test_plan_idmaps: the sample policy, real request files.
"""

from __future__ import annotations

import dataclasses
import shutil
from typing import Any

import pytest
from fakelxd import Lab
from test_plan import inputs

from provisioner.planning import warm
from provisioner.planning.plan import make_plan
from provisioner.values import idranges, state
from provisioner.values.idranges import IdMapUse, IdRange
from provisioner.values.plandata import Create
from provisioner.values.state import Instance

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

SPAN = IdRange(165536, 20 * 65536)
PROJECT = "ssp"
FIRST = IdRange(SPAN.base)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("keys"))


def clone(
    index: int, block: IdRange | None = FIRST, status: str = "ready", **extra: str
) -> Instance:
    config = {
        state.WARM: "common-server",
        state.WARM_SOURCE: "Common-Server/golden",
        state.WARM_STATE: status,
        state.WARM_IDS: "0,4,42,100,65534",
        "security.idmap.isolated": "true",
        **extra,
    }
    if block is not None:
        config[idranges.BASE], config[idranges.SIZE_KEY] = str(block.base), str(block.size)
    return Instance(warm.clone_name(PROJECT, index), "Stopped", config)


def use(inst: Instance) -> IdMapUse:
    return idranges.use_of(PROJECT, inst.name, inst.config)


def with_pool(v: Any, size: int) -> Any:
    policy = v.config.policy
    lxd = policy.lxd.model_copy(update={"warm_pool": size, "project": PROJECT})
    config = dataclasses.replace(v.config, policy=policy.model_copy(update={"lxd": lxd}))
    return dataclasses.replace(v, config=config)


def test_a_new_container_claims_a_ready_clone_and_keeps_its_block(lab: Lab) -> None:
    ready = clone(1, IdRange(SPAN.base + 3 * 65536))
    v = lab.validate(lab.container("alice-x", gpus=0), lab.container("bob-y", owner="bob", gpus=0))
    p = make_plan(inputs(v, [ready], id_spans=(SPAN,), id_maps=(use(ready),)))
    creates = {a.name: a for a in p.actions if isinstance(a, Create)}
    # The first in the plan's order claims it, with the clone's block (its files are there).
    assert creates["alice-x"].warm == ready.name
    assert idranges.pinned(creates["alice-x"].spec.config) == IdRange(SPAN.base + 3 * 65536)
    assert "claims warm clone" in creates["alice-x"].detail
    # The other is copied as before, in a block of its own, clear of the clone's.
    assert creates["bob-y"].warm == ""
    other = idranges.pinned(creates["bob-y"].spec.config)
    assert other is not None and not other.overlaps(IdRange(SPAN.base + 3 * 65536))


@pytest.mark.parametrize(
    "found",
    [
        clone(1, status="making"),  # half-made: never claimed
        clone(1, **{state.WARM_SOURCE: "Old-Base/golden"}),  # the policy's base changed
        dataclasses.replace(clone(1), status="Running"),
        clone(1, block=None),  # LXD chose its block, but ssp chooses here
    ],
)
def test_a_clone_that_is_not_ready_for_this_request_is_not_claimed(
    lab: Lab, found: Instance
) -> None:
    v = lab.validate(lab.container("alice-x", gpus=0))
    (create,) = make_plan(inputs(v, [found], id_spans=(SPAN,), id_maps=(use(found),))).actions
    assert isinstance(create, Create) and create.warm == ""


def test_a_request_of_another_image_does_not_claim(lab: Lab) -> None:
    v = lab.validate(lab.container("alice-x", gpus=0, image="ubuntu-24.04"))
    found = clone(1)
    (create,) = make_plan(inputs(v, [found], id_spans=(SPAN,), id_maps=(use(found),))).actions
    assert isinstance(create, Create) and create.warm == ""


def test_a_clone_renamed_by_a_claim_that_did_not_finish_is_remade(lab: Lab) -> None:
    half = dataclasses.replace(clone(1), name="alice-x")
    v = lab.validate(lab.container("alice-x", gpus=0))
    (create,) = make_plan(inputs(v, [half], id_spans=(SPAN,))).actions
    assert isinstance(create, Create) and create.replace_half_made


def test_maintenance_makes_the_missing_clones_in_free_blocks(lab: Lab) -> None:
    v = with_pool(lab.validate(), 3)
    kept = clone(2, IdRange(SPAN.base))
    other = IdMapUse("default", "web", True, IdRange(SPAN.base + 65536), None)
    plan = warm.refill(v.config.policy, [kept], [use(kept), other], [SPAN], pin_ids=True)
    assert plan.keep == (kept.name,) and plan.remove == ()
    names = [n for n, _ in plan.make]
    assert names == [warm.clone_name(PROJECT, 1), warm.clone_name(PROJECT, 3)]
    blocks = [b for _, b in plan.make]
    assert blocks == [IdRange(SPAN.base + 2 * 65536), IdRange(SPAN.base + 3 * 65536)]


def test_maintenance_removes_half_made_stale_and_surplus_clones(lab: Lab) -> None:
    v = with_pool(lab.validate(), 1)
    found = [
        clone(1, status="making"),
        clone(2, IdRange(SPAN.base + 65536)),
        clone(3, IdRange(SPAN.base + 2 * 65536)),
        clone(4, IdRange(SPAN.base + 3 * 65536), **{state.WARM_SOURCE: "Old/golden"}),
    ]
    plan = warm.refill(v.config.policy, found, [use(i) for i in found], [SPAN], pin_ids=True)
    assert plan.keep == (found[1].name,)
    assert set(plan.remove) == {found[0].name, found[2].name, found[3].name}
    assert plan.make == ()


def test_a_pool_of_zero_removes_every_clone_and_makes_none(lab: Lab) -> None:
    v = with_pool(lab.validate(), 0)
    plan = warm.refill(v.config.policy, [clone(1)], [use(clone(1))], [SPAN], pin_ids=True)
    assert plan.remove == (clone(1).name,) and plan.make == ()


def test_lxd_chooses_the_block_where_ssp_may_not(lab: Lab) -> None:
    v = with_pool(lab.validate(), 1)
    plan = warm.refill(v.config.policy, [], [], [SPAN], pin_ids=False)
    assert plan.make == ((warm.clone_name(PROJECT, 1), None),)


def test_warm_names_can_never_be_a_request_name() -> None:
    name = warm.clone_name(PROJECT, 1)
    assert name.startswith("Warm-") and name != name.lower()
    assert warm.clone_name("lab2", 1) != name  # projects share the bridge's DNS names


def _spec(lab: Lab, shares: bool) -> Any:
    fields = {"shares": ["share"]} if shares else {}
    v = lab.validate(lab.container("alice-x", gpus=0, **fields))
    (create,) = make_plan(inputs(v, id_spans=(SPAN,))).actions
    assert isinstance(create, Create)
    return create.spec


def test_the_claim_skips_the_reown_only_when_no_file_has_the_owners_id(lab: Lab) -> None:
    spec = _spec(lab, shares=True)
    uid = spec.uid
    assert spec.config["raw.idmap"] == f"both {uid} {uid}"
    assert warm.skip_reown(dict(clone(1).config), spec)
    owned = dict(clone(1).config) | {state.WARM_IDS: f"0,{uid}"}
    assert not warm.skip_reown(owned, spec)  # a file of the base is the owner's ID
    unknown = dict(clone(1).config) | {state.WARM_IDS: ""}
    assert not warm.skip_reown(unknown, spec)  # the scan did not run (no `find -printf`)
    # No share, no raw.idmap: the map is the clone's own, LXD re-owns nothing anyway.
    assert not warm.skip_reown(dict(clone(1).config), _spec(lab, shares=False))
