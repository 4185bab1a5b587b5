"""`ssp sample` and `ssp usage` on the real LXD daemon, with NVML's stand-in playing recorded
readings: each GPU is recorded with the managed container whose `gpu` device holds it, the
database is a real file that grows by one reading per GPU per pass, and the month's GPU-hours
come back per member. Containers here are empty (no image) and never started: a `gpu` device
is only checked against the hardware at start, so the holders are real LXD instances on a
machine without GPUs."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pynvml
import pytest
from helpers import NOW, run_cli
from nvml_standin import RECORDED_PASSES, NvmlStandin, play, seed_server
from pylxd import Client

from integration.helpers import LabRepo
from provisioner.values import state

from .conftest import _wait

pytestmark = pytest.mark.lxd


def _holder(socket: str, project: str, name: str, owner: str, pci: str, managed: bool) -> None:
    client = Client(endpoint=socket, project=project)
    config = {state.MANAGED: "true", state.OWNER: owner} if managed else {}
    body = {
        "name": name,
        "type": "container",
        "source": {"type": "none"},
        "config": config,
        "devices": {"gpu0": {"type": "gpu", "pci": pci}},
    }
    _wait(client, client.api.instances.post(json=body))


def test_each_pass_records_every_gpu_with_its_holder_and_usage_counts_gpu_hours(
    lab: LabRepo,
    lxd_socket: str,
    lxd_project: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"train-{lxd_project.rsplit('-', 1)[-1]}"
    stray = f"stray-{lxd_project.rsplit('-', 1)[-1]}"
    _holder(lxd_socket, lxd_project, name, "alice", "0000:4B:00.0", managed=True)
    _holder(lxd_socket, lxd_project, stray, "bob", "0000:b1:00.0", managed=False)
    standin = NvmlStandin(seed_server()).install(monkeypatch)
    db = tmp_path / "state" / "usage.sqlite"
    start = datetime.fromisoformat(NOW)
    for i, recorded in enumerate(RECORDED_PASSES):
        play(standin, recorded)
        env = {"SSP_NOW": (start + timedelta(minutes=5 * i)).isoformat(), "SSP_USAGE_DB": str(db)}
        got = run_cli("sample", "--repo", str(lab.root), env=env)
        assert got.code == 0, got.both
        assert f"4 GPU(s) recorded in {db} (1 held)" in got.out
    assert standin.refcount == 0  # NVML shut down after every pass

    raw = sqlite3.connect(db)
    rows = raw.execute(
        "SELECT pci, owner, container, COUNT(*), SUM(utilization) FROM readings "
        "GROUP BY pci ORDER BY pci"
    ).fetchall()
    raw.close()
    # The managed holder is recorded by its lower-case PCI address; an unmanaged container
    # holding a GPU is nobody's use.
    assert rows == [
        ("0000:1a:00.0", "", "", 4, 0),
        ("0000:4b:00.0", "alice", name, 4, 97 + 99 + 96 + 98),
        ("0000:b1:00.0", "", "", 4, 0),
        ("0000:ca:00.0", "", "", 4, 35 + 0 + 80 + 5),
    ]
    env = {"SSP_NOW": NOW, "SSP_USAGE_DB": str(db)}
    report = run_cli("usage", "--repo", str(lab.root), "--format", "json", env=env)
    assert report.code == 0, report.both
    assert '"member": "alice"' in report.out
    assert '"held_hours": 0.333' in report.out  # 4 passes x 5 minutes
    assert '"used_hours": 0.325' in report.out  # weighted by 97, 99, 96, 98 %


@pytest.mark.parametrize(
    ("standin", "said"),
    [
        (NvmlStandin([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND), "libnvidia-ml.so.1"),
        (NvmlStandin([]), "NVML reports no GPUs on this host, nothing recorded"),
    ],
    ids=["no driver", "no GPU"],
)
def test_without_a_gpu_nothing_is_recorded_and_the_line_says_so(
    lab: LabRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standin: NvmlStandin, said: str
) -> None:
    standin.install(monkeypatch)
    db = tmp_path / "usage.sqlite"
    got = run_cli("sample", "--repo", str(lab.root), env={"SSP_NOW": NOW, "SSP_USAGE_DB": str(db)})
    assert got.code == 0, got.both
    assert got.out.startswith("ssp sample: ") and said in got.out
    assert not db.exists()
