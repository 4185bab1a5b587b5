"""Idle-GPU notices in `ssp maintain` on a real LXD with the fake GitHub: a GPU the usage
database shows held but idle for the policy's days gets one comment in its container's
lease issue, mentioning the owner, once per idle stretch; a GPU in use, a bystander and the
containers themselves are left alone (a notice only: nothing is released or stopped).
Where the policy consents (`usage.idle_action: release`), a final notice follows, and its
grace over, the idle container's GPUs are released while it keeps running with its data; a
failed final notice delays the release, a container used again is not released, a bystander
is untouched, and a renewal gives the GPUs back.

The readings are what `ssp sample` records (tests/integration/test_sample_real.py checks
that on the real LXD); here they name the busybox containers as holders, since a container
with a real GPU device cannot start on a machine without GPUs.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakegithub import FAKE_REPO, FakeGitHub
from helpers import ENV, NOW, run_cli
from nvml_standin import NvmlStandin, seed_server

from integration.helpers import Adapters, LabRepo, apply_pass, in_instance
from integration.test_leases_real import Lab, noon
from provisioner.flows import idlerelease, maintain, sample, usagesummary
from provisioner.flows.usage import idle_now
from provisioner.git import files as gitfiles
from provisioner.gpu.nvml import read_gpus
from provisioner.host.usagedb import UsageDb
from provisioner.lxd.api import Lxd
from provisioner.planning.leases import lab_today
from provisioner.status import page
from provisioner.status.server import build
from provisioner.validation.validate import Validation, validate_tree
from provisioner.values import state
from provisioner.values.models import Inventory
from provisioner.values.policymodels import Policy
from provisioner.values.state import Instance
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


# --- releases with the policy's consent ----------------------------------------------------

# The seed server's cards (tests/nvml_standin.py), NVML's bus ids in LXD's form.
CARDS = ("0000:1a:00.0", "0000:4b:00.0", "0000:b1:00.0", "0000:ca:00.0")


class Holding:
    """The real LXD as the sampler sees it on a GPU host: these containers hold these cards.
    (A busybox container with a real `gpu` device cannot start on a machine without GPUs.)"""

    def __init__(self, lxd: Lxd, cards: dict[str, str]) -> None:
        self.lxd, self.cards = lxd, cards

    def instances(self) -> list[Instance]:
        out = []
        for found in self.lxd.instances():
            pci = self.cards.get(found.name)
            if pci is not None and not found.gpus_released:  # a release takes the device off
                devices = {**found.devices, "gpu0": {"type": "gpu", "pci": pci}}
                found = Instance(  # noqa: PLW2901  (the same instance, as a GPU host shows it)
                    found.name, found.status, found.config, devices, found.location
                )
            out.append(found)
        return out

    def members(self) -> dict[str, str]:
        return self.lxd.members()

    def server_name(self) -> str:
        return self.lxd.server_name()


def consent_day(world: Lab, day: date, db: Path) -> maintain.Maintenance:
    """One `ssp maintain` as the command runs it: the idle GPUs from the usage database and
    the releases before the reconcile, then the reconcile, the upkeep and the notices."""

    def before(validation: Validation, now: datetime) -> dict[str, Any]:
        assert validation.config is not None
        policy = validation.config.policy
        idle = idle_now(db, policy, now)
        holds, steps = idlerelease.before_reconcile(
            world.lxd, policy, idle, lab_today(now, policy.timezone), dry_run=False
        )
        month_use = usagesummary.last_month(db, policy, now)
        return {"idle": idle, "idle_holds": holds, "idle_steps": steps, "month_use": month_use}

    world.before_pass = before
    return world.day(day)


def comments(gh: FakeGitHub, name: str, kind: str) -> list[str]:
    return [
        c.body
        for issue in gh.issues_of(FAKE_REPO)
        if f"<!-- ssp:lease {name} -->" in (issue.body or "")
        for c in gh.comments_on(FAKE_REPO, issue.number)
        if f"ssp:idle-{kind}" in c.body
    ]


def test_with_consent_an_idle_gpu_is_released_after_the_final_notice_reached_its_owner(
    lab: LabRepo,
    lxd_project: str,
    lxd_socket: str,
    fake_github: FakeGitHub,
    suffix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = Lab(lab, lxd_project, lxd_socket, fake_github)
    idler, woke, busy = f"idler-{suffix}", f"woke-{suffix}", f"busy-{suffix}"
    world.requests = {
        idler: lab.container(idler, image="busybox", expires=LAST.isoformat()),
        woke: lab.container(woke, image="busybox", expires=LAST.isoformat()),
        busy: lab.container(busy, owner="bob", image="busybox", expires=LAST.isoformat()),
    }
    world.policy_changes = {
        "usage": {
            "idle_days": 7,
            "idle_utilization": 5,
            "idle_action": "release",
            "idle_grace_days": 3,
        }
    }
    start = date(2027, 1, 1)
    world.day(start)
    in_instance(lxd_project, idler, "sh", "-c", "echo thesis-data > /root/keep")
    bystander = world.config(busy)

    # The sampler every 6 hours through NVML's stand-in: idler's and woke's cards at 0 %,
    # bob's busy; `busy_on` makes woke's card busy at one pass.
    standin = NvmlStandin(seed_server()).install(monkeypatch)
    holding = Holding(world.lxd, {idler: CARDS[1], woke: CARDS[2], busy: CARDS[3]})
    db = tmp_path / "usage.sqlite"
    policy = Policy.model_validate(world.lab.policy() | world.policy_changes)
    sampled_to = [noon(start)]

    def sample_until(day: date, busy_on: datetime | None = None) -> None:
        while sampled_to[0] <= noon(day):
            at = sampled_to[0]
            for gpu, util in zip(standin.gpus, (0, 0, 70 if at == busy_on else 0, 88), strict=True):
                gpu.utilization = util
            done = sample.sample(lambda: holding, db, policy.usage, now=at, read_gpus=read_gpus)
            assert len(done.readings) == 4, done.why
            sampled_to[0] = at + timedelta(hours=6)

    # Idle 8 days: the idle notice, no final notice yet (it comes on a later pass).
    sample_until(date(2027, 1, 9))
    first = consent_day(world, date(2027, 1, 9), db)
    assert {s.name for s in first.idle_sent if s.new} == {idler, woke}
    assert comments(fake_github, idler, "final") == []

    # The next day the final notice is due, but GitHub refuses it: nothing is recorded.
    sample_until(date(2027, 1, 10))
    fake_github.fail_next(2, status=422, method="POST", path_prefix=f"/repos/{FAKE_REPO}/issues")
    failed = consent_day(world, date(2027, 1, 10), db)
    assert {s.container for s in failed.idle_steps if s.action == "final notice not sent"} == {
        idler,
        woke,
    }
    assert state.IDLE_FINAL not in world.config(idler)

    # A day later it reaches the owner; the release day it names is three days on.
    sample_until(date(2027, 1, 11))
    told = consent_day(world, date(2027, 1, 11), db)
    (final,) = comments(fake_github, idler, "final")
    assert "@alice" in final and "released on 2027-01-14" in final and CARDS[1] in final
    assert world.config(idler)[state.IDLE_FINAL] == "2027-01-11"
    assert any(s.action == "final notice" and s.container == woke for s in told.idle_steps)

    # Woke's card is used once before the day; idler's is not. On the 13th: nothing yet.
    sample_until(date(2027, 1, 13), busy_on=noon(date(2027, 1, 12)))
    waiting = consent_day(world, date(2027, 1, 13), db)
    assert [(s.container, s.action) for s in waiting.idle_steps] == [(idler, "release waits")]
    assert state.RELEASED not in world.config(idler)

    # The 14th: idler's GPUs are released; it keeps running with its data; woke keeps its.
    sample_until(date(2027, 1, 14))
    released = consent_day(world, date(2027, 1, 14), db)
    assert [(s.container, s.action) for s in released.idle_steps] == [(idler, "released")]
    assert world.config(idler)[state.RELEASED] == "2027-01-14 idle"
    assert world.status(idler) == "Running"
    kept = in_instance(lxd_project, idler, "cat", "/root/keep")
    assert kept.stdout.strip() == "thesis-data"
    assert state.RELEASED not in world.config(woke) and world.status(woke) == "Running"
    assert world.config(busy) == bystander and world.status(busy) == "Running"
    (said,) = comments(fake_github, idler, "released")
    assert "@alice" in said and "/ssp start" in said
    report = maintain.text_lines(released, policy.timezone)
    assert any(idler in line and "idle GPUs: released" in line for line in report)

    # Its status row says so, in the guides' words.
    observed = world.lxd.instances()
    status = build(
        policy=policy,
        inventory=validation_inventory(world),
        requests=(),
        instances=observed,
        servers=(),
        now=noon(date(2027, 1, 14)),
        today=date(2027, 1, 14),
    )
    (row,) = [c for c in status.containers if c.name == idler]
    assert page.released(row) == (
        "GPUs released for idleness on 2027-01-14; /ssp start or renew to get them back"
    )
    assert page.released(row) in page.html(status, policy.timezone)

    # A renewal: the apply updates the lease, the next maintenance gives the GPUs back.
    world.requests[idler] = lab.container(idler, image="busybox", expires="2027-12-31")
    consent_day(world, date(2027, 1, 15), db)
    # The lease's update kept the release: the GPUs come back only on the next pass.
    assert world.config(idler)[state.RELEASED] == "2027-01-14 idle"
    back = consent_day(world, date(2027, 1, 16), db)
    assert [(s.container, s.action) for s in back.idle_steps] == [(idler, "GPUs asked for again")]
    assert state.RELEASED not in world.config(idler)
    assert world.config(busy) == bystander
    # Every pass looked for December's GPU-hours summary; one issue was opened, once.
    (summary,) = [i for i in fake_github.issues_of(FAKE_REPO) if i.title.startswith("GPU-hours")]
    assert summary.title == "GPU-hours in 2026-12" and "No GPU was held" in (summary.body or "")
    assert "GPU-hours of 2026-12: summary issue already open" in maintain.text_lines(back)[-1]


def validation_inventory(world: Lab) -> Inventory:
    validation = validate_tree(gitfiles.worktree(world.lab.root), noon(date(2027, 1, 14)))
    assert validation.config is not None
    return validation.config.inventory
