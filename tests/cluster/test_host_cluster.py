"""`ssp host init`, `ssp doctor` and the GPU gate against the real two-member cluster.

host init makes the policy's project once for the whole cluster and names the members; doctor
finds both members online and in config/hosts.yaml, and the pool on each of them, and names
a member that stops as a problem (never a failure of its own); the GPU gate reads each
member's cards through LXD and holds them against that member's inventory entry only.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import ENV, run_cli
from integration.conftest import purge_project
from nvml_standin import NvmlStandin, seed_server
from test_doctor import SEED_PCI, fake_sys, seed_inventory

from cluster.conftest import A100, SLOTS, Cluster, inventory_yaml
from provisioner.commands import member_cards
from provisioner.doctor.checks import Status
from provisioner.flows.checkup import HostPaths, examine
from provisioner.gpu.gate import member_gpu_refusal
from provisioner.lxd.api import Lxd
from provisioner.validation.config import load_config
from provisioner.values.models import Inventory

pytestmark = pytest.mark.lxd
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(cluster: Cluster) -> Iterator[str]:
    name = f"ssp-c-{secrets.token_hex(4)}"
    yield name
    if Lxd(name, endpoint=cluster.socket(), require_project=False).read_project() is not None:
        purge_project(cluster.socket(), name)


def lab_repo(tmp_path: Path, project: str) -> tuple[Path, list[str]]:
    """A checkout for `project` with the lab's two-server inventory; host init's ID files."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "config", repo / "config")
    policy = yaml.safe_load((repo / "config" / "policy.yaml").read_text(encoding="utf-8"))
    policy["lxd"]["project"] = project
    policy["shared_servers"] = {}
    (repo / "config" / "policy.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    (repo / "config" / "hosts.yaml").write_text(inventory_yaml(), encoding="utf-8")
    for name in ("subuid", "subgid"):
        shutil.copy(Path("/etc") / name, tmp_path / name)
    return repo, ["--subuid", str(tmp_path / "subuid"), "--subgid", str(tmp_path / "subgid")]


def test_host_init_makes_one_project_for_both_members_and_doctor_sees_them(
    cluster: Cluster, project: str, tmp_path: Path
) -> None:
    repo, args = lab_repo(tmp_path, project)
    env = {**ENV, "LXD_DIR": cluster.lxd_dir()}

    made = run_cli("host", "init", "--repo", str(repo), *args, env=env)
    assert made.code == 0, made.both
    assert "ssp host init: cluster: 2 members: node1 (Online), node2 (Online);" in made.out
    # The project is the cluster's: node2 answers for it as node1 does.
    assert Lxd(project, endpoint=cluster.socket("node2")).read_project() is not None

    checked = run_cli("doctor", "--repo", str(repo), "--format", "json", env=env)
    checks = {c["name"]: c for c in json.loads(checked.out)["checks"]}
    assert checks["cluster.members"]["status"] == "ok", checks["cluster.members"]
    assert checks["cluster.members"]["detail"] == (
        "2 members online, each in config/hosts.yaml: node1, node2"
    )
    pools = checks["pool.members"]
    assert pools["status"] == "ok", pools
    assert "node1: " in pools["detail"] and "node2: " in pools["detail"]
    assert pools["detail"].startswith("pool 'default' on every member that answers: ")


def test_the_gpu_gate_reads_each_members_cards_through_lxd(cluster: Cluster) -> None:
    lxd = Lxd("default", endpoint=cluster.socket(), require_project=False)
    found = member_cards(lxd, lxd.members())
    assert found == {"node1": (), "node2": ()}  # what LXD lists on these GPU-less machines
    lab = yaml.safe_load(inventory_yaml())
    assert member_gpu_refusal(Inventory.model_validate(lab), found) is not None
    # node1 recorded without GPUs, node2 with two A100s: only node2's differ, and are named.
    lab["hosts"]["node1"]["gpus"] = []
    refusal = member_gpu_refusal(Inventory.model_validate(lab), found)
    assert refusal is not None and "server node1" not in refusal
    for slot in SLOTS:
        assert f"server node2: {slot}: {A100} (GPU-" in refusal
    lab["hosts"]["node2"]["gpus"] = []
    assert member_gpu_refusal(Inventory.model_validate(lab), found) is None


def test_doctor_reports_a_member_going_away_as_a_problem_never_an_error(
    cluster: Cluster, project: str, tmp_path: Path
) -> None:
    repo, _args = lab_repo(tmp_path, project)
    env = {**ENV, "LXD_DIR": cluster.lxd_dir()}
    node2 = {**os.environ, "LXD_DIR": cluster.lxd_dir("node2")}
    # LXD 5.0.2 calls node2 Online for a while after it stops, while requests for it fail
    # ("Missing event connection with target cluster member"); main's doctor exited 3 then.
    stopping = subprocess.Popen(
        ["lxd", "shutdown", "--timeout", "60"],
        env=node2,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    details = []
    try:
        deadline = time.monotonic() + 120
        while True:
            checked = run_cli("doctor", "--repo", str(repo), "--format", "json", env=env)
            assert checked.code == 1 and "error" not in checked.err, checked.both
            members = {c["name"]: c for c in json.loads(checked.out)["checks"]}["cluster.members"]
            details.append((members["status"], members["detail"]))
            if members["detail"].startswith("node2 is Offline"):
                break
            assert time.monotonic() < deadline, details
    finally:
        stopping.wait(timeout=90)
        back = cluster.script("up")
    assert back.returncode == 0, back.stderr
    # Before node2 is gone it is fine; from then on it is named, whatever LXD calls it.
    assert all(status == "ok" or "node2" in detail for status, detail in details), details
    assert details[-1][0] == "problem"


def test_gpus_write_records_every_member(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # node1 (whose socket this is) has the seed server's cards through NVML; node2's own LXD
    # lists none on this GPU-less machine, so its entry loses the A100s the lab file has.
    NvmlStandin(seed_server()).install(monkeypatch)
    (tmp_path / "config").mkdir()
    hosts = tmp_path / "config" / "hosts.yaml"
    hosts.write_text(inventory_yaml(), encoding="utf-8")
    done = run_cli(
        "gpus", "--repo", str(tmp_path), "--write", env={**ENV, "LXD_DIR": cluster.lxd_dir()}
    )
    assert done.code == 0, done.both
    got = yaml.safe_load(hosts.read_text(encoding="utf-8"))["hosts"]
    assert [g["pci"] for g in got["node1"]["gpus"]] == [
        "0000:1a:00.0", "0000:4b:00.0", "0000:b1:00.0", "0000:ca:00.0",
    ]  # fmt: skip
    assert got["node2"]["gpus"] == []
    assert f"node2: removed {SLOTS[0]}: {A100}" in done.out


def test_doctor_holds_this_members_gpus_against_its_own_entry(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run on node1 (its socket), whose cards are the seed server's; node2 has two A100s.
    # Main compared NVML here with every server's entry: node2's A100s were "missing".
    NvmlStandin(seed_server()).install(monkeypatch)
    sys_root = fake_sys(tmp_path, dict.fromkeys(SEED_PCI, ("0x10de", "0x030000")))
    lab = yaml.safe_load(inventory_yaml())
    lab["hosts"]["node1"]["gpus"] = [g.model_dump() for g in seed_inventory()]
    loaded, problems = load_config(
        (ROOT / "config" / "policy.yaml").read_bytes(), yaml.safe_dump(lab).encode()
    )
    assert loaded is not None, problems
    lxd = Lxd("default", endpoint=cluster.socket("node1"), require_project=False)
    paths = HostPaths(tmp_path / "subuid", tmp_path / "subgid", sys_root, tmp_path, tmp_path)
    checks = {c.name: c for c in examine(loaded, [], lxd, lxd.socket, paths)}
    assert checks["gpu.inventory"].status is Status.OK, checks["gpu.inventory"].detail
