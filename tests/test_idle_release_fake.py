"""Idle GPUs released with the lab's consent, as `ssp maintain` runs it, on the in-memory LXD
(where containers really hold GPU devices) and the fake GitHub through the GitHub adapter:
the idle notice, the final notice on a later pass, and on the day it names the release,
which the same pass's reconcile turns into the GPU device coming off without a restart;
the freed GPU goes to the next request; a bystander's GPU stays."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime

import pytest
from fakegithub import FAKE_REPO, FakeGitHub
from fakelxd import FakeLxd, Lab
from test_notices import client  # noqa: F401  (the fixture: the GitHub adapter on the fake)

from provisioner.flows import idlerelease, maintain
from provisioner.flows.reconcile import run_pass
from provisioner.github.issues import IssuesClient
from provisioner.planning.leases import lab_today
from provisioner.validation.validate import blocking
from provisioner.values.state import IDLE_FINAL, RELEASED
from provisioner.values.usage import IdleGpu

pytest_plugins = ["fakegithub.fixtures"]
pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

PCI = ("0000:18:00.0", "0000:3b:00.0", "0000:86:00.0", "0000:af:00.0")
SINCE = datetime(2027, 1, 1, 4, tzinfo=UTC)
USAGE = """usage:
  idle_days: 7
  idle_action: release
  idle_grace_days: 3
timezone: Asia/Shanghai"""


def gpu_devices(fake: FakeLxd, name: str) -> list[str]:
    rec = fake.record(name)
    return sorted(d["pci"] for d in rec.devices.values() if d.get("type") == "gpu")


def test_the_released_gpu_comes_off_in_the_same_pass_and_goes_to_the_next_request(
    client: IssuesClient,  # noqa: F811
    fake_github: FakeGitHub,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    lab = Lab.make(tmp_path_factory.mktemp("keys"))
    lab = lab.edited("gpu_userspace: nvidia-runtime", "gpu_userspace: image")
    lab = lab.edited("timezone: Asia/Shanghai", USAGE)
    fake = FakeLxd.seeded(present_gpus=list(PCI))
    alice = lab.container("alice-x", gpus=1)
    bob = lab.container("bob-y", owner="bob", gpus=[3])
    requests = [alice, bob]

    def day(d: date) -> maintain.Maintenance:
        now = datetime(d.year, d.month, d.day, 4, tzinfo=UTC)
        v = lab.validate(*requests, now=now)
        assert not blocking(v), v.problems
        assert v.config is not None
        policy = v.config.policy
        # alice's GPU idle since the 1st (as the usage database would say); bob's busy
        idle = [IdleGpu("", PCI[0], "alice-x", "alice", int(SINCE.timestamp()), 1)]
        holds, steps = idlerelease.before_reconcile(
            fake, policy, idle, lab_today(now, policy.timezone), dry_run=False
        )
        applied = run_pass(v, fake, fake.servers, now=now, sha="c0ffee" * 6 + "abcd")
        assert applied.result.ok, applied.result.outcomes
        return maintain.maintain(
            applied,
            fake,  # type: ignore[arg-type]
            now=now,
            notice_client=client,
            idle=idle,
            idle_holds=holds,
            idle_steps=steps,
        )

    day(date(2027, 1, 9))  # made, and the idle notice
    assert gpu_devices(fake, "alice-x") == [PCI[0]] and gpu_devices(fake, "bob-y") == [PCI[3]]
    final = day(date(2027, 1, 10))  # the final notice: release on the 13th
    assert [(s.action, s.on) for s in final.idle_steps] == [("final notice", date(2027, 1, 13))]
    assert fake.record("alice-x").config[IDLE_FINAL] == "2027-01-10"
    waits = day(date(2027, 1, 12))
    assert [s.action for s in waits.idle_steps] == ["release waits"]
    assert gpu_devices(fake, "alice-x") == [PCI[0]]

    before = len(fake.calls)
    released = day(date(2027, 1, 13))
    assert [s.action for s in released.idle_steps] == ["released"]
    # The same pass took the device off; the container was not restarted; bob kept his.
    assert gpu_devices(fake, "alice-x") == []
    assert ("stop", "alice-x") not in fake.calls[before:]
    assert fake.record("alice-x").status == "Running"
    assert fake.record("alice-x").config[RELEASED] == "2027-01-13 idle"
    assert gpu_devices(fake, "bob-y") == [PCI[3]]
    comments = [
        c.body
        for issue in fake_github.issues_of(FAKE_REPO)
        for c in fake_github.comments_on(FAKE_REPO, issue.number)
    ]
    assert sum("ssp:idle-final" in c for c in comments) == 1
    assert sum("ssp:idle-released" in c for c in comments) == 1

    # The freed GPU goes to the next request; alice's is not put back the day after.
    requests.append(lab.container("carol-z", owner="carol", gpus=1))
    day(date(2027, 1, 14))
    assert gpu_devices(fake, "carol-z") == [PCI[0]] and gpu_devices(fake, "alice-x") == []
    assert day(date(2027, 1, 15)).idle_steps == ()
    assert fake.record("alice-x").config[RELEASED] == "2027-01-13 idle"
