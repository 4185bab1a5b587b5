"""maintenance.yml's own steps on a schedule event, on the real LXD with the fake GitHub:
the fresh venv from the hashed lock, then `ssp maintain` with the job's token. A container
whose lease ended the day before is stopped and snapshotted, its owner gets one issue with
one notice, the job summary lists it, and a second run posts nothing more.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
import workflowrun
import yaml
from fakegithub import FAKE_REPO, FakeGitHub
from helpers import GitRepo
from workflowrun import WORKFLOWS, Runner

from integration.helpers import SHA, LabRepo, host_id_spans, lxc_query
from integration.test_e2e_github import actions_token
from provisioner.flows.reconcile import run_pass
from provisioner.git import files as gitfiles
from provisioner.host.ports import listening_ports
from provisioner.lxd.api import Lxd
from provisioner.validation.validate import validate_tree

pytestmark = [pytest.mark.lxd, pytest.mark.slow]

LAST = date(2027, 1, 20)


@pytest.fixture(scope="session")
def wheels() -> Path:
    return workflowrun.wheelhouse()


def test_the_daily_run_expires_a_lease_and_tells_its_owner_once(
    lab: LabRepo,
    lxd_project: str,
    lxd_socket: str,
    suffix: str,
    fake_github: FakeGitHub,
    wheels: Path,
    tmp_path: Path,
) -> None:
    name = f"ends-{suffix}"
    path, text = lab.container(name, image="busybox", expires=LAST.isoformat())
    policy = yaml.safe_dump(lab.policy(), sort_keys=False)
    origin = GitRepo.create(
        tmp_path / "origin",
        workflowrun.project_files() | {"config/policy.yaml": policy, path: text.decode()},
    )
    sha = origin.git("rev-parse", "HEAD").strip()
    # The container exists, made by an apply while the lease ran.
    lab.write((path, text))
    before = datetime.combine(LAST - timedelta(days=5), time(4), tzinfo=UTC)
    made = run_pass(
        validate_tree(gitfiles.worktree(lab.root), before),
        Lxd(lxd_project, endpoint=lxd_socket),
        lambda _i: Lxd(lxd_project, endpoint=lxd_socket),
        now=before,
        sha=SHA,
        busy_ports=listening_ports(),
        id_spans=host_id_spans(),
        ipv4_timeout_s=5,
    )
    assert made.result.ok, made.result.outcomes

    day_after = datetime.combine(LAST + timedelta(days=1), time(4), tzinfo=UTC)
    runner = Runner(
        source=origin.root,
        work=tmp_path / "runner",
        repository=FAKE_REPO,
        api_url=fake_github.url,
        secrets={"GITHUB_TOKEN": actions_token(fake_github)},
        env={"SSP_LOCK": str(tmp_path / "ssp.lock"), "SSP_NOW": day_after.isoformat()},
        wheels=wheels,
    )

    def run() -> workflowrun.JobRun:
        return runner.run_job(
            WORKFLOWS / "maintenance.yml",
            "schedule",
            {"schedule": "17 16 * * *"},
            sha=sha,
            ref="refs/heads/main",
            job="maintain",
        )

    first = run()
    assert first.ok, first.log()
    found = lxc_query(f"/1.0/instances/{name}", lxd_project)
    assert found["status"] == "Stopped"
    assert found["config"]["user.ssp.retired"] == (LAST + timedelta(days=1)).isoformat()
    (issue,) = fake_github.issues_of(FAKE_REPO)
    assert issue.author.login == "github-actions[bot]" and "@alice" in (issue.body or "")
    (notice,) = fake_github.comments_on(FAKE_REPO, issue.number)
    assert f"ended with {LAST}" in notice.body
    assert f"## Leases on {LAST + timedelta(days=1)}" in first.summary
    assert f"`{name}`" in first.summary

    second = run()
    assert second.ok, second.log()
    assert len(fake_github.issues_of(FAKE_REPO)) == 1
    assert len(fake_github.comments_on(FAKE_REPO, issue.number)) == 1
    fake_github.assert_no_violations()
