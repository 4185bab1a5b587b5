"""`ssp host init` and `ssp doctor` against the real two-member cluster.

host init makes the policy's project once for the whole cluster and names the members; doctor
finds both members online and in config/hosts.yaml, and the pool on each of them.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import ENV, run_cli
from integration.conftest import purge_project

from cluster.conftest import Cluster, inventory_yaml
from provisioner.lxd.api import Lxd

pytestmark = pytest.mark.lxd
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(cluster: Cluster) -> Iterator[str]:
    name = f"ssp-c-{secrets.token_hex(4)}"
    yield name
    if Lxd(name, endpoint=cluster.socket(), require_project=False).read_project() is not None:
        purge_project(cluster.socket(), name)


def test_host_init_makes_one_project_for_both_members_and_doctor_sees_them(
    cluster: Cluster, project: str, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "config", repo / "config")
    policy = yaml.safe_load((repo / "config" / "policy.yaml").read_text(encoding="utf-8"))
    policy["lxd"]["project"] = project
    policy["shared_servers"] = {}
    (repo / "config" / "policy.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    (repo / "config" / "hosts.yaml").write_text(inventory_yaml(), encoding="utf-8")
    for name in ("subuid", "subgid"):
        shutil.copy(Path("/etc") / name, tmp_path / name)
    env = {**ENV, "LXD_DIR": cluster.lxd_dir()}
    args = ["--subuid", str(tmp_path / "subuid"), "--subgid", str(tmp_path / "subgid")]

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
