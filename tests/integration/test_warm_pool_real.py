"""The warm pool on a real LXD: `ssp maintain` keeps a clone of the base made ahead, a merged
request claims it and becomes the member's container, and the pool is made whole again.

What a member and an admin care about: the claimed container is the member's (owner label,
their user and keys inside, the share's ID map), it holds the ID block the clone was made
with, its first start re-owned no file (the point of making it ahead), a bystander container
is untouched, and a warm clone is never shown as anyone's container.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from integration.helpers import (
    NOW,
    UIDS,
    Adapters,
    LabRepo,
    apply_pass,
    host_id_spans,
    in_instance,
    lxc_query,
    outcomes,
)
from provisioner.flows import maintain
from provisioner.planning import warm
from provisioner.status import server
from provisioner.values import state

pytestmark = [pytest.mark.lxd, pytest.mark.slow]


def _warm(project: str) -> list[dict[str, object]]:
    listed = lxc_query("/1.0/instances?recursion=1", project)
    return [i for i in listed if state.WARM in i["config"]]


def _rootfs_ctime(project: str, name: str, path: str) -> float:
    """When PATH's inode last changed, read on the host: a re-own (chown) changes it."""
    # LXD mounts every pool here, whatever its driver (a btrfs loop file's source is the file).
    pools = Path(os.environ.get("LXD_DIR", "/var/lib/lxd")) / "storage-pools" / "default"
    return (pools / "containers" / f"{project}_{name}" / "rootfs" / path).stat().st_ctime


def test_a_merged_request_claims_a_warm_clone_and_maintain_makes_another(
    lab: LabRepo, adapters: Adapters, lxd_project: str, suffix: str
) -> None:
    lab.settings = {
        "lxd": {"project": lxd_project, "profiles": ["default"], "pool": lab.pool, "warm_pool": 1}
    }
    bystander = lab.container(f"by-{suffix}", owner="bob", image="busybox", cpu=1)
    first = apply_pass(lab, adapters, bystander)
    assert outcomes(first)[f"by-{suffix}"][:2] == ("created", True)
    before = lxc_query(f"/1.0/instances/by-{suffix}", lxd_project)

    # The maintenance pass (after its reconcile) makes the pool: one clone of the base.
    done = maintain.maintain(first, adapters.main, now=NOW, id_spans=host_id_spans(), pin_ids=True)
    assert [(w.action, w.ok) for w in done.warm] == [("made", True)], done.warm
    (clone,) = _warm(lxd_project)
    config = clone["config"]
    assert clone["status"] == "Stopped"
    assert config[state.WARM_STATE] == "ready" and state.MANAGED not in config
    assert config[state.WARM_IDS]  # every owner of a file in it, recorded
    assert list(clone["devices"]) == ["root"]  # no GPU, no port: only its disk
    block = config["security.idmap.base"]
    # Its first start is done: the files are shifted to its own block already.
    assert f'"Hostid":{block}' in config[warm.LAST_MAP]
    env_ctime = _rootfs_ctime(lxd_project, str(clone["name"]), "usr/bin/env")

    # Never shown as anyone's container: the status page's rows are the bystander alone.
    cfg0 = first.validation.config
    assert cfg0 is not None
    page = server.build(
        policy=cfg0.policy,
        inventory=cfg0.inventory,
        requests=first.validation.valid,
        instances=adapters.main.instances(),
        servers=(),
        now=NOW,
        today=NOW.date(),
    )
    assert [c.name for c in page.containers] == [f"by-{suffix}"]

    # alice's request, with the share (its own ID map entry), claims the clone.
    name = f"claim-{suffix}"
    mine = lab.container(name, shares=["share"])
    second = apply_pass(lab, adapters, bystander, mine)
    assert outcomes(second)[name][:2] == ("created", True), outcomes(second)
    assert _warm(lxd_project) == []  # claimed: renamed, no longer warm
    got = lxc_query(f"/1.0/instances/{name}", lxd_project)
    cfg = got["config"]
    assert cfg[state.OWNER] == "alice" and cfg[state.STATE] == "ready"
    assert cfg["security.idmap.base"] == block
    assert not any(k.startswith("user.ssp.warm") for k in cfg)
    uid = UIDS["alice"]
    uid_map = in_instance(lxd_project, name, "cat", "/proc/self/uid_map").stdout.split()
    assert [str(uid), str(uid), "1"] == uid_map[3:6]  # the share's entry: alice is herself
    keys = in_instance(lxd_project, name, "cat", "/home/alice/.ssh/authorized_keys").stdout
    assert lab.keys["alice"].public in keys
    # The start re-owned nothing: the base's files were not chowned again.
    assert _rootfs_ctime(lxd_project, name, "usr/bin/env") == env_ctime
    ls = in_instance(lxd_project, name, "stat", "-c", "%u", "/usr/bin/env").stdout.strip()
    assert ls == "0"

    # The bystander was not touched.
    after = lxc_query(f"/1.0/instances/by-{suffix}", lxd_project)
    assert after["config"] == before["config"] and after["devices"] == before["devices"]

    # The next maintenance pass makes the pool whole again.
    again = maintain.maintain(
        second,
        adapters.main,
        now=NOW,
        id_spans=host_id_spans(),
        pin_ids=True,
    )
    assert [(w.action, w.ok) for w in again.warm] == [("made", True)], again.warm
    (refilled,) = _warm(lxd_project)
    assert refilled["config"]["security.idmap.base"] != block
