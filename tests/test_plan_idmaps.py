"""The plan gives every container its own host ID block, keeps it, and repairs overlaps.

Built like test_plan: the sample policy, real request files, observed instances as apply
leaves them; the other projects' instances come in `id_maps` as the adapter lists them.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from fakelxd import Lab
from test_plan import applied, inputs, plan

from provisioner.planning.allocate import NO_IDS
from provisioner.planning.plan import make_plan
from provisioner.values import idranges
from provisioner.values.idranges import IdMapUse, IdRange
from provisioner.values.plandata import Create, Ready, Refuse, Update

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

SPAN = IdRange(165536, 20 * 65536)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("keys"))


def block(action: Any) -> IdRange:
    found = idranges.pinned(action.spec.config)
    assert found is not None, action
    return found


def test_new_containers_get_distinct_blocks_inside_roots_range(lab: Lab) -> None:
    reqs = [lab.container(f"{o}-{n}", owner=o, gpus=0) for o in ("alice", "bob") for n in "ab"]
    reqs += [lab.container(f"carol-{n}", owner="carol", gpus=0) for n in "ab"]
    p = plan(lab.validate(*reqs), id_spans=(SPAN,))
    blocks = [block(a) for a in p.actions if isinstance(a, Create)]
    assert len(blocks) == 6
    assert all(b.within(SPAN) and b.size == 65536 for b in blocks)
    assert not any(a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])


def test_a_new_block_keeps_clear_of_other_projects_and_unmanaged_instances(lab: Lab) -> None:
    others = (
        IdMapUse("default", "web", True, IdRange(165536), IdRange(165536)),
        IdMapUse("lab2", "old", True, None, IdRange(231072)),
    )
    v = lab.validate(lab.container("alice-x"))
    (create,) = plan(v, id_spans=(SPAN,), id_maps=others).actions
    assert block(create) == IdRange(296608)  # after the two taken blocks


def test_a_container_keeps_its_block_and_a_second_plan_changes_nothing(lab: Lab) -> None:
    v = lab.validate(lab.container("alice-x", gpus=0))
    (create,) = plan(v, id_spans=(SPAN,)).actions
    assert isinstance(create, Create)
    inst = applied(create.spec)
    # another instance appearing in front of it does not move it
    early = IdMapUse("default", "early", True, None, IdRange(100000))
    (again,) = plan(v, [inst], id_spans=(SPAN,), id_maps=(early,)).actions
    assert isinstance(again, Ready)
    assert block(again) == block(create)


def test_a_new_container_never_takes_the_block_of_an_existing_one(lab: Lab) -> None:
    # "alice-a" sorts before "alice-z"; alice-z exists with the first block of the span.
    z = lab.container("alice-z", gpus=0)
    (made,) = plan(lab.validate(z), id_spans=(SPAN,)).actions
    assert isinstance(made, Create) and block(made) == IdRange(SPAN.base)
    v = lab.validate(lab.container("alice-a", gpus=0), z)
    p = plan(v, [applied(made.spec)], id_spans=(SPAN,))
    by_name = {a.name: a for a in p.actions}
    assert isinstance(by_name["alice-z"], Ready)
    assert block(by_name["alice-a"]) != IdRange(SPAN.base)


def test_two_managed_containers_sharing_a_block_the_later_one_moves_and_restarts(
    lab: Lab,
) -> None:
    """What LXD 5.0.2 did with two creates at once: the same volatile.idmap.base twice."""
    a, b = lab.container("alice-a", gpus=0), lab.container("alice-b", gpus=0)
    v = lab.validate(a, b)
    made = {x.name: x for x in plan(v, id_spans=(SPAN,)).actions if isinstance(x, Create)}
    shared = str(block(made["alice-a"]).base)
    # both made before ssp pinned blocks: only LXD's record says where they are, the same
    lxd_map = idranges_json(int(shared))
    observed = [
        applied(
            made[n].spec,
            config={
                "security.idmap.base": None,
                "security.idmap.size": None,
                "volatile.idmap.current": lxd_map,
                "volatile.idmap.next": lxd_map,
            },
        )
        for n in ("alice-a", "alice-b")
    ]
    p = plan(v, observed, id_spans=(SPAN,))
    first, second = (next(x for x in p.actions if x.name == n) for n in ("alice-a", "alice-b"))
    assert isinstance(first, Update) and not first.restart
    assert block(first) == IdRange(int(shared))
    assert first.reasons == (f"host IDs pinned at {block(first)}",)
    assert isinstance(second, Update) and second.restart
    assert not block(second).overlaps(block(first))
    assert second.reasons == (
        f"its host IDs {block(first)} overlapped another instance's: moved to "
        f"{block(second)} (restarts the container)",
    )


def test_a_block_outside_roots_range_moves(lab: Lab) -> None:
    v = lab.validate(lab.container("alice-x", gpus=0))
    (made,) = plan(v, id_spans=(SPAN,)).actions
    outside = idranges_json(50_000_000)
    inst = applied(
        made.spec,
        config={
            "security.idmap.base": "50000000",
            "volatile.idmap.current": outside,
            "volatile.idmap.next": outside,
        },
    )
    (update,) = plan(v, [inst], id_spans=(SPAN,)).actions
    assert isinstance(update, Update) and update.restart
    assert block(update).within(SPAN)
    assert "were outside root's subordinate IDs" in update.reasons[0]


def test_no_room_left_refuses_the_new_container_only(lab: Lab) -> None:
    tiny = IdRange(165536, 65536)  # room for one block
    v = lab.validate(lab.container("alice-a", gpus=0), lab.container("alice-b", gpus=0))
    actions = {a.name: a for a in make_plan(inputs(v, id_spans=(tiny,))).actions}
    assert isinstance(actions["alice-a"], Create)
    refused = actions["alice-b"]
    assert isinstance(refused, Refuse) and refused.message == NO_IDS


def test_a_half_made_instances_block_is_reused_when_it_is_made_again(lab: Lab) -> None:
    v = lab.validate(lab.container("alice-x", gpus=0))
    (made,) = plan(v, id_spans=(SPAN,)).actions
    half = applied(made.spec, "Stopped", config={"user.ssp.state": "creating"})
    (again,) = plan(v, [half], id_spans=(SPAN,)).actions
    assert isinstance(again, Create) and again.replace_half_made
    assert block(again) == block(made)


def idranges_json(base: int) -> str:
    import json  # noqa: PLC0415

    return json.dumps(
        [
            {"Isuid": True, "Isgid": False, "Hostid": base, "Nsid": 0, "Maprange": 65536},
            {"Isuid": False, "Isgid": True, "Hostid": base, "Nsid": 0, "Maprange": 65536},
        ]
    )
