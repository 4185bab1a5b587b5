"""The real two-member LXD cluster the cluster tests run on, and a throwaway project in it.

`runner/dev-lxd-cluster.sh up` makes it (two daemons in their own network and mount
namespaces, joined as a cluster) once per session; it is idempotent and quick when the
cluster is already there, and is left running afterwards like the main development LXD.
Tests skip only where the namespaces cannot be made (not root, or a sandbox without
CAP_SYS_ADMIN); a cluster that fails to come up where they can is a test failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from integration.conftest import throwaway_project

from provisioner.values import subids
from provisioner.values.idranges import IdRange

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "runner" / "dev-lxd-cluster.sh"
DEFAULT_DIR = "/var/lib/ssp-dev-cluster"
MEMBERS = ("node1", "node2")
LAN = "ssplan"  # the containers' network: macvlan on each member's LAN NIC (the script's)
LAN_FIRST, LAN_LAST = "100.64.70.128", "100.64.70.250"  # the LAN's DHCP range

SLOTS = ("0000:18:00.0", "0000:3b:00.0")
RTX, A100 = "NVIDIA GeForce RTX 4090", "NVIDIA A100 80GB PCIe"


def _gpus(model: str, tag: int) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "model": model,
            "pci": pci,
            "uuid": f"GPU-{tag:08x}-0000-4000-8000-{i:012x}",
            "memory": "81920MiB" if model == A100 else "24564MiB",
        }
        for i, pci in enumerate(SLOTS)
    ]


def inventory_yaml() -> str:
    """config/hosts.yaml of the test lab: node1 has two RTX 4090s, node2 two A100s, in the
    same PCI slots (two servers of one make); the names are the cluster's members."""
    hosts = {
        "node1": {"address": "node1.lab.test", "cpu": 64, "memory": "256GiB",
                  "gpus": _gpus(RTX, 1)},
        "node2": {"address": "node2.lab.test", "cpu": 32, "memory": "128GiB",
                  "gpus": _gpus(A100, 2)},
    }  # fmt: skip
    return yaml.safe_dump({"hosts": hosts}, sort_keys=False)


@dataclass(frozen=True)
class Cluster:
    """Where the test cluster answers: one socket per member (node1's serves the cluster)."""

    directory: Path

    def socket(self, member: str = "node1") -> str:
        return str(self.directory / member / "lxd" / "unix.socket")

    def lxd_dir(self, member: str = "node1") -> str:
        return str(self.directory / member / "lxd")

    def id_spans(self) -> tuple[IdRange, ...]:
        """Root's ranges in the members' own /etc/subuid and /etc/subgid (the script's)."""
        text = (self.directory / "node1" / "subids").read_text(encoding="ascii")
        return subids.id_spans(text, text)

    def script(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SSP_CLUSTER_DIR": str(self.directory)}
        return subprocess.run(
            ["bash", str(SCRIPT), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env=env,
        )


def wait_operation(client: Any, response: Any, timeout_s: float = 120) -> None:
    """Wait for the operation a request started, wherever in the cluster it runs.

    Found by its id, not its URL: a clustered LXD's operation URL ends in `?project=...`,
    which a path built from it would turn into a plain read that returns at once.
    """
    body = response.json()
    if body.get("type") != "async":
        return
    operation = client.api.operations[body["metadata"]["id"]]
    deadline = time.monotonic() + timeout_s
    while True:
        meta = operation.wait.get(params={"timeout": 10}).json()["metadata"]
        if meta["status_code"] == 200:
            return
        if meta["status_code"] >= 400 or time.monotonic() > deadline:
            raise RuntimeError(
                f"LXD operation {meta['description']}: {meta['status']} {meta['err']}"
            )
        time.sleep(0.2)


def _namespaces_unavailable() -> str | None:
    """Why a member's namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "the cluster's namespaces need root"
    if shutil.which("unshare") is None or shutil.which("lxd") is None:
        return "unshare or lxd is not installed (bash runner/dev-lxd.sh install)"
    done = subprocess.run(
        ["unshare", "-m", "-n", "true"], capture_output=True, text=True, check=False, timeout=30
    )
    if done.returncode != 0:
        return f"network and mount namespaces are unavailable here: {done.stderr.strip()}"
    return None


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The running two-member cluster (brought up by the project's script, once)."""
    reason = _namespaces_unavailable()
    if reason:
        pytest.skip(f"no test LXD cluster: {reason}")
    made = Cluster(Path(os.environ.get("SSP_CLUSTER_DIR", DEFAULT_DIR)))
    done = made.script("up")
    assert done.returncode == 0, f"dev-lxd-cluster.sh up failed:\n{done.stderr}{done.stdout}"
    return made


@pytest.fixture
def cluster_project(cluster: Cluster) -> Iterator[str]:
    """A fresh LXD project on the cluster (every member), removed after the test."""
    with throwaway_project(cluster.socket(), prefix="ssp-c") as project:
        yield project
