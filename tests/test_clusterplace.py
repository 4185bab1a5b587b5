"""The plan's view of a cluster: members down, existing containers where LXD has them, new
ones placed, and a single server left exactly as before (no target, nothing down)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import yaml

from provisioner.planning.cluster import down_members, members_seen, where
from provisioner.values.models import ContainerRequest, GpuEntry, Host, Inventory
from provisioner.values.policymodels import Policy
from provisioner.values.state import MANAGED, RETIRED, Instance

ROOT = Path(__file__).resolve().parents[1]
POLICY = Policy.model_validate(yaml.safe_load((ROOT / "config" / "policy.yaml").read_text()))
SLOT = "0000:18:00.0"


def _gpu(model: str) -> GpuEntry:
    return GpuEntry(
        index=0, model=model, pci=SLOT, uuid="GPU-00000000-0000-4000-8000-000000000000",
        memory="24564MiB",
    )  # fmt: skip


INVENTORY = Inventory(
    hosts={
        "node1": Host(cpu=64, memory="256GiB", gpus=[_gpu("RTX")]),
        "node2": Host(cpu=64, memory="256GiB", gpus=[_gpu("A100")]),
    }
)
ONLINE = {"node1": "Online", "node2": "Online"}


def req(name: str, **kw: Any) -> tuple[str, ContainerRequest]:
    fields: dict[str, Any] = {
        "kind": "container", "name": name, "owner": "alice", "purpose": "tests",
        "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDx alice@x"],
        "expires": date(2027, 1, 1), "cpu": 2, "memory": "4GiB", "disk": "10GiB", **kw,
    }  # fmt: skip
    return f"requests/alice/{name}.yaml", ContainerRequest.model_validate(fields)


def inst(name: str, location: str, status: str = "Running", **config: str) -> Instance:
    return Instance(
        name=name,
        status=status,
        location=location,
        config={MANAGED: "true", "limits.cpu": "60", "limits.memory": "8GiB", **config},
        devices={"root": {"type": "disk", "path": "/", "pool": "default", "size": "10GiB"}},
    )


def test_on_a_single_server_nothing_is_targeted_and_nothing_is_down() -> None:
    got = where([req("aaa"), req("bbb", host="node2")], POLICY, INVENTORY, [], members={})
    assert (dict(got.host), dict(got.target), got.down, got.clustered) == (
        {"aaa": "node1", "bbb": "node2"}, {}, frozenset(), False,
    )  # fmt: skip
    assert got.member("aaa") == "" and got.address("aaa", INVENTORY) == ""


def test_an_existing_container_stays_on_its_member_and_new_ones_are_targeted() -> None:
    observed = [inst("old", "node2")]
    got = where(
        [req("old", host="node1"), req("new", gpus=1, gpu_model="RTX")],
        POLICY, INVENTORY, observed, ONLINE,
    )  # fmt: skip
    assert dict(got.host) == {"old": "node2", "new": "node1"}
    assert dict(got.target) == {"new": "node1"}
    assert (got.member("old"), got.address("new", INVENTORY)) == ("node2", "node1")


def test_what_a_members_containers_take_counts_against_its_headroom() -> None:
    # node1 already gives 60 of its 64 cores: the next container goes to node2.
    got = where([req("nnn")], POLICY, INVENTORY, [inst("busy", "node1")], ONLINE)
    assert dict(got.target) == {"nnn": "node2"}
    # A retired instance holds nothing any more.
    retired = inst("busy", "node1", **{RETIRED: "2026-01-01"})
    again = where([req("nnn")], POLICY, INVENTORY, [retired], ONLINE)
    assert dict(again.target) == {"nnn": "node1"}


def test_a_member_is_down_when_lxd_says_so_or_none_of_its_instances_answers() -> None:
    assert down_members({"node1": "Online", "node2": "Offline"}, []) == {"node2"}
    unreachable = [inst("x", "node2", status="Error"), inst("y", "node1")]
    assert down_members(ONLINE, unreachable) == {"node2"}
    # One instance in Error beside a running one is that instance's trouble, not the member's.
    mixed = [inst("x", "node2", status="Error"), inst("z", "node2")]
    assert down_members(ONLINE, mixed) == frozenset()


def test_a_no_op_plans_with_the_members_its_listing_shows_and_finds_one_down_the_same() -> None:
    # The all-projects listing, by project: what a pass plans with before it lists members.
    listed = {"lab": [inst("a", "node1")], "other": [inst("b", "node2"), inst("c", "node2")]}
    assert members_seen(listed) == ONLINE
    # A single server: LXD 5.0.2 gives every instance the location `none`.
    assert members_seen({"lab": [inst("a", "none")], "default": [inst("d", "")]}) == {}
    # A member LXD cannot reach is listed all the same, and its instances say it is down.
    cut_off = {"lab": [inst("a", "node1"), inst("x", "node2", status="Error")]}
    assert down_members(members_seen(cut_off), cut_off["lab"]) == {"node2"}


def test_requests_on_a_down_member_say_so_and_new_ones_go_elsewhere() -> None:
    members = {"node1": "Online", "node2": "Offline"}
    got = where(
        [req("there", host="node2"), req("free")], POLICY, INVENTORY,
        [inst("old", "node2", status="Error")], members,
    )  # fmt: skip
    assert dict(got.host) == {"there": "node2", "free": "node1"}
    message = got.down_message("there")
    assert message is not None and message.startswith("member down: server 'node2'")
    assert got.down_message("free") is None


def test_a_host_that_is_not_a_cluster_member_is_refused_with_the_reason() -> None:
    got = where([req("aaa", host="node2")], POLICY, INVENTORY, [], {"node1": "Online"})
    assert dict(got.unplaced) == {
        "aaa": "server 'node2' is in config/hosts.yaml but not a member of the LXD cluster"
    }
