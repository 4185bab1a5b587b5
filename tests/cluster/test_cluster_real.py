"""The test cluster itself: both members serve, and a container goes where it is targeted.

Everything the multi-server tests build on: two ONLINE members that share one database, an
image imported once that every member can use, and LXD's `target` placing a container on
the second member, where it runs and gets an address from that member's own bridge.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest
from pylxd import Client

from cluster.conftest import MEMBERS, Cluster, wait_operation

pytestmark = pytest.mark.lxd


def _members(client: Any) -> dict[str, str]:
    body = client.api.cluster.members.get(params={"recursion": 1}).json()
    return {m["server_name"]: m["status"] for m in body["metadata"]}


def test_both_members_are_online_and_either_serves_the_cluster(cluster: Cluster) -> None:
    for member in MEMBERS:
        client = Client(endpoint=cluster.socket(member))
        assert _members(client) == {"node1": "Online", "node2": "Online"}
    assert "node1: LXD answers" in cluster.script("status").stdout


def test_a_container_targeted_at_node2_runs_there_with_an_address_of_its_own(
    cluster: Cluster, cluster_project: str
) -> None:
    client = Client(endpoint=cluster.socket("node1"), project=cluster_project)
    name = f"tgt-{cluster_project.rsplit('-', 1)[-1]}"
    source = {"type": "image", "alias": "ssp-busybox"}
    wait_operation(
        client,
        client.api.instances.post(
            json={"name": name, "source": source}, params={"target": "node2"}
        ),
    )
    wait_operation(client, client.api.instances[name].state.put(json={"action": "start"}))
    # One listing through node1 shows where every instance is, node2's included.
    listed = client.api.instances.get(params={"recursion": 2}).json()["metadata"]
    assert [(i["name"], i["location"], i["status"]) for i in listed] == [(name, "node2", "Running")]
    # The member's own bridge (100.64.71.0/24 in the script) hands out its address.
    deadline = time.monotonic() + 30
    address = None
    while address is None and time.monotonic() < deadline:
        net = client.api.instances[name].state.get().json()["metadata"]["network"] or {}
        inet = [
            a["address"] for a in net.get("eth0", {}).get("addresses", []) if a["family"] == "inet"
        ]
        address = inet[0] if inet else None
        time.sleep(0.5)
    assert address is not None, f"{name} on node2 got no IPv4 address within 30 s"
    assert ipaddress.ip_address(address) in ipaddress.ip_network("100.64.71.0/24")
