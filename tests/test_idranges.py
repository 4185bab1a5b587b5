"""Host ID blocks: LXD's map records read right, overlaps found, blocks chosen clear of all.

The JSON maps below are what LXD 5.0.2 wrote on this project's development host: an isolated
container with `raw.idmap: both 1001 1001` (its block cut in three around the member's UID),
and the non-isolated Common-Server base sharing the default map.
"""

from __future__ import annotations

import json

import pytest

from provisioner.values import idranges, subids
from provisioner.values.idranges import Allocator, IdMapUse, IdRange, overlaps, use_of

SPLIT = json.dumps(
    [
        {"Isuid": True, "Isgid": False, "Hostid": 400000, "Nsid": 0, "Maprange": 1001},
        {"Isuid": True, "Isgid": True, "Hostid": 1001, "Nsid": 1001, "Maprange": 1},
        {"Isuid": True, "Isgid": False, "Hostid": 401002, "Nsid": 1002, "Maprange": 64534},
        {"Isuid": False, "Isgid": True, "Hostid": 400000, "Nsid": 0, "Maprange": 1001},
        {"Isuid": True, "Isgid": True, "Hostid": 1001, "Nsid": 1001, "Maprange": 1},
        {"Isuid": False, "Isgid": True, "Hostid": 401002, "Nsid": 1002, "Maprange": 64534},
    ]
)
DEFAULT_MAP = json.dumps(
    [
        {"Isuid": True, "Isgid": False, "Hostid": 100000, "Nsid": 0, "Maprange": 10000001},
        {"Isuid": False, "Isgid": True, "Hostid": 100000, "Nsid": 0, "Maprange": 10000001},
    ]
)


def isolated(base: int, name: str = "c", project: str = "ssp") -> IdMapUse:
    return IdMapUse(project, name, True, IdRange(base), IdRange(base))


def test_a_block_cut_by_a_members_uid_is_read_as_one_block_of_65536() -> None:
    use = use_of(
        "ssp", "alice-x", {"security.idmap.isolated": "true", "volatile.idmap.next": SPLIT}
    )
    assert use.next == IdRange(400000, 65536)
    assert use.current is None  # never started: no current map yet
    assert str(use.next) == "400000-465535"


def test_a_non_isolated_instance_holds_the_first_65536_ids_of_the_default_map() -> None:
    config = {"volatile.idmap.current": DEFAULT_MAP, "volatile.idmap.next": DEFAULT_MAP}
    use = use_of("default", "Common-Server", config)
    assert not use.isolated
    assert use.ranges() == (IdRange(100000, 65536),)
    assert use.label == "Common-Server"


def test_a_pending_change_holds_both_the_running_and_the_next_block() -> None:
    moved = SPLIT.replace("400000", "500000").replace("401002", "501002")
    config = {
        "security.idmap.isolated": "true",
        "volatile.idmap.current": SPLIT,
        "volatile.idmap.next": moved,
    }
    assert use_of("ssp", "x", config).ranges() == (IdRange(400000), IdRange(500000))


@pytest.mark.parametrize("broken", ["", "not json", "{}", "[1, 2]", '[{"Isuid": true}]'])
def test_a_missing_or_broken_map_record_reads_as_none(broken: str) -> None:
    use = use_of("ssp", "x", {"security.idmap.isolated": "true", "volatile.idmap.next": broken})
    assert use.ranges() == ()


def test_pinned_reads_security_idmap_base_and_size() -> None:
    assert idranges.pinned({"security.idmap.base": "300000"}) == IdRange(300000, 65536)
    config = {"security.idmap.base": "300000", "security.idmap.size": "100000"}
    assert idranges.pinned(config) == IdRange(300000, 100000)
    assert idranges.pinned({}) is None
    assert idranges.pinned({"security.idmap.base": "x"}) is None


def test_overlaps_names_isolated_instances_sharing_ids() -> None:
    a, b = isolated(231072, "a"), isolated(231072, "b")
    common = use_of("default", "Common-Server", {"volatile.idmap.current": DEFAULT_MAP})
    found = overlaps([a, b, isolated(300000, "c"), common])
    assert [(o.first.name, o.second.name) for o in found] == [("a", "b")]
    assert "ssp/a and ssp/b share host IDs (around 231072-296607)" in found[0].describe()


def test_an_isolated_block_inside_the_default_maps_first_ids_is_an_overlap() -> None:
    common = use_of("default", "Common-Server", {"volatile.idmap.current": DEFAULT_MAP})
    (found,) = overlaps([common, isolated(120000, "sneaky")])
    assert {found.first.name, found.second.name} == {"Common-Server", "sneaky"}


def test_non_isolated_instances_share_the_default_map_by_design() -> None:
    one = use_of("default", "a", {"volatile.idmap.current": DEFAULT_MAP})
    two = use_of("default", "b", {"volatile.idmap.current": DEFAULT_MAP})
    assert overlaps([one, two]) == []


def test_usable_spans_are_roots_large_ranges_in_both_files_less_the_default_block() -> None:
    spans = idranges.usable_spans([(100000, 10000001), (1000, 100)], [(100000, 10000001)])
    assert spans == (IdRange(165536, 10000001 - 65536),)
    # a range only one file gives is not usable: LXD maps UIDs and GIDs alike
    assert idranges.usable_spans([(100000, 200000)], [(500000, 200000)]) == ()


def test_id_spans_from_the_files_text_and_lxds_default_without_them() -> None:
    text = "_lxd:100000:10000001\nroot:100000:10000001\nroot:1000:100\n"
    assert subids.id_spans(text, text) == (IdRange(165536, 9934465),)
    assert subids.id_spans("", "") == idranges.LXD_DEFAULT_SPANS
    assert (IdRange(1_065_536, 1_000_000_000 - 65536),) == idranges.LXD_DEFAULT_SPANS


def test_the_allocator_takes_the_first_free_block_and_never_the_same_twice() -> None:
    span = IdRange(165536, 10 * 65536)
    alloc = Allocator([span], [IdRange(165536), IdRange(300000)])
    first, second = alloc.new(), alloc.new()
    assert first == IdRange(231072)  # the gap before 300000 holds one block
    assert second == IdRange(365536)  # then past the block at 300000
    assert first is not None and second is not None and not first.overlaps(second)


def test_the_allocator_fills_a_gap_that_fits_and_says_when_nothing_does() -> None:
    span = IdRange(0, 4 * 65536)
    alloc = Allocator([span], [IdRange(0), IdRange(2 * 65536), IdRange(3 * 65536)])
    assert alloc.new() == IdRange(65536)
    assert alloc.new() is None


def test_free_refuses_a_block_outside_the_spans_or_over_a_taken_one() -> None:
    alloc = Allocator([IdRange(100000, 200000)], [IdRange(150000, 10)])
    assert not alloc.free(IdRange(20_000_000))
    assert not alloc.free(IdRange(100000))  # covers 150000
    assert alloc.free(IdRange(150010, 65536))
