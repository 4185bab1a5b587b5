"""Idle-GPU notices in `ssp maintain` on a real LXD with the fake GitHub: a GPU the usage
database shows held but idle for the policy's days gets one comment in its container's
lease issue, mentioning the owner, once per idle stretch; a GPU in use, a bystander and the
containers themselves are left alone (a notice only: nothing is released or stopped).

The readings are what `ssp sample` records (tests/integration/test_sample_real.py checks
that on the real LXD); here they name the busybox containers as holders, since a container
with a real GPU device cannot start on a machine without GPUs.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from fakegithub import FAKE_REPO, FakeGitHub
from helpers import ENV, NOW, run_cli

from integration.helpers import Adapters, LabRepo, apply_pass
from integration.test_leases_real import Lab, noon
from provisioner.flows import maintain
from provisioner.flows.usage import idle_now
from provisioner.host.usagedb import UsageDb
from provisioner.values.policymodels import Policy
from provisioner.values.usage import Reading

pytestmark = pytest.mark.lxd

LAST = date(2027, 6, 30)
IDLE_PCI, BUSY_PCI = "0000:b1:00.0", "0000:4b:00.0"


def readings(days: int, end: int, holder: str, owner: str, pci: str, util: int) -> list[Reading]:
    step = 300
    return [
        Reading(at, pci, step, util, 1200 << 20, 24 << 30, 1, owner, holder)
        for at in range(end - days * 86_400, end + 1, step * 12)  # hourly is enough here
    ]


def idle_comments(gh: FakeGitHub, name: str) -> list[str]:
    return [
        c.body
        for issue in gh.issues_of(FAKE_REPO)
        if f"<!-- ssp:lease {name} -->" in (issue.body or "")
        for c in gh.comments_on(FAKE_REPO, issue.number)
        if "ssp:idle-notice" in c.body
    ]


def test_an_idle_gpu_is_told_once_in_the_lease_issue_and_nothing_is_released(
    lab: LabRepo,
    lxd_project: str,
    lxd_socket: str,
    fake_github: FakeGitHub,
    suffix: str,
    tmp_path: Path,
) -> None:
    world = Lab(lab, lxd_project, lxd_socket, fake_github)
    idler, busy = f"idler-{suffix}", f"busy-{suffix}"
    world.requests = {
        idler: lab.container(idler, image="busybox", expires=LAST.isoformat()),
        busy: lab.container(busy, owner="bob", image="busybox", expires=LAST.isoformat()),
    }
    world.policy_changes = {"usage": {"idle_days": 7, "idle_utilization": 5}}
    world.write_policy()
    db = tmp_path / "usage.sqlite"
    day = date(2027, 1, 10)
    world.day(day)  # the containers exist and run; no readings yet: no notice
    bystander = world.config(busy)

    now = noon(day + timedelta(days=1))
    end = int(now.timestamp())
    with UsageDb(db) as store:
        store.record(readings(9, end, idler, "alice", IDLE_PCI, util=0))
        store.record(readings(9, end, busy, "bob", BUSY_PCI, util=88))
    policy = Policy.model_validate(world.lab.policy() | world.policy_changes)

    for _ in range(2):  # the rerun finds the comment and posts nothing
        idle = idle_now(db, policy, now)
        assert [(g.container, g.pci) for g in idle] == [(idler, IDLE_PCI)]
        world.idle = idle
        done = world.day(day + timedelta(days=1))
        (sent,) = done.idle_sent
        assert not sent.error
    (comment,) = idle_comments(fake_github, idler)
    assert "@alice" in comment and IDLE_PCI in comment and "idle since" in comment
    assert idle_comments(fake_github, busy) == []
    # The lease issue is not closed as "renewed" while the notice stands.
    (issue,) = [i for i in fake_github.issues_of(FAKE_REPO) if idler in (i.body or "")]
    assert issue.state == "open"
    # A notice only: both containers still run, bob's as it was.
    assert world.status(idler) == "Running" and world.status(busy) == "Running"
    assert world.config(busy) == bystander
    report = maintain.text_lines(done, policy.timezone)
    assert any(f"GPU {IDLE_PCI} idle since" in line and "already sent" in line for line in report)
    summary = maintain.markdown(done, policy)  # the maintenance job's summary
    assert "### Idle GPUs" in summary and f"`{IDLE_PCI}`" in summary and "already sent" in summary


def test_ssp_maintain_reads_the_database_and_an_unreadable_one_is_only_a_warning(
    lab: LabRepo, adapters: Adapters, suffix: str, tmp_path: Path
) -> None:
    idler = f"idle-cli-{suffix}"
    lab.settings = {"usage": {"idle_days": 3}}
    apply_pass(lab, adapters, lab.container(idler, image="busybox"))
    db = tmp_path / "usage.sqlite"
    end = int(datetime.fromisoformat(NOW).timestamp())
    with UsageDb(db) as store:
        store.record(readings(4, end, idler, "alice", IDLE_PCI, util=2))
    env = {**ENV, "SSP_LOCK": str(tmp_path / "apply.lock"), "SSP_USAGE_DB": str(db)}
    if os.environ.get("LXD_DIR"):
        env["LXD_DIR"] = os.environ["LXD_DIR"]

    seen = run_cli("maintain", "--repo", str(lab.root), "--dry-run", "--format", "json", env=env)
    assert seen.code == 0, seen.both
    (row,) = json.loads(seen.out)["idle_gpus"]
    assert (row["name"], row["owner"], row["gpu"]) == (idler, "alice", IDLE_PCI)
    assert row["notice"] == "would notify" and row["peak_utilization"] == "2"

    db.write_bytes(b"not a database at all" * 100)
    for companion in ("-wal", "-shm"):
        Path(f"{db}{companion}").unlink(missing_ok=True)
    broken = run_cli("maintain", "--repo", str(lab.root), "--dry-run", "--format", "json", env=env)
    assert broken.code == 0, broken.both
    assert "idle GPUs not checked" in broken.err and "Traceback" not in broken.both
    assert json.loads(broken.out)["idle_gpus"] == []
