"""`ssp apply` and the waitlist on the fake GitHub: a merged request whose pinned GPU another
container holds waits; its pull request's comment says "waiting, 1st in line" with the day
the GPU frees, stays as it is (not edited) while nothing changes, and is edited once into
the ssh command on the pass that makes it, the same pass that retires the holder whose lease
ended. Nothing is refused and the apply's exit status is 0 throughout.

`ssp apply` runs in-process on a real git checkout (merge order is read from its history)
against the in-memory LXD (tests/fakelxd.py) and the fake GitHub, as in tests/test_comments.py.
On the real LXD, see tests/integration/test_waitlist_real.py.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from fakegithub import FAKE_REPO, FakeGitHub
from fakelxd import FakeLxd, Lab
from test_comments import (  # noqa: F401  (lab, fake_lxd: fixtures)
    commit,
    fake_lxd,
    lab,
    merged,
    sample_policy,
    skip_without_tools,
    ssp_apply,
)

from provisioner.cli import main
from provisioner.commands import apply as apply_command
from provisioner.commands import maintain as maintain_command
from provisioner.reporting import mergecomment
from provisioner.reporting.mergecomment import MARKER
from provisioner.values.outcomes import ApplyResult, Done, Outcome, Subject
from provisioner.values.waitlist import Landed

BOB_LAST = date(2027, 1, 15)  # the last day of bob's lease; the clock starts 2027-01-10


@skip_without_tools
def test_a_waiting_request_is_told_its_place_then_the_ssh_command_once(
    lab: Lab,  # noqa: F811
    fake_lxd: FakeLxd,  # noqa: F811
    fake_github: FakeGitHub,
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    bob = lab.container("bob-count", owner="bob", gpus=1, expires=BOB_LAST.isoformat())
    sha_bob = commit(lab, repo, bob)
    merged(fake_github, sha_bob, "bob", bob[0])
    code, _out, err = ssp_apply(repo, fake_github, sha_bob, tmp_path)
    assert code == 0, err
    gpu0 = next(d for d in fake_lxd.record("bob-count").devices.values() if d["type"] == "gpu")

    # alice pins GPU 0, which bob's count was given: merged, she waits (GPUs never move).
    alice = lab.container("alice-pin", gpus=[0])
    sha_alice = commit(lab, repo, bob, alice)
    pull = merged(fake_github, sha_alice, "alice", alice[0])
    code, out, err = ssp_apply(repo, fake_github, sha_alice, tmp_path)
    assert code == 0, err  # waiting is not a failure
    assert "waiting" in out and "1st in line; GPU 0 frees on 2027-01-16" in out
    (comment,) = fake_github.comments_on(FAKE_REPO, pull)
    assert comment.body.startswith(MARKER + "\n### ⏳ Waiting for GPUs")
    assert "- **Status:** waiting, 1st in line; GPU 0 frees on 2027-01-16" in comment.body
    assert "ssh -p" not in comment.body
    assert "alice-pin" not in {i.name for i in fake_lxd.instances()}
    first_edit = comment.updated_at

    # carol's unrelated PR is merged and applied: alice's comment is rendered again, the
    # same, and left as it is (no edit, no second comment).
    carol = lab.container("carol-cpu", owner="carol")
    sha_carol = commit(lab, repo, bob, alice, carol)
    carol_pull = merged(fake_github, sha_carol, "carol", carol[0])
    code, _out, err = ssp_apply(repo, fake_github, sha_carol, tmp_path)
    assert code == 0, err
    (same,) = fake_github.comments_on(FAKE_REPO, pull)
    assert (same.body, same.updated_at) == (comment.body, first_edit)
    (theirs,) = fake_github.comments_on(FAKE_REPO, carol_pull)
    assert "alice-pin" not in theirs.body  # nobody else's PR hears of alice's wait

    # bob's lease ends: the next apply retires his container and, in the same run, makes
    # alice's with GPU 0; her comment is edited into the ssh command.
    later = datetime(2027, 1, 16, 4, 0, tzinfo=UTC).isoformat()
    code, out, err = ssp_apply(repo, fake_github, sha_carol, tmp_path, SSP_NOW=later)
    assert code == 0, err
    assert fake_lxd.record("alice-pin").devices[next(iter(_gpus(fake_lxd, "alice-pin")))] == gpu0
    assert fake_lxd.record("bob-count").status == "Stopped"
    (made,) = fake_github.comments_on(FAKE_REPO, pull)
    port = fake_lxd.record("alice-pin").devices["ssh"]["listen"].rsplit(":", 1)[1]
    assert "### ✅ Your container is ready" in made.body
    assert f"`ssh -p {port} alice@" in made.body
    assert "Waiting for GPUs" not in made.body and made.updated_at > first_edit

    # once: the next run finds it running and leaves the comment alone
    code, _out, err = ssp_apply(repo, fake_github, sha_carol, tmp_path, SSP_NOW=later)
    assert code == 0, err
    (after,) = fake_github.comments_on(FAKE_REPO, pull)
    assert (after.body, after.updated_at) == (made.body, made.updated_at)


def _gpus(fake: FakeLxd, name: str) -> list[str]:
    return [k for k, d in fake.record(name).devices.items() if d["type"] == "gpu"]


def alice_waits_behind_bob(
    lab: Lab,  # noqa: F811
    fake_github: FakeGitHub,
    repo: Path,
    tmp_path: Path,
) -> tuple[str, int]:
    """bob's container made with GPU 0 (his lease ends on BOB_LAST), then alice's request
    pinning GPU 0 merged and applied: she waits. main's sha and her pull request."""
    bob = lab.container("bob-count", owner="bob", gpus=1, expires=BOB_LAST.isoformat())
    sha = commit(lab, repo, bob)
    assert ssp_apply(repo, fake_github, sha, tmp_path)[0] == 0
    alice = lab.container("alice-pin", gpus=[0])
    sha = commit(lab, repo, bob, alice)
    pull = merged(fake_github, sha, "alice", alice[0])
    assert ssp_apply(repo, fake_github, sha, tmp_path)[0] == 0
    return sha, pull


@skip_without_tools
def test_a_retirement_that_fails_gives_its_gpu_to_nobody(
    lab: Lab,  # noqa: F811
    fake_lxd: FakeLxd,  # noqa: F811
    fake_github: FakeGitHub,
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    sha, pull = alice_waits_behind_bob(lab, fake_github, repo, tmp_path)
    # bob's lease ends but his container cannot be stopped: it keeps GPU 0, so alice is not
    # made with it (a card is never given to two containers); she still waits, 1st in line.
    fake_lxd.fail_on("stop", "bob-count", "LXD could not stop it")
    later = datetime(2027, 1, 16, 4, 0, tzinfo=UTC).isoformat()
    code, out, _err = ssp_apply(
        repo, fake_github, sha, tmp_path, "--format", "markdown", SSP_NOW=later
    )
    assert code == 1  # bob's retirement failed
    assert "alice-pin" not in {i.name for i in fake_lxd.instances()}
    assert "| `alice-pin` | alice | ✅ waiting, 1st in line; GPU 0 frees on 2027\\-01\\-16: " in out
    (comment,) = fake_github.comments_on(FAKE_REPO, pull)
    assert "Waiting for GPUs" in comment.body


@skip_without_tools
def test_the_daily_maintenance_that_frees_the_gpu_makes_the_request_and_edits_its_comment(
    lab: Lab,  # noqa: F811
    fake_lxd: FakeLxd,  # noqa: F811
    fake_github: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(maintain_command, "connect", apply_command.connect)  # the fake LXD
    repo = tmp_path / "repo"
    sha, pull = alice_waits_behind_bob(lab, fake_github, repo, tmp_path)
    # `ssp maintain` on its schedule, the day after bob's last day (main unchanged)
    out, err = io.StringIO(), io.StringIO()
    environ = {
        "SSP_NOW": datetime(2027, 1, 16, 4, 0, tzinfo=UTC).isoformat(),
        "SSP_LOCK": str(tmp_path / "apply.lock"),
        "SSP_GPU_CHECK": "off",
        "SSP_USAGE_DB": str(tmp_path / "none.sqlite3"),
        "GITHUB_TOKEN": fake_github.token,
        "GITHUB_REPOSITORY": FAKE_REPO,
        "GITHUB_SHA": sha,
        "GITHUB_API_URL": fake_github.url,
    }
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["maintain", "--repo", str(repo)], environ)
    assert code == 0, err.getvalue()
    assert fake_lxd.record("bob-count").status == "Stopped"
    assert "alice-pin" in {i.name for i in fake_lxd.instances()}
    (made,) = fake_github.comments_on(FAKE_REPO, pull)
    assert "### ✅ Your container is ready" in made.body and "`ssh -p " in made.body


def test_a_running_container_waiting_for_more_gpus_leaves_the_pr_that_made_it_alone() -> None:
    # alice's container runs with one GPU; a later PR asked for two and it waits for the
    # second. That later PR was told when it merged; the PR that made the container long
    # ago keeps its "ready" comment. A new request that waits does get its PR's comment.
    class Client:
        def __init__(self) -> None:
            self.written: list[int] = []

        def merged_pulls_for_commit(self, sha: str) -> list[SimpleNamespace]:
            return [SimpleNamespace(number=int(sha[0], 16))]

        def pull_files(self, number: int) -> list[str]:
            return [f"requests/alice/alice-{number}.yaml"]

        def upsert_comment(self, number: int, body: str, marker: str) -> SimpleNamespace:
            self.written.append(number)
            return SimpleNamespace(url=f"#{number}", created=False)

    def waits(number: int, exists: bool) -> Outcome:
        return Outcome(
            name=f"alice-{number}",
            owner="alice",
            request_path=f"requests/alice/alice-{number}.yaml",
            kind=Subject.CONTAINER,
            action=Done.WAITING,
            ok=True,
            place=number,
            exists=exists,
        )

    landed = {f"requests/alice/alice-{n}.yaml": Landed(n, f"{n}" * 40) for n in (1, 2)}
    client = Client()
    context = mergecomment.Context(policy=sample_policy(), sha="f" * 40)
    result = ApplyResult(outcomes=(waits(1, exists=True), waits(2, exists=False)))
    mergecomment.post_waitlist(client, context, result, landed, posted=context.sha)
    assert client.written == [2]
