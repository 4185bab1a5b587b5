"""`ssp doctor`'s cluster checks and `ssp host init`'s cluster lines, on observed values."""

from __future__ import annotations

from provisioner.applying.hostinit import cluster_lines
from provisioner.doctor.checks import Status
from provisioner.doctor.cluster import check_member_pools, check_members
from provisioner.values.models import Host, Inventory
from provisioner.values.state import Pool

GIB = 2**30
TWO = Inventory(hosts={"node1": Host(cpu=8, memory="32GiB"), "node2": Host(cpu=8, memory="32GiB")})
ONE = Inventory(hosts={"super-server": Host(cpu=8, memory="32GiB")})


def test_a_single_server_has_no_cluster_to_check() -> None:
    assert check_members({}, ONE).status is Status.NA
    assert check_member_pools("default", {}).status is Status.NA
    assert cluster_lines({}, ONE) == []


def test_several_servers_in_the_inventory_without_a_cluster_is_a_problem() -> None:
    check = check_members({}, TWO)
    assert check.status is Status.PROBLEM
    assert "lists 2 servers (node1, node2) but LXD here is not clustered" in check.detail


def test_members_online_and_in_the_inventory_are_healthy() -> None:
    check = check_members({"node1": "Online", "node2": "Online"}, TWO)
    assert (check.status, check.detail) == (
        Status.OK,
        "2 members online, each in config/hosts.yaml: node1, node2",
    )


def test_a_member_down_or_missing_from_either_side_is_named() -> None:
    down = check_members({"node1": "Online", "node2": "Offline"}, TWO)
    assert down.status is Status.PROBLEM
    assert down.detail.startswith("node2 is Offline: its containers' requests are reported")
    odd = check_members({"node1": "Online", "gpu3": "Online"}, TWO)
    assert "member(s) gpu3 not in config/hosts.yaml" in odd.detail
    assert "config/hosts.yaml lists node2, which the cluster does not have" in odd.detail


def test_a_member_listed_online_that_does_not_answer_is_a_problem() -> None:
    # LXD 5.0.2 still calls a member Online for about 20 s after it stops.
    error = "read the space of storage pool 'default' on node2: Missing event connection"
    going = check_members({"node1": "Online", "node2": "Online"}, TWO, {"node2": error})
    assert going.status is Status.PROBLEM
    assert going.detail.startswith(f"node2 is listed Online but does not answer ({error})")
    assert "going away or down" in going.detail


def test_each_members_pool_is_checked_for_space() -> None:
    roomy = Pool("default", "zfs", total=1000 * GIB, used=100 * GIB)
    full = Pool("default", "zfs", total=1000 * GIB, used=950 * GIB)
    ok = check_member_pools("default", {"node1": roomy, "node2": roomy})
    assert ok.status is Status.OK and "node2: 900GiB free of 1000GiB" in ok.detail
    bad = check_member_pools("default", {"node1": roomy, "node2": full, "node3": None})
    assert bad.status is Status.PROBLEM
    assert "no pool 'default' on node3" in bad.detail
    assert "pool 'default' on node2 is over 90% full" in bad.detail


def test_host_init_names_the_members_and_what_the_inventory_lacks() -> None:
    lines = cluster_lines({"node1": "Online", "gpu3": "Offline"}, TWO)
    assert lines[0].startswith("cluster: 2 members: gpu3 (Offline), node1 (Online);")
    assert "run `ssp host init` on every member" in lines[0]
    assert lines[1:] == [
        "warning: member(s) gpu3 not in config/hosts.yaml: apply places nothing there",
        "warning: config/hosts.yaml lists node2, which the cluster does not have: requests "
        "with that host: are refused",
    ]
