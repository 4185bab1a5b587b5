"""The waitlist on a real LXD, with real git history and the fake GitHub: a merged request
whose pinned GPU another container holds waits (nothing is made for it), its PR comment says
"waiting, 1st in line" and the day the GPU frees, is not edited by a pass that changes
nothing, and on the pass after the holder's lease ends — the clock pinned — the holder is
stopped and the waiting request made with the freed GPU in the same run, its comment edited
once from "waiting" into that result.

This machine has no GPU, so a container with a `gpu` device cannot start here: the holder is
made without one, stopped and given GPU 0 by hand, as a pass on a GPU host leaves a count
request (`gpus: 1`) that was given GPU 0; and the waiting request, once made with GPU 0, gets
as far as its start, which fails here for want of the card (on a GPU host it runs and its
comment gives the ssh command: tests/test_waitlist_comments.py checks that text). Each
pass is what `ssp apply` runs: `run_pass` on the real adapters with merge order from git,
then `commands.apply.comment` through PyGithub against the fake GitHub.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from fakegithub import FAKE_REPO, FakeGitHub

from integration.helpers import (
    Adapters,
    LabRepo,
    host_id_spans,
    lxc,
    lxc_query,
)
from provisioner.commands import apply as apply_command
from provisioner.flows import notify
from provisioner.flows.reconcile import Pass, run_pass
from provisioner.git import files as gitfiles
from provisioner.git.history import landings
from provisioner.host.ports import listening_ports
from provisioner.reporting.mergecomment import MARKER
from provisioner.validation.validate import blocking, validate_tree

pytestmark = pytest.mark.lxd

LAST = date(2026, 12, 5)  # the last day of the holder's lease
GPU0 = "0000:18:00.0"  # the sample inventory's GPU 0


def noon(day: date) -> datetime:
    return datetime.combine(day, time(4, 0), tzinfo=UTC)  # noon in Asia/Shanghai


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def merge(lab: LabRepo, *requests: tuple[str, bytes]) -> str:
    """These request files on main, as one merge commit would leave them."""
    lab.write(*requests)
    git(lab.root, "add", "-A")
    git(lab.root, "commit", "-q", "--allow-empty", "-m", "merge")
    return git(lab.root, "rev-parse", "HEAD")


def apply_and_comment(
    lab: LabRepo, adapters: Adapters, gh: FakeGitHub, sha: str, day: date
) -> Pass:
    """`ssp apply` on DAY: the pass, then the comments (the merged PR's and the waitlist's)."""
    now = noon(day)
    validation = validate_tree(gitfiles.worktree(lab.root), now)
    assert not blocking(validation), validation.problems
    landed = landings(lab.root)
    done = run_pass(
        validation,
        adapters.main,
        lambda _i: adapters.shared,
        now=now,
        sha=sha,
        busy_ports=listening_ports(),
        id_spans=host_id_spans(),
        ipv4_timeout_s=5,
        merged={p: land.position for p, land in landed.items()},
    )
    env = {
        "GITHUB_TOKEN": gh.token,
        "GITHUB_REPOSITORY": FAKE_REPO,
        "GITHUB_SHA": sha,
        "GITHUB_API_URL": gh.url,
    }
    assert validation.config is not None
    apply_command.comment(
        env,
        validation.config.policy,
        done.validation,
        done.result,
        done.skipped,
        landed,
        made=notify.created(done),
    )
    return done


def outcome(done: Pass, name: str) -> tuple[str, bool, str]:
    (o,) = [o for o in done.result.outcomes if o.name == name]
    return o.action, o.ok, o.message


def exists(project: str, name: str) -> bool:
    names = lxc_query("/1.0/instances", project)
    return any(str(n).rsplit("/", 1)[-1].split("?")[0] == name for n in names)


def test_a_request_waits_for_a_held_gpu_and_is_made_the_day_the_holders_lease_ends(
    lab: LabRepo, adapters: Adapters, lxd_project: str, suffix: str, fake_github: FakeGitHub
) -> None:
    project = lxd_project
    bob, alice = f"bob-hold-{suffix}", f"alice-wait-{suffix}"
    git(lab.root, "init", "-q", "-b", "main")
    early = LAST - timedelta(days=7)
    # bob's container, made on a day of his lease, then holding GPU 0 for his count
    plain_bob = lab.container(bob, owner="bob", image="busybox", expires=LAST.isoformat())
    sha = merge(lab, plain_bob)
    first = apply_and_comment(lab, adapters, fake_github, sha, early)
    assert outcome(first, bob)[:2] == ("created", True)
    lxc("stop", "--force", "--project", project, bob)
    device = "gpu-" + re.sub(r"[:.]", "-", GPU0)
    lxc("config", "device", "add", "--project", project, bob, device, "gpu",
        "gputype=physical", f"pci={GPU0}")  # fmt: skip
    req_bob = lab.container(bob, owner="bob", image="busybox", gpus=1, expires=LAST.isoformat())
    merge(lab, req_bob)

    # alice's PR pins GPU 0: merged, she waits; nothing is made for her.
    req_alice = lab.container(alice, image="busybox", gpus=[0])
    sha = merge(lab, req_bob, req_alice)
    pull = fake_github.add_pull(FAKE_REPO, author="alice", title="GPU 0", files=[req_alice[0]])
    fake_github.merge_pull(FAKE_REPO, pull.number, merge_commit_sha=sha, merged_by="lab-admin")
    waiting = apply_and_comment(lab, adapters, fake_github, sha, early)
    action, ok, message = outcome(waiting, alice)
    assert (action, ok) == ("waiting", True)
    assert message.startswith(f"GPU 0 ({GPU0}) is held by container '{bob}'")
    assert not exists(project, alice)
    (comment,) = fake_github.comments_on(FAKE_REPO, pull.number)
    assert comment.body.startswith(MARKER + "\n### ⏳ Waiting for GPUs")
    assert "waiting, 1st in line; GPU 0 frees on 2026-12-06" in comment.body
    told = comment.updated_at

    # The next day's pass changes nothing: the comment is left as it is.
    apply_and_comment(lab, adapters, fake_github, sha, early + timedelta(days=1))
    (same,) = fake_github.comments_on(FAKE_REPO, pull.number)
    assert (same.body, same.updated_at) == (comment.body, told)

    # The day after bob's last day: his container is stopped and kept, and in the same run
    # alice's is made with GPU 0 (her start needs the card, which this machine lacks).
    made = apply_and_comment(lab, adapters, fake_github, sha, LAST + timedelta(days=1))
    assert outcome(made, bob)[:2] == ("retired", True)
    assert lxc_query(f"/1.0/instances/{bob}", project)["status"] == "Stopped"
    devices = lxc_query(f"/1.0/instances/{alice}", project)["devices"]
    assert [d for d in devices.values() if d["type"] == "gpu"] == [
        {"type": "gpu", "gputype": "physical", "pci": GPU0}
    ]
    action, ok, message = outcome(made, alice)
    (after,) = fake_github.comments_on(FAKE_REPO, pull.number)  # edited, not a second one
    assert "Waiting for GPUs" not in after.body and after.updated_at > told
    if ok:  # a host with the card: the ssh command, like any other new container
        assert action == "created" and "ssh -p" in after.body
    else:  # this machine: the start failed for want of GPU 0, and the comment says so
        assert action == "failed" and "is not present on the host" in message
        assert "is not present on the host" in after.body
