"""The test cluster itself: both members serve, and a container goes where it is targeted.

Everything the multi-server tests build on: two ONLINE members that share one database, an
image imported once that every member can use, and LXD's `target` placing a container on
either member, where it runs and gets an address of its own from the lab's LAN.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from typing import Any

import pytest
from pylxd import Client

from cluster.conftest import LAN_FIRST, LAN_LAST, MEMBERS, Cluster, wait_operation

pytestmark = pytest.mark.lxd


def _members(client: Any) -> dict[str, str]:
    body = client.api.cluster.members.get(params={"recursion": 1}).json()
    return {m["server_name"]: m["status"] for m in body["metadata"]}


def test_both_members_are_online_and_either_serves_the_cluster(cluster: Cluster) -> None:
    for member in MEMBERS:
        client = Client(endpoint=cluster.socket(member))
        assert _members(client) == {"node1": "Online", "node2": "Online"}
    assert "node1: LXD answers" in cluster.script("status").stdout


def _ipv4(client: Any, name: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        net = client.api.instances[name].state.get().json()["metadata"]["network"] or {}
        inet = [
            a["address"] for a in net.get("eth0", {}).get("addresses", []) if a["family"] == "inet"
        ]
        if inet:
            return str(inet[0])
        time.sleep(0.5)
    raise AssertionError(f"{name} got no IPv4 address within {timeout_s:.0f} s")


def test_containers_on_two_members_get_distinct_addresses_from_the_lan(
    cluster: Cluster, cluster_project: str
) -> None:
    client = Client(endpoint=cluster.socket("node1"), project=cluster_project)
    suffix = cluster_project.rsplit("-", 1)[-1]
    source = {"type": "image", "alias": "ssp-busybox"}
    names = {member: f"tgt{member[-1]}-{suffix}" for member in MEMBERS}
    for member, name in names.items():
        wait_operation(
            client,
            client.api.instances.post(
                json={"name": name, "source": source}, params={"target": member}
            ),
        )
        wait_operation(client, client.api.instances[name].state.put(json={"action": "start"}))
    # One listing through node1 shows where every instance is, node2's included.
    listed = client.api.instances.get(params={"recursion": 2}).json()["metadata"]
    assert sorted((i["name"], i["location"], i["status"]) for i in listed) == sorted(
        (name, member, "Running") for member, name in names.items()
    )
    # Both come from the LAN's one DHCP server (the cluster network is macvlan on each
    # member's LAN NIC), not from a bridge per member that hands out the same subnet twice.
    addresses = {member: _ipv4(client, name) for member, name in names.items()}
    assert addresses["node1"] != addresses["node2"], addresses
    lan = (ipaddress.ip_address(LAN_FIRST), ipaddress.ip_address(LAN_LAST))
    for address in addresses.values():
        assert lan[0] <= ipaddress.ip_address(address) <= lan[1], addresses
    # Each reaches the other across the members (busybox's ping, inside the container).
    env = {"LXD_DIR": cluster.lxd_dir("node1"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for member, other in (("node1", "node2"), ("node2", "node1")):
        done = subprocess.run(
            ["lxc", "exec", "--project", cluster_project, names[member], "--",
             "ping", "-c", "1", "-W", "3", addresses[other]],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{member} cannot reach {other}: {done.stdout}{done.stderr}"
