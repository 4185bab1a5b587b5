"""The comment commands end to end: commands.yml's own steps on an `issue_comment` event (valid
against GitHub's webhook schema), on the real LXD, answering through the fake GitHub.

The story, in one test because each step builds on the one before (one container, made by a
reconcile pass as after its merge; its lease issue written by the workflow's bot):
1. alice's `/ssp restart` on her lease issue: the container was started again; 👀 then 👍 on
   her comment, and an answer in the thread;
2. `/ssp stop`: stopped, `user.ssp.released` is "<today> owner";
3. `/ssp start`: running, the mark gone;
4. `/ssp snapshot`: a snapshot named by ssp;
5. bob's `/ssp stop` (a collaborator, not the owner): refused, the answer says only @alice or
   an admin may, 😕 on his comment, the container untouched;
6. a stranger's comment (association NONE) and a comment that is no command: the job's `if:`
   is false, so no step runs at all.
Then, through `ssp comment` itself (the same code the job runs, without a venv per run): the
rate limit, a comment on an unmerged pull request (it names nothing) and one on the merged
pull request that added the request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import workflowrun
import yaml
from fakegithub import FAKE_REPO, FakeGitHub
from fakegithub.events import issue_comment_event
from helpers import GitRepo
from workflowrun import WORKFLOWS, Runner

from integration.helpers import Adapters, LabRepo, apply_pass, lxc_query
from integration.test_e2e_github import actions_token
from provisioner import cli
from provisioner.values.issues import LEASE_LABEL, lease_marker
from provisioner.values.state import RELEASED

pytestmark = [pytest.mark.lxd, pytest.mark.slow]

BOT = "github-actions[bot]"


@pytest.fixture(scope="session")
def wheels() -> Path:
    return workflowrun.wheelhouse()


@dataclass(frozen=True)
class _Lab:
    """One busybox container, made by a pass as after its merge, and main with its request."""

    name: str
    path: str  # its request file
    origin: GitRepo  # main, as the runner's checkout fetches it
    token: str  # the workflow's GITHUB_TOKEN (an installation token: its comments are a bot's)


def _lab(
    lab: LabRepo,
    adapters: Adapters,
    gh: FakeGitHub,
    tmp_path: Path,
    name: str,
    commands: dict[str, int],
) -> _Lab:
    request = lab.container(name, image="busybox")
    lab.settings["commands"] = commands
    made = apply_pass(lab, adapters, request)
    assert made.result.ok, [(o.name, o.action, o.message) for o in made.result.outcomes]
    policy = yaml.safe_dump(lab.policy(), sort_keys=False)
    files = workflowrun.project_files() | {"config/policy.yaml": policy}
    origin = GitRepo.create(tmp_path / "origin", files | {request[0]: request[1].decode()})
    return _Lab(name, request[0], origin, actions_token(gh))


def _instance(name: str, project: str) -> dict[str, Any]:
    found: dict[str, Any] = lxc_query(f"/1.0/instances/{name}?recursion=1", project)
    return found


def _snapshot(url: str) -> str:
    """A snapshot's name from its URL in LXD's listing (`…/snapshots/NAME?project=P`)."""
    return url.split("?", 1)[0].rsplit("/", 1)[-1]


def _answer(gh: FakeGitHub, number: int, comment_id: int) -> str:
    (answer,) = [
        c
        for c in gh.comments_on(FAKE_REPO, number)
        if f"<!-- ssp:command {comment_id} -->" in c.body
    ]
    assert answer.author.login == BOT
    return answer.body


def test_members_command_their_container_from_its_lease_issue(
    lab: LabRepo,
    adapters: Adapters,
    lxd_project: str,
    unique: Callable[[str], str],
    fake_github: FakeGitHub,
    wheels: Path,
    tmp_path: Path,
) -> None:
    name = unique("cmd")
    made = _lab(lab, adapters, fake_github, tmp_path, name, {"per_hour": 4, "snapshots": 2})
    origin, token = made.origin, made.token
    issue = fake_github.add_issue(
        FAKE_REPO,
        author=BOT,
        title=f"Lease of {name}",
        body=f"{lease_marker(name)}\n@alice: the lease of `{name}` ends with 2027-06-30.",
        labels=(LEASE_LABEL,),
    )
    ledger = tmp_path / "commands.json"
    runner = Runner(
        source=origin.root,
        work=tmp_path / "runner",
        repository=FAKE_REPO,
        api_url=fake_github.url,
        secrets={"GITHUB_TOKEN": token},
        env={"SSP_LOCK": str(tmp_path / "ssp.lock"), "SSP_COMMANDS_LEDGER": str(ledger)},
        wheels=wheels,
    )
    sha = origin.git("rev-parse", "HEAD").strip()

    def command(body: str, author: str = "alice", association: str = "COLLABORATOR") -> Any:
        comment = fake_github.add_comment(
            FAKE_REPO, issue.number, body, author=author, association=association
        )
        event = issue_comment_event(issue, comment, site=fake_github.site)
        run = runner.run_job(
            WORKFLOWS / "commands.yml",
            "issue_comment",
            event,
            sha=sha,
            ref="refs/heads/main",
            job="command",
        )
        return comment, run, event

    started = _instance(name, lxd_project)["state"]["pid"]
    comment, run, _ = command("/ssp restart")
    assert run.ok, run.log()
    after = _instance(name, lxd_project)
    assert after["status"] == "Running" and after["state"]["pid"] != started
    assert fake_github.reactions_on(comment.id) == [(BOT, "eyes"), (BOT, "+1")]
    assert "stopped and started again" in _answer(fake_github, issue.number, comment.id)
    assert f"`/ssp restart` on `{name}`" in run.summary

    comment, run, event = command("/ssp stop")
    assert run.ok, run.log()
    after = _instance(name, lxd_project)
    today = datetime.now(ZoneInfo(lab.policy()["timezone"])).date()
    assert after["status"] == "Stopped"
    assert after["config"][RELEASED] == f"{today} owner"
    assert "GPUs went back to the pool" in _answer(fake_github, issue.number, comment.id)
    # the workflow's publish job follows the command: the page shows it stopped at once
    page_run = runner.run_job(
        WORKFLOWS / "commands.yml",
        "issue_comment",
        event,
        sha=sha,
        ref="refs/heads/main",
        job="publish",
        needs={"command": "success"},
    )
    assert page_run.ok, page_run.log()
    db = fake_github.git[FAKE_REPO.lower()]
    files = db.files(db.objects[db.refs["refs/heads/ssp-state"]].data["tree"])
    snap = json.loads(files["snapshot.json"])
    (published,) = [i for i in snap["instances"] if i["name"] == name]
    assert not published["running"] and published["released"], published

    comment, run, _ = command("/ssp start  ")  # trailing blanks are fine
    assert run.ok, run.log()
    after = _instance(name, lxd_project)
    assert after["status"] == "Running" and RELEASED not in after["config"]
    assert fake_github.reactions_on(comment.id) == [(BOT, "eyes"), (BOT, "+1")]

    comment, run, _ = command("/ssp snapshot")
    assert run.ok, run.log()
    snapshots = lxc_query(f"/1.0/instances/{name}/snapshots", lxd_project)
    (taken,) = [_snapshot(s) for s in snapshots if "/ssp-cmd-" in s]
    assert f"Snapshot `{taken}` was taken" in _answer(fake_github, issue.number, comment.id)

    # bob is a collaborator, but not the container's owner nor an admin
    comment, run, _ = command("/ssp stop", author="bob")
    assert run.ok, run.log()  # a refusal is an answer, not a failed run
    assert _instance(name, lxd_project)["status"] == "Running"
    said = _answer(fake_github, issue.number, comment.id)
    assert "only @alice (its owner) or an admin may `/ssp stop` this container" in said
    assert "Nothing was changed" in said
    assert fake_github.reactions_on(comment.id) == [(BOT, "eyes"), (BOT, "confused")]

    # the job's gate: a stranger's command and a comment that is no command take no runner
    for body, association in (("/ssp stop", "NONE"), ("thanks, works now", "COLLABORATOR")):
        comment, run, _ = command(body, association=association)
        assert run.condition_false and not run.steps, run.log()
        assert fake_github.reactions_on(comment.id) == []
    assert _instance(name, lxd_project)["status"] == "Running"
    fake_github.assert_no_violations()


def _ssp_comment(
    event: Mapping[str, Any],
    repo: Path,
    tmp_path: Path,
    gh: FakeGitHub,
    token: str,
    now: datetime | None = None,
) -> int:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    env = {
        "GITHUB_TOKEN": token,
        "GITHUB_REPOSITORY": FAKE_REPO,
        "GITHUB_API_URL": gh.url,
        "SSP_LOCK": str(tmp_path / "ssp.lock"),
        "SSP_COMMANDS_LEDGER": str(tmp_path / "commands.json"),
    } | ({"SSP_NOW": now.isoformat()} if now else {})
    return cli.main(["comment", "--repo", str(repo), "--event", str(path)], env)


def test_the_rate_limit_and_which_pull_requests_name_a_container(
    lab: LabRepo,
    adapters: Adapters,
    lxd_project: str,
    unique: Callable[[str], str],
    fake_github: FakeGitHub,
    tmp_path: Path,
) -> None:
    name = unique("lim")
    made = _lab(lab, adapters, fake_github, tmp_path, name, {"per_hour": 2})
    repo, token, path = made.origin.root, made.token, made.path

    # A pull request that is not merged names nothing, whatever its files say.
    open_pull = fake_github.add_pull(FAKE_REPO, author="alice", title="Mine", files=[path])
    comment = fake_github.add_comment(FAKE_REPO, open_pull.number, "/ssp stop", author="alice")
    event = issue_comment_event(open_pull, comment, site=fake_github.site)
    assert _ssp_comment(event, repo, tmp_path, fake_github, token) == 0
    said = _answer(fake_github, open_pull.number, comment.id)
    assert "this pull request is not merged" in said
    assert fake_github.reactions_on(comment.id) == [(BOT, "eyes"), (BOT, "confused")]
    assert _instance(name, lxd_project)["status"] == "Running"

    # The merged pull request that added the request names its container.
    merged = fake_github.add_pull(FAKE_REPO, author="alice", title="Add", files=[path])
    fake_github.merge_pull(FAKE_REPO, merged.number, merged_by="lab-admin")
    results = []
    for _ in range(3):
        comment = fake_github.add_comment(FAKE_REPO, merged.number, "/ssp restart", author="alice")
        event = issue_comment_event(merged, comment, site=fake_github.site)
        assert _ssp_comment(event, repo, tmp_path, fake_github, token) == 0
        results.append((comment.id, _answer(fake_github, merged.number, comment.id)))
    assert [f"`/ssp restart` on container `{name}`: done" in said for _, said in results] == [
        True,
        True,
        False,
    ]
    third_id, third = results[-1]
    assert "2 commands in the last hour" in third and "`commands.per_hour: 2`" in third
    assert fake_github.reactions_on(third_id) == [(BOT, "eyes"), (BOT, "confused")]
    fake_github.assert_no_violations()


def test_snapshot_keeps_the_policy_s_number_of_its_own_and_no_more(
    lab: LabRepo,
    adapters: Adapters,
    lxd_project: str,
    unique: Callable[[str], str],
    fake_github: FakeGitHub,
    tmp_path: Path,
) -> None:
    name = unique("snap")
    made = _lab(lab, adapters, fake_github, tmp_path, name, {"per_hour": 10, "snapshots": 2})
    adapters.main.snapshot(name, "mine")  # an admin's: never touched
    repo, token = made.origin.root, made.token
    issue = fake_github.add_issue(
        FAKE_REPO, author=BOT, title="Lease", body=lease_marker(name), labels=(LEASE_LABEL,)
    )
    for minute in (1, 2, 3):
        comment = fake_github.add_comment(FAKE_REPO, issue.number, "/ssp snapshot", author="alice")
        event = issue_comment_event(issue, comment, site=fake_github.site)
        when = datetime(2026, 12, 7, 9, minute, tzinfo=ZoneInfo("UTC"))
        assert _ssp_comment(event, repo, tmp_path, fake_github, token, when) == 0
    listed = lxc_query(f"/1.0/instances/{name}/snapshots", lxd_project)
    assert sorted(_snapshot(s) for s in listed) == [
        "mine",
        "ssp-cmd-20261207-090200",
        "ssp-cmd-20261207-090300",
    ]
    said = _answer(fake_github, issue.number, comment.id)
    assert "To keep 2, `ssp-cmd-20261207-090100` went." in said
