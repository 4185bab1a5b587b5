"""The hardened project `ssp host init` asks LXD for, and the diff against what LXD has.

Pure: the sample policy and inventory in, config keys and changes out. What LXD itself then
refuses in such a project is shown against the real daemon in integration/test_host_init.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from provisioner.applying.hostinit import gpu_userspace_lines
from provisioner.host import nvidia
from provisioner.planning.hostproject import (
    SettingChange,
    desired_profile,
    desired_project,
    id_ranges,
    plan_host,
    profile_changes,
    project_changes,
)
from provisioner.values.models import Inventory
from provisioner.values.policymodels import Policy
from provisioner.values.state import Profile, Project

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> dict[str, object]:
    loaded = yaml.safe_load((ROOT / "config" / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def policy(**changes: object) -> Policy:
    return Policy.model_validate({**load("policy.yaml"), **changes}, strict=False)


def inventory(**host_changes: object) -> Inventory:
    doc = load("hosts.yaml")
    hosts = doc["hosts"]
    assert isinstance(hosts, dict)
    for host in hosts.values():
        host.update(host_changes)
    return Inventory.model_validate(doc, strict=False)


@pytest.mark.parametrize(
    ("ids", "text"),
    [
        ([], ""),
        ([1000], "1000"),
        ([1002, 1000, 1001], "1000-1002"),
        ([1000, 1001, 1003, 1005, 1006], "1000-1001,1003,1005-1006"),
        ([1001, 1001], "1001"),
    ],
)
def test_member_uids_become_lxd_id_ranges(ids: list[int], text: str) -> None:
    assert id_ranges(ids) == text


def test_the_project_is_restricted_to_what_the_lab_allows() -> None:
    config = desired_project(policy(), inventory()).config
    assert config["restricted"] == "true"
    assert config["restricted.containers.privilege"] == "isolated"
    assert config["restricted.containers.nesting"] == "block"
    assert config["restricted.containers.lowlevel"] == "block"
    # host paths: only the share catalogue's sources
    assert config["restricted.devices.disk"] == "allow"
    assert config["restricted.devices.disk.paths"] == "/home/user/share"
    # host UIDs in raw.idmap: only the members' (1001-1004 in the sample policy)
    assert config["restricted.idmap.uid"] == config["restricted.idmap.gid"] == "1001-1004"
    assert config["restricted.devices.gpu"] == config["restricted.devices.proxy"] == "allow"
    for kind in ("unix-char", "unix-block", "unix-hotplug", "usb", "pci", "infiniband"):
        assert config[f"restricted.devices.{kind}"] == "block", kind
    assert config["restricted.devices.nic"] == "managed"
    assert config["restricted.networks.access"] == "lxdbr0"
    # retiring snapshots a container, and restricted projects block snapshots by default
    assert config["restricted.snapshots"] == "allow"
    assert config["features.profiles"] == "true"
    assert config["features.images"] == "false"


def test_limits_come_from_the_inventory_and_the_quotas() -> None:
    config = desired_project(policy(), inventory()).config
    assert config["limits.cpu"] == "64"
    assert config["limits.memory"] == "256GiB"
    assert config["limits.disk"] == "4TiB"
    assert config["limits.virtual-machines"] == "0"
    # quotas: lab-admin 1 (default) + alice 2 + bob 2 (student) + carol 4 (staff) = 9 live,
    # twice that for containers kept after retirement
    assert config["limits.instances"] == "18"
    assert config["limits.processes"] == str(18 * 10000)


def test_a_host_without_a_recorded_pool_size_gets_no_disk_limit() -> None:
    assert "limits.disk" not in desired_project(policy(), inventory(disk=None)).config


def test_without_shares_disks_are_pool_volumes_only() -> None:
    # `allow` with an empty path list would let a container mount any host path.
    config = desired_project(policy(shares={}), inventory()).config
    assert config["restricted.devices.disk"] == "managed"
    assert "restricted.devices.disk.paths" not in config


def test_several_shares_are_one_comma_list() -> None:
    shares = {
        "share": {"source": "/srv/share", "path": "/share"},
        "data": {"source": "/srv/data", "path": "/data", "readonly": True},
        "again": {"source": "/srv/share", "path": "/again"},
    }
    config = desired_project(policy(shares=shares), inventory()).config
    assert config["restricted.devices.disk.paths"] == "/srv/data,/srv/share"


def test_the_default_profile_gives_every_container_limits_root_and_network() -> None:
    profile = desired_profile(policy())
    assert profile.config == {
        "limits.cpu": "8",
        "limits.memory": "32GiB",
        "limits.processes": "10000",
        "security.idmap.isolated": "true",
    }
    assert profile.devices == {
        "root": {"type": "disk", "path": "/", "pool": "default", "size": "100GiB"},
        "eth0": {"type": "nic", "name": "eth0", "network": "lxdbr0"},
    }


def test_a_missing_project_is_created_with_everything() -> None:
    plan = plan_host(policy(), inventory(), None, None)
    want = desired_project(policy(), inventory())
    assert plan.create_project
    assert plan.project.config == want.config
    assert {c.key for c in plan.project_changes} == set(want.config)
    assert {c.key for c in plan.profile_changes} >= {"limits.cpu", "device root", "device eth0"}


def test_a_project_as_desired_needs_nothing() -> None:
    want = desired_project(policy(), inventory())
    observed = Project(
        want.name, "hand-written", {**want.config, "features.storage.volumes": "true"}
    )
    plan = plan_host(policy(), inventory(), observed, desired_profile(policy()))
    assert plan.empty
    assert not plan.create_project


def test_a_relaxed_restriction_is_put_back_and_other_keys_are_kept() -> None:
    want = desired_project(policy(), inventory())
    relaxed = {**want.config, "restricted.devices.unix-char": "allow", "user.note": "x"}
    plan = plan_host(policy(), inventory(), Project(want.name, "ours", relaxed), None)
    assert [str(c) for c in plan.project_changes] == [
        "project ssp: restricted.devices.unix-char: allow → block"
    ]
    # the whole config is sent back (LXD replaces it): the admin's own key survives
    assert plan.project.config["user.note"] == "x"
    assert plan.project.config["restricted.devices.unix-char"] == "block"
    assert plan.project.description == "ours"


def test_a_new_member_widens_the_allowed_uids() -> None:
    before = desired_project(policy(), inventory())
    users = {**load("policy.yaml")["users"], "dave": {"uid": 1010}}  # type: ignore[dict-item]
    after = desired_project(policy(users=users), inventory())
    assert [str(c) for c in project_changes(after, before)] == [
        # a member's default quota of one container, twice for retired ones
        "project ssp: limits.instances: 18 → 20",
        "project ssp: limits.processes: 180000 → 200000",
        "project ssp: restricted.idmap.gid: 1001-1004 → 1001-1004,1010",
        "project ssp: restricted.idmap.uid: 1001-1004 → 1001-1004,1010",
    ]


def test_anything_extra_in_the_default_profile_is_removed() -> None:
    want = desired_profile(policy())
    # a GPU device in the default profile would reach every container
    observed = Profile(
        "default",
        "",
        {**want.config, "security.privileged": "true"},
        {**want.devices, "gpu": {"type": "gpu"}},
    )
    assert [str(c) for c in profile_changes(want, observed)] == [
        "profile default: remove security.privileged (was true)",
        "profile default: remove device gpu (was type=gpu)",
    ]


def test_a_changed_device_shows_both_sides() -> None:
    want = desired_profile(policy())
    root = {**want.devices["root"], "size": "10GiB"}
    observed = Profile("default", "", dict(want.config), {**want.devices, "root": root})
    [change] = profile_changes(want, observed)
    assert change == SettingChange(
        "profile default",
        "device root",
        "path=/, pool=default, size=10GiB, type=disk",
        "path=/, pool=default, size=100GiB, type=disk",
    )


# --- the NVIDIA userspace the policy chose ---------------------------------------------------


def test_nvidia_container_cli_is_found_on_path_or_in_lxds_snap(tmp_path: Path) -> None:
    bin_dir, snap = tmp_path / "bin", tmp_path / "snap-cli"
    bin_dir.mkdir()
    assert nvidia.container_cli(str(bin_dir), snap) is None
    snap.write_text("#!/bin/sh\n")
    assert nvidia.container_cli(str(bin_dir), snap) == str(snap)
    tool = bin_dir / "nvidia-container-cli"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert nvidia.container_cli(str(bin_dir), snap) == str(tool)


def test_the_nvidia_driver_is_loaded_when_proc_says_its_version(tmp_path: Path) -> None:
    assert not nvidia.driver_loaded(tmp_path)
    (tmp_path / "driver" / "nvidia").mkdir(parents=True)
    (tmp_path / "driver" / "nvidia" / "version").write_text("NVRM version: 550.54.14\n")
    assert nvidia.driver_loaded(tmp_path)


def test_the_nvidia_runtime_without_nvidia_container_cli_stops_host_init_on_a_gpu_host() -> None:
    errors, warnings = gpu_userspace_lines(policy(), inventory(), True, None)
    assert warnings == []
    (error,) = errors
    assert error.startswith("gpu_userspace is nvidia-runtime but nvidia-container-cli is not")
    assert "apt-get install nvidia-container-toolkit" in error
    assert "gpu_userspace: image" in error
    # with the tool, or without the driver (not the GPU host yet: only a warning) ...
    assert gpu_userspace_lines(policy(), inventory(), True, "/usr/bin/nvidia-container-cli") == (
        [],
        [],
    )
    errors, warnings = gpu_userspace_lines(policy(), inventory(), False, None)
    assert errors == [] and "no NVIDIA driver is loaded here either" in warnings[0]
    # ... the image carrying the userspace, or no GPU in the inventory: nothing to say
    assert gpu_userspace_lines(policy(gpu_userspace="image"), inventory(), True, None) == ([], [])
    assert gpu_userspace_lines(policy(), inventory(gpus=[]), True, None) == ([], [])
