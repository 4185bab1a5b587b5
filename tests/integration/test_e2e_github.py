"""End to end: a pull request for requests/alice/alice-thesis.yaml, from the PR check to a
working `ssh -p` command in a comment on the merged pull request.

Everything the workflows run is real: their `run:` steps (tests/workflowrun.py) install ssp
from the checked-out commit into a fresh venv and run it; `ssp apply` drives the real LXD
(a Debian clone of `Common-Server/golden` in the test's own project, ports on 127.0.0.1 in a
free range) and comments through the fake GitHub, which holds every request and answer to
GitHub's OpenAPI description. The job's token is an installation token, as Actions' own
GITHUB_TOKEN is, so the comment is by a bot. Alice asks for no GPU, so the GPU check is not
switched off: it is simply not needed, and the container really runs.

The story, in one test because each step builds on the one before:
1. validate.yml on the PR event: passes, with the job summary;
2. merge (git and the fake GitHub), then apply.yml on the push while GitHub answers 500 to
   comments: exit 0, the container runs, no comment, a warning on the run; then the run's
   publish job: the new container on the ssp-state branch and in the Pages artifact at once;
3. apply.yml again (a re-run): exactly one comment, by the bot, with the container's real
   address and an SSH command that logs in as alice with her request's key;
4. apply.yml again: the same comment is edited, not a second one added;
5. maintenance.yml on its schedule: nothing left to change, no lease needs anything.
6. its publish job: the host's state on the ssp-state branch, without the container's address.
"""

from __future__ import annotations

import re
import tarfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import workflowrun
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fakegithub import FAKE_REPO, FakeGitHub
from fakegithub.events import PushCommit, pull_request_event, push_event
from helpers import GitRepo
from workflowrun import WORKFLOWS, JobRun, Runner

from integration.helpers import LabRepo, lxc_query, ssh_until_ok
from provisioner.reporting.mergecomment import MARKER

pytestmark = [pytest.mark.lxd, pytest.mark.slow]

REQUEST = "requests/alice/alice-thesis.yaml"
ACTIONS_APP = 15368  # the id of the "github-actions" App on github.com
SSH_COMMAND = re.compile(r"`(ssh -p (\d+) alice@127\.0\.0\.1)`")


@pytest.fixture(scope="session")
def wheels() -> Path:
    return workflowrun.wheelhouse()


def actions_token(gh: FakeGitHub) -> str:
    """What Actions hands a job as GITHUB_TOKEN: an installation token of its own App."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    gh.add_app(ACTIONS_APP, public.decode(), slug="github-actions")
    gh.install_app(ACTIONS_APP, FAKE_REPO, 4711)
    return gh.installation_token(ACTIONS_APP, 4711)


def container_ipv4(project: str, name: str) -> str | None:
    state = lxc_query(f"/1.0/instances/{name}/state", project)
    for address in ((state.get("network") or {}).get("eth0") or {}).get("addresses", []):
        if address["family"] == "inet" and address["scope"] == "global":
            return str(address["address"])
    return None


def status(project: str, name: str) -> str:
    return str(lxc_query(f"/1.0/instances/{name}", project)["status"])


def apply(runner: Runner, push: dict[str, Any], merge: str) -> JobRun:
    return runner.run_job(
        WORKFLOWS / "apply.yml", "push", push, sha=merge, ref="refs/heads/main", job="apply"
    )


def publish_after(runner: Runner, push: dict[str, Any], merge: str, applied: str) -> JobRun:
    """apply.yml's publish job, after an apply job that ended APPLIED."""
    return runner.run_job(
        WORKFLOWS / "apply.yml",
        "push",
        push,
        sha=merge,
        ref="refs/heads/main",
        job="publish",
        needs={"apply": applied},
    )


def test_pull_request_to_a_working_ssh_command_in_a_comment(
    lxd_project: str, fake_github: FakeGitHub, wheels: Path, tmp_path: Path
) -> None:
    # --- the lab's repository: this project's code, a policy for the test's LXD project ---
    lab = LabRepo.make(tmp_path / "lab", lxd_project, lxd_project.rsplit("-", 1)[-1])
    policy = yaml.safe_dump(lab.policy(), sort_keys=False)
    origin = GitRepo.create(
        tmp_path / "origin", workflowrun.project_files() | {"config/policy.yaml": policy}
    )
    base = origin.git("rev-parse", "HEAD").strip()
    path, text = lab.container(
        "alice-thesis",
        purpose="Diffusion experiments for my thesis",
        shares=["share"],
        snapshots="daily",
        expires=date.today() + timedelta(days=90),
    )
    assert path == REQUEST
    origin.branch("alice/thesis")
    head = origin.commit({REQUEST: text.decode()}, "Add alice-thesis")
    origin.checkout("main")

    token = actions_token(fake_github)
    pull = fake_github.add_pull(
        FAKE_REPO,
        author="alice",
        title="Add alice-thesis",
        head_sha=head,
        head_ref="alice/thesis",
        base_sha=base,
        files=[REQUEST],
        commits=[(head, "alice", "alice")],  # who wrote it, as the PR check reads it
    )
    runner = Runner(
        source=origin.root,
        work=tmp_path / "runner",
        repository=FAKE_REPO,
        api_url=fake_github.url,
        secrets={"GITHUB_TOKEN": token},
        env={"SSP_LOCK": str(tmp_path / "ssp-apply.lock")},
        wheels=wheels,
    )

    # --- 1. the PR check ---
    origin.git("checkout", "-q", "--detach", base)
    origin.git("merge", "-q", "--no-ff", "-m", "test merge", head)
    test_merge = origin.git("rev-parse", "HEAD").strip()
    origin.checkout("main")
    check = runner.run_job(
        WORKFLOWS / "validate.yml",
        "pull_request",
        pull_request_event("opened", pull, site=fake_github.site),
        sha=test_merge,
        ref=f"refs/pull/{pull.number}/merge",
    )
    assert check.ok, check.log()
    assert [a for a in check.annotations if a.level == "error"] == []
    assert check.summary.startswith("## ✅ Request check passed")
    assert f"`{REQUEST}`" in check.summary

    # --- 2. merge; GitHub fails at comment time ---
    origin.git("merge", "-q", "--no-ff", "-m", f"Merge pull request #{pull.number}", head)
    merge = origin.git("rev-parse", "HEAD").strip()
    fake_github.merge_pull(FAKE_REPO, pull.number, merge_commit_sha=merge, merged_by="lab-admin")
    push = push_event(
        fake_github.repo(FAKE_REPO),
        before=base,
        after=merge,
        commits=[PushCommit(merge, f"Merge pull request #{pull.number}", added=[REQUEST])],
        site=fake_github.site,
    )
    # every attempt the client makes at the comment (it tries 4 times, backing off 1, 2, 4 s)
    fake_github.fail_next(4, 500, path_prefix=f"/repos/{FAKE_REPO}/issues/")

    first = apply(runner, push, merge)

    assert first.ok, first.log()  # the host's result, not GitHub's
    assert status(lxd_project, "alice-thesis") == "Running"
    assert fake_github.comments_on(FAKE_REPO, pull.number) == []
    (warning,) = [a for a in first.annotations if a.level == "warning"]
    assert warning.title == "PR comment not posted"
    assert "500" in warning.message
    assert token not in first.output
    # persist-credentials: false, so the checkout keeps no token for later steps
    assert token not in (first.workspace / ".git" / "config").read_text(encoding="utf-8")
    assert "alice-thesis" in first.summary  # the apply report, in the job summary

    # --- 2b. the same run publishes the page right after the apply: the new container is on
    # the ssp-state branch and in the Pages artifact at once, not after the next midnight ---
    before = fake_github.git.get(FAKE_REPO.lower())
    assert before is None or "refs/heads/ssp-state" not in before.refs
    page_run = publish_after(runner, push, merge, "success")
    assert page_run.ok, page_run.log()
    assert "State published" in page_run.summary
    db = fake_github.git[FAKE_REPO.lower()]
    files = db.files(db.objects[db.refs["refs/heads/ssp-state"]].data["tree"])
    assert b"alice-thesis" in files["index.html"] and b'"alice-thesis"' in files["snapshot.json"]
    with tarfile.open(page_run.workspace.parent / "pages.tar") as site:
        page = site.extractfile("./index.html")
        assert page is not None and page.read() == files["index.html"]
    assert token not in page_run.output

    # --- 3. a re-run posts the comment; its SSH command works ---
    second = apply(runner, push, merge)

    assert second.ok, second.log()
    (comment,) = fake_github.comments_on(FAKE_REPO, pull.number)
    posted = comment.body  # the fake edits its comment objects in place
    assert comment.author.login == "github-actions[bot]"
    assert comment.body.startswith(MARKER)
    ip = container_ipv4(lxd_project, "alice-thesis")
    assert ip, "the container has no IPv4 address"
    assert f"- **Address:** `{ip}`" in comment.body
    assert "- **Shared folders:** `share` at `/home/user/share`" in comment.body
    found = SSH_COMMAND.search(comment.body)
    assert found, comment.body
    port = int(found[2])
    assert lab.ports[0] <= port <= lab.ports[1]
    login = ssh_until_ok(lab.keys["alice"], port, "alice", "id", "-un")
    assert (login.returncode, login.stdout.strip()) == (0, "alice"), login.stderr

    # --- 4. another re-run edits that comment ---
    third = apply(runner, push, merge)

    assert third.ok, third.log()
    (edited,) = fake_github.comments_on(FAKE_REPO, pull.number)
    assert edited.id == comment.id
    assert edited.body != posted  # it names the run that wrote it
    assert f"/actions/runs/{runner.runs})" in edited.body
    writes = fake_github.requests_matching("POST", f"/repos/{FAKE_REPO}/issues/")
    assert [w.status for w in writes] == [201]
    assert [q.status for q in fake_github.requests_matching("PATCH", "/repos/")] == [200]

    # --- 5. the daily maintenance finds nothing to do ---
    drift = runner.run_job(
        WORKFLOWS / "maintenance.yml",
        "schedule",
        {"schedule": "17 16 * * *"},
        sha=merge,
        ref="refs/heads/main",
        job="maintain",
    )
    assert drift.ok, drift.log()
    assert "No lease needs anything today." in drift.summary
    assert "✅ unchanged" in drift.summary
    assert fake_github.issues_of(FAKE_REPO) == []

    # --- 6. ...and publishes the host's state to ssp-state, without the container's address ---
    published = runner.run_job(
        WORKFLOWS / "maintenance.yml",
        "schedule",
        {"schedule": "17 16 * * *"},
        sha=merge,
        ref="refs/heads/main",
        job="publish",
    )
    assert published.ok, published.log()
    assert "State published" in published.summary
    db = fake_github.git[FAKE_REPO.lower()]
    files = db.files(db.objects[db.refs["refs/heads/ssp-state"]].data["tree"])
    assert sorted(files) == ["index.html", "snapshot.json"]
    assert b'"alice-thesis"' in files["snapshot.json"] and b"alice-thesis" in files["index.html"]
    assert ip.encode() not in files["snapshot.json"] and ip.encode() not in files["index.html"]
    # the Pages artifact is the page this run generated, not whatever the branch holds
    with tarfile.open(published.workspace.parent / "pages.tar") as site:
        assert sorted(site.getnames()) == [".", "./index.html"]
        page = site.extractfile("./index.html")
        assert page is not None and page.read() == files["index.html"]
    assert token not in published.output
    fake_github.assert_no_violations()
