"""Leases on a real LXD with the clock pinned and notices on the fake GitHub: a lease that
ends is stopped, snapshotted and its owner told once; each reminder day is one notice; a
renewal starts it again with its data; past retention a container is deleted only with the
policy's consent, after a final notice, exported first when asked; nothing else is touched.

Every pass is what `ssp maintain` runs: the reconcile (`run_pass`) on the real adapters, then
`maintain.maintain` with the GitHub adapter's issues (PyGithub) against the fake. Containers
are the busybox test image: seconds each.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakegithub import FAKE_REPO, FakeGitHub

from integration.helpers import SHA, LabRepo, host_id_spans, in_instance, lxc_query
from provisioner.flows import maintain
from provisioner.flows.reconcile import run_pass
from provisioner.git import files as gitfiles
from provisioner.github.issues import IssuesClient
from provisioner.host.ports import listening_ports
from provisioner.lxd.api import Lxd
from provisioner.planning.leases import WARNED
from provisioner.validation.validate import Validation, blocking, validate_tree
from provisioner.values import state
from provisioner.values.usage import IdleGpu

pytestmark = pytest.mark.lxd

LAST = date(2027, 1, 20)  # the last day of the lease


def noon(day: date) -> datetime:
    """Noon in the lab (Asia/Shanghai) on DAY, as the clock handed in."""
    return datetime.combine(day, time(4, 0), tzinfo=UTC)


class Lab:
    """One lab checkout, its LXD project, the fake GitHub: `day(d)` is one maintenance run."""

    def __init__(self, lab: LabRepo, project: str, socket: str, gh: FakeGitHub) -> None:
        self.lab, self.project, self.gh = lab, project, gh
        self.lxd = Lxd(project, endpoint=socket)
        self.client = IssuesClient(
            repository=FAKE_REPO, token=gh.token, api_url=gh.url, sleep=lambda _s: None
        )
        self.requests: dict[str, tuple[str, bytes]] = {}
        self.policy_changes: dict[str, Any] = {}
        self.idle: list[IdleGpu] = []  # what `ssp maintain` reads from the usage database
        # what `ssp maintain` does before the reconcile (the idle releases): more arguments
        # for `maintain.maintain`, given the pass's validation and clock
        self.before_pass: Callable[[Validation, datetime], dict[str, Any]] | None = None

    def write_policy(self) -> None:
        self.lab.write(*self.requests.values())
        policy = self.lab.policy() | self.policy_changes
        path = self.lab.root / "config" / "policy.yaml"
        path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")

    def day(self, day: date, *, dry_run: bool = False) -> maintain.Maintenance:
        self.write_policy()
        now = noon(day)
        validation = validate_tree(gitfiles.worktree(self.lab.root), now)
        assert not blocking(validation), [str(p) for p in validation.problems]
        more = self.before_pass(validation, now) if self.before_pass else {"idle": self.idle}
        applied = run_pass(
            validation,
            self.lxd,
            lambda _i: self.lxd,
            now=now,
            sha=SHA,
            busy_ports=listening_ports(),
            id_spans=host_id_spans(),
            pin_ids=True,
            ipv4_timeout_s=5,
            dry_run=dry_run,
        )
        assert applied.result.ok, applied.result.outcomes
        return maintain.maintain(applied, self.lxd, now=now, notice_client=self.client, **more)

    def config(self, name: str) -> dict[str, str]:
        return dict(lxc_query(f"/1.0/instances/{name}", self.project)["config"])

    def status(self, name: str) -> str:
        return str(lxc_query(f"/1.0/instances/{name}", self.project)["status"])

    def exists(self, name: str) -> bool:
        names = lxc_query("/1.0/instances", self.project)
        return any(str(n).rsplit("/", 1)[-1].split("?")[0] == name for n in names)

    def notices(self, name: str) -> list[str]:
        return [
            c.body
            for issue in self.gh.issues_of(FAKE_REPO)
            if f"<!-- ssp:lease {name} -->" in (issue.body or "")
            for c in self.gh.comments_on(FAKE_REPO, issue.number)
            if "ssp:lease-notice" in c.body
        ]

    def issue_state(self, name: str) -> str:
        (issue,) = [
            i
            for i in self.gh.issues_of(FAKE_REPO)
            if f"<!-- ssp:lease {name} -->" in (i.body or "")
        ]
        return issue.state


@pytest.fixture
def world(lab: LabRepo, lxd_project: str, lxd_socket: str, fake_github: FakeGitHub) -> Lab:
    return Lab(lab, lxd_project, lxd_socket, fake_github)


def test_a_lease_ends_is_told_once_and_a_renewal_brings_it_back_with_its_data(
    world: Lab, suffix: str
) -> None:
    name, other = f"lease-{suffix}", f"keeps-{suffix}"
    world.requests = {
        name: world.lab.container(name, image="busybox", expires=LAST.isoformat()),
        other: world.lab.container(
            other, owner="bob", image="busybox", expires=(LAST + timedelta(days=200)).isoformat()
        ),
    }
    world.day(LAST - timedelta(days=20))
    assert world.status(name) == "Running"
    in_instance(world.project, name, "sh", "-c", "echo thesis-data > /root/keep")
    bystander = world.config(other)

    # Reminder days: 14 and 3 days before the last day; every day in between runs too.
    for left in (14, 13, 4, 3, 1):
        world.day(LAST - timedelta(days=left))
    assert len(world.notices(name)) == 2
    assert world.status(name) == "Running"  # the last day is still part of the lease

    # The day after: stopped, snapshotted, told once (the rerun adds nothing).
    ended = LAST + timedelta(days=1)
    world.day(ended)
    world.day(ended)
    assert world.status(name) == "Stopped"
    config = world.config(name)
    assert config[state.RETIRED] == ended.isoformat()
    assert config[state.STATE] == "expired"  # not "retired": its owner may renew it
    snapshots = lxc_query(f"/1.0/instances/{name}/snapshots", world.project)
    assert any(f"retired-{ended:%Y%m%d}" in str(s) for s in snapshots)
    told = world.notices(name)
    assert len(told) == 3 and f"ended with {LAST}" in told[-1]
    assert "@alice" in told[-1]

    # Renewal: a later `expires`, and the next run starts it with the file still there.
    renewed = LAST + timedelta(days=60)
    world.requests[name] = world.lab.container(name, image="busybox", expires=renewed.isoformat())
    world.day(ended + timedelta(days=1))
    assert world.status(name) == "Running"
    assert state.RETIRED not in world.config(name)
    assert world.config(name)[state.STATE] == "ready"
    kept = in_instance(world.project, name, "cat", "/root/keep").stdout
    assert kept.strip() == "thesis-data"
    assert world.issue_state(name) == "closed"
    assert len(world.notices(name)) == 3

    # Nothing else was touched: bob's container is as it was, and never told anything.
    assert world.status(other) == "Running"
    assert world.config(other) == bystander
    assert world.notices(other) == []


def test_past_retention_only_with_consent_after_a_final_notice_exported_first(
    world: Lab, suffix: str, tmp_path: Path
) -> None:
    name, other = f"gone-{suffix}", f"stays-{suffix}"
    exports = tmp_path / "exports"
    world.requests = {
        name: world.lab.container(name, image="busybox", expires=LAST.isoformat()),
        other: world.lab.container(
            other, owner="bob", image="busybox", expires=(LAST + timedelta(days=200)).isoformat()
        ),
    }
    world.policy_changes = {"retention_days": 5}
    world.day(LAST - timedelta(days=20))
    bystander = world.config(other)
    retired = LAST + timedelta(days=1)
    world.day(retired)
    assert world.status(name) == "Stopped"

    # No consent: kept long past retention, no final notice.
    far = retired + timedelta(days=30)
    done = world.day(far)
    assert world.exists(name)
    assert [s.action for s in done.steps] == ["kept"]
    assert not any("last notice" in n for n in world.notices(name))

    # Consent, with an export: the final notice first, then (days later) the export and
    # deletion. The dry run on the deletion day lists it and changes nothing.
    world.policy_changes = {
        "retention_days": 5,
        "retention": {"delete": True, "final_notice_days": 2, "export_dir": str(exports)},
    }
    world.day(far)
    assert world.exists(name)
    assert world.config(name)[WARNED] == far.isoformat()
    assert sum("last notice" in n for n in world.notices(name)) == 1
    world.day(far + timedelta(days=1))
    assert world.exists(name)
    dry = world.day(far + timedelta(days=2), dry_run=True)
    assert [(s.name, s.action) for s in dry.steps] == [(name, "would delete")]
    assert world.exists(name) and not exports.exists()

    done = world.day(far + timedelta(days=2))
    assert [(s.name, s.action) for s in done.steps] == [(name, "deleted")]
    assert not world.exists(name)
    (tarball,) = exports.iterdir()
    assert tarball.name == f"{name}-{retired}.tar.gz"
    assert tarball.stat().st_mode & 0o077 == 0
    with tarfile.open(tarball) as archive:
        assert "backup/index.yaml" in archive.getnames()
    assert world.issue_state(name) == "closed"  # gone: its issue is closed
    assert world.exists(other) and world.config(other) == bystander
