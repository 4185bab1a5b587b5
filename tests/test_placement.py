"""Placement: which cluster member a new container goes to, and that placed ones never move."""

from __future__ import annotations

from provisioner.planning.placement import Need, Placement, Usage, place
from provisioner.values.models import GpuEntry, Host
from provisioner.values.sizes import size_bytes

GIB = 2**30


def gpu(index: int, pci: str, model: str = "NVIDIA GeForce RTX 4090") -> GpuEntry:
    return GpuEntry(
        index=index,
        model=model,
        pci=pci,
        uuid=f"GPU-{index:08x}-0000-4000-8000-{int(pci[5:7], 16):012x}",
        memory="24564MiB",
    )


# Two servers of the same make: the same PCI addresses, told apart by member.
SAME_SLOTS = ("0000:18:00.0", "0000:3b:00.0")
MEMBERS = {
    "node1": Host(cpu=64, memory="256GiB", disk="4TiB", gpus=[gpu(0, SAME_SLOTS[0])]),
    "node2": Host(
        cpu=32,
        memory="128GiB",
        disk="2TiB",
        gpus=[
            gpu(0, SAME_SLOTS[0], "NVIDIA A100 80GB PCIe"),
            gpu(1, SAME_SLOTS[1], "NVIDIA A100 80GB PCIe"),
        ],
    ),
}


def small(name: str, **kw: object) -> Need:
    base: dict[str, object] = {"cpu": 4, "memory": 16 * GIB, "disk": 100 * GIB}
    return Need(name=name, **{**base, **kw})  # type: ignore[arg-type]


def where(result: Placement) -> dict[str, str]:
    return {name: p.member for name, p in result.placed.items()}


def test_host_given_is_where_it_goes_even_without_the_most_room() -> None:
    result = place([small("a", host="node2")], MEMBERS, existing={})
    assert where(result) == {"a": "node2"}
    assert result.placed["a"].why == "host: node2"


def test_a_gpu_count_goes_to_the_member_that_has_that_many_free() -> None:
    result = place([small("a", gpus=2)], MEMBERS, existing={})
    assert where(result) == {"a": "node2"}
    assert [g.index for g in result.placed["a"].gpus] == [0, 1]


def test_a_gpu_model_picks_the_member_with_that_model() -> None:
    rtx = place([small("a", gpus=1, gpu_model="NVIDIA GeForce RTX 4090")], MEMBERS, existing={})
    a100 = place([small("b", gpus=1, gpu_model="NVIDIA A100 80GB PCIe")], MEMBERS, existing={})
    assert where(rtx) == {"a": "node1"}
    assert where(a100) == {"b": "node2"}


def test_gpus_taken_on_one_member_are_not_taken_on_the_other_with_the_same_slot() -> None:
    # node1's only GPU at 0000:18:00.0 is held; node2's card in the same slot is free.
    usage = {"node1": Usage(gpus=frozenset({SAME_SLOTS[0]})), "node2": Usage()}
    result = place([small("a", gpus=1)], MEMBERS, existing={}, usage=usage)
    assert where(result) == {"a": "node2"}
    assert result.placed["a"].gpus[0].pci == SAME_SLOTS[0]


def test_gpus_reserved_in_the_same_pass_send_the_next_request_elsewhere() -> None:
    result = place([small("a", gpus=2), small("b", gpus=1)], MEMBERS, existing={})
    assert where(result) == {"a": "node2", "b": "node1"}


def test_without_gpus_the_member_with_the_most_room_left_wins() -> None:
    # node1 has twice node2's size, so the same container leaves it a larger share.
    assert where(place([small("a")], MEMBERS, existing={})) == {"a": "node1"}
    busy = {"node1": Usage(cpu=60), "node2": Usage()}
    assert where(place([small("a")], MEMBERS, existing={}, usage=busy)) == {"a": "node2"}


def test_memory_and_disk_headroom_count_too_not_only_cpu() -> None:
    full_memory = {"node1": Usage(memory=250 * GIB), "node2": Usage()}
    full_disk = {"node1": Usage(disk=size_bytes("4TiB") - 120 * GIB), "node2": Usage()}
    assert where(place([small("a")], MEMBERS, {}, usage=full_memory)) == {"a": "node2"}
    assert where(place([small("a")], MEMBERS, {}, usage=full_disk)) == {"a": "node2"}


def test_pinned_indices_go_where_those_gpus_exist_and_are_free() -> None:
    result = place([small("a", pinned=(1,))], MEMBERS, existing={})
    assert where(result) == {"a": "node2"}
    assert [g.index for g in result.placed["a"].gpus] == [1]


def test_a_placed_container_never_moves_whatever_its_request_says_now() -> None:
    result = place([small("a", host="node1", gpus=2)], MEMBERS, existing={"a": "node2"})
    assert where(result) == {"a": "node2"}
    assert not result.placed["a"].new
    assert result.placed["a"].why == "already on node2"


def test_a_member_that_is_down_gets_no_new_container_unless_asked_by_host() -> None:
    down = frozenset({"node2"})
    auto = place([small("a", gpus=2)], MEMBERS, existing={}, down=down)
    asked = place([small("b", host="node2")], MEMBERS, existing={}, down=down)
    assert auto.unplaced == {"a": "no server that is up has 2 GPU(s) free"}
    assert where(asked) == {"b": "node2"}


def test_no_member_with_room_is_refused_with_the_reason() -> None:
    huge = small("a", cpu=100)
    result = place([huge], MEMBERS, existing={})
    assert not result.placed
    assert "too little CPU, memory or disk" in result.unplaced["a"]
    unknown = place([small("b", host="node9")], MEMBERS, existing={})
    assert unknown.unplaced == {"b": "host 'node9' is not in config/hosts.yaml"}


def test_the_result_does_not_depend_on_the_order_members_are_listed() -> None:
    reordered = dict(reversed(list(MEMBERS.items())))
    needs = [small("a", gpus=1), small("b"), small("c", gpus=1), small("d")]
    assert where(place(needs, reordered, {})) == where(place(needs, MEMBERS, {}))
