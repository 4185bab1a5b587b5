"""Whole passes and the CLI: a broken config stops everything; invalid requests, and the
newest of requests that compete for a GPU, a quota or the host, are skipped.

`ssp plan` and `ssp apply` run in-process (`provisioner.cli.main`) on a checkout in a
temporary git repository, with the commands' `connect` pointed at a `FakeLxd`, the host lock
in the test's folder and the GPU readiness check off (there is no GPU here; the fake has the
inventory's GPUs). Everything else is the real code: git, validation, the lock, /proc.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from fakelxd import BASE, NOW, FakeLxd, Lab

from provisioner import commands
from provisioner.cli import main
from provisioner.commands import apply as apply_command
from provisioner.commands import plan as plan_command
from provisioner.flows.reconcile import run_pass
from provisioner.git import history as gitrepo
from provisioner.host.lock import host_lock
from provisioner.reporting import applyreport
from provisioner.validation.validate import blocking
from provisioner.values.outcomes import ApplyResult, Outcome
from provisioner.values.state import ACCOUNT, LxdApi

pytestmark = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None or shutil.which("git") is None,
    reason="needs ssh-keygen and git",
)

PCI = ("0000:18:00.0", "0000:3b:00.0", "0000:86:00.0", "0000:af:00.0")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeLxd:
    """A seeded fake that `ssp plan` and `ssp apply` connect to instead of a daemon."""
    lxd = FakeLxd.seeded(present_gpus=PCI)

    def connect(_policy: object, _env: Mapping[str, str]) -> tuple[LxdApi, object]:
        return lxd, lxd.servers

    for command in (plan_command, apply_command):
        monkeypatch.setattr(command, "connect", connect)
    # The real host's listening ports (other tests' containers) must not move the ports this
    # fake lab expects.
    monkeypatch.setattr(commands, "listening_ports", frozenset)
    return lxd


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def checkout(lab: Lab, repo: Path, *requests: tuple[str, bytes]) -> str:
    """`main` with these requests, committed; returns the commit."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "-q")
    lab.write(repo, *requests)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "main")
    return git(repo, "rev-parse", "HEAD")


def ssp(*argv: str, tmp_path: Path, **env: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    environ = {
        "SSP_NOW": NOW.isoformat(),
        "SSP_LOCK": str(tmp_path / "lock" / "apply.lock"),
        "SSP_GPU_CHECK": "off",
        **env,
    }
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv), environ)
        except SystemExit as e:  # argparse refusing the command line
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


# --- ssp plan / ssp apply ----------------------------------------------------------------------


def test_plan_then_apply_then_nothing_left_to_do(lab: Lab, fake: FakeLxd, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    sha = checkout(
        lab,
        repo,
        lab.container("alice-x", gpus=1, shares=["share"]),
        lab.container("carol-y", owner="carol"),
        lab.account("bob-nb"),
    )
    code, out, err = ssp("plan", "--repo", str(repo), tmp_path=tmp_path)
    assert (code, err) == (0, "")
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["create", "alice-x"],
        ["create", "carol-y"],
        ["account", "Common-Server:bob-nb"],
    ]
    code, out, _ = ssp("plan", "--repo", str(repo), "--format", "json", tmp_path=tmp_path)
    doc = json.loads(out)
    assert doc["sha"] == sha
    assert [(a["kind"], a["name"]) for a in doc["actions"]] == [
        ("create", "alice-x"),
        ("create", "carol-y"),
        ("account", "Common-Server:bob-nb"),
    ]
    code, out, _ = ssp("plan", "--repo", str(repo), "--format", "markdown", tmp_path=tmp_path)
    assert out.startswith(f"## Plan for `{sha[:12]}`")
    assert "| create | `alice-x` |" in out
    code, out, _ = ssp(
        "apply", "--repo", str(repo), "--dry-run", "--format", "json", tmp_path=tmp_path
    )
    assert code == 0
    assert [o["action"] for o in json.loads(out)["outcomes"]] == [
        "would create",
        "would create",
        "would change account",
    ]
    assert fake.mutations == []

    code, out, err = ssp("apply", "--repo", str(repo), tmp_path=tmp_path)
    assert code == 0, err
    lines = {line.split()[1]: line for line in out.splitlines()}
    assert lines["alice-x"].startswith("created")
    assert "ssh -p 22001 alice@super-server.lab.example" in lines["alice-x"]
    assert "GPUs 0 (0000:18:00.0)" in lines["alice-x"]
    assert "ssh -p 22002 carol@super-server.lab.example" in lines["carol-y"]
    assert lines["bob-nb"].startswith("created")
    assert "ssp apply: alice-x: creating from common-server" in err
    assert fake.record("alice-x").config["user.ssp.sha"] == sha

    made = len(fake.mutations)
    code, out, _ = ssp("apply", "--repo", str(repo), "--format", "json", tmp_path=tmp_path)
    assert code == 0
    assert fake.mutations[made:] == []
    doc = json.loads(out)
    assert doc["ok"] is True and doc["sha"] == sha and doc["skipped"] == []
    assert [(o["name"], o["action"]) for o in doc["outcomes"]] == [
        ("alice-x", "unchanged"),
        ("carol-y", "unchanged"),
        ("bob-nb", "unchanged"),
    ]
    bob = doc["outcomes"][2]
    assert (bob["kind"], bob["server"]) == ("account", "common")
    # the sample policy forwards the shared server's SSH (shared_servers.common.ssh_port)
    assert bob["ipv4"] and bob["ssh_command"] == "ssh -p 22000 bob-nb@super-server.lab.example"
    alice = doc["outcomes"][0]
    assert alice["ssh_command"] == "ssh -p 22001 alice@super-server.lab.example"
    assert alice["gpus"] == [{"index": 0, "model": "NVIDIA GeForce RTX 4090", "pci": PCI[0]}]
    assert alice["shares"] == [{"id": "share", "path": "/home/user/share", "readonly": False}]
    assert alice["expires"] == "2027-06-30"
    code, out, _ = ssp("plan", "--repo", str(repo), "--format", "markdown", tmp_path=tmp_path)
    assert "Nothing to change: LXD matches `main`." in out
    code, out, _ = ssp("apply", "--repo", str(repo), "--format", "markdown", tmp_path=tmp_path)
    assert out.startswith(f"## Applied at `{sha[:12]}`")
    assert "| `alice-x` | alice | ✅ unchanged |" in out
    assert fake.mutations[made:] == []


def test_apply_exits_1_when_a_request_fails_and_applies_the_rest(
    lab: Lab, fake: FakeLxd, tmp_path: Path
) -> None:
    fake.daemon.present_gpus.discard(PCI[2])
    repo = tmp_path / "repo"
    checkout(lab, repo, lab.container("alice-x", gpus=[2]), lab.container("carol-y", owner="carol"))
    code, out, _ = ssp("apply", "--repo", str(repo), "--format", "json", tmp_path=tmp_path)
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False
    alice, carol = doc["outcomes"]
    assert (alice["action"], alice["ok"], alice["ssh_command"]) == ("failed", False, None)
    assert alice["message"].startswith("GPU 2 (NVIDIA GeForce RTX 4090, PCI 0000:86:00.0)")
    assert (carol["action"], carol["ok"]) == ("created", True)


def test_a_gpu_pinned_twice_refuses_the_newer_request_and_applies_the_rest(
    lab: Lab, fake: FakeLxd, tmp_path: Path
) -> None:
    # carol's pin of GPU 2 was merged first; alice's (whose path sorts first) came later
    repo = tmp_path / "repo"
    carol_y = lab.container("carol-y", owner="carol", gpus=[2])
    carol_z = lab.container("carol-z", owner="carol")
    checkout(lab, repo, carol_y, carol_z)
    alice_x = lab.container("alice-x", gpus=[2])
    checkout(lab, repo, carol_y, carol_z, alice_x)
    code, out, err = ssp("plan", "--repo", str(repo), tmp_path=tmp_path)
    assert code == 0, err
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["create", "carol-y"],
        ["create", "carol-z"],
        ["skipped:", "requests/alice/alice-x.yaml:9:3:"],
    ]
    assert "GPU 2 is already pinned by requests/carol/carol-y.yaml" in out
    code, out, err = ssp("apply", "--repo", str(repo), "--format", "json", tmp_path=tmp_path)
    assert code == 1, err
    doc = json.loads(out)
    assert [(o["name"], o["action"]) for o in doc["outcomes"]] == [
        ("carol-y", "created"),
        ("carol-z", "created"),
    ]
    (skipped,) = doc["skipped"]
    assert skipped.startswith("requests/alice/alice-x.yaml:9:3: error: GPU 2 is already pinned")
    assert skipped.endswith("[gpus.double_booked]")
    assert fake.record("carol-y").devices["gpu-0000-86-00-0"]["pci"] == PCI[2]
    assert "alice-x" not in {i.name for i in fake.instances()}


def test_two_merges_over_a_quota_refuse_the_newest_and_keep_the_rest(
    lab: Lab, fake: FakeLxd, tmp_path: Path
) -> None:
    # alice's quota (student) is 2 containers; three PRs that each passed were merged
    repo = tmp_path / "repo"
    first = lab.container("alice-c", gpus=0, cpu=4, memory="8GiB")
    second = lab.container("alice-b", gpus=0, cpu=4, memory="8GiB")
    third = lab.container("alice-a", gpus=0, cpu=4, memory="8GiB")  # merged last, sorts first
    checkout(lab, repo, first)
    checkout(lab, repo, first, second)
    assert ssp("apply", "--repo", str(repo), tmp_path=tmp_path)[0] == 0
    checkout(lab, repo, first, second, third)
    code, out, _ = ssp("apply", "--repo", str(repo), "--format", "json", tmp_path=tmp_path)
    assert code == 1
    doc = json.loads(out)
    assert [(o["name"], o["action"]) for o in doc["outcomes"]] == [
        ("alice-b", "unchanged"),
        ("alice-c", "unchanged"),
    ]
    (skipped,) = doc["skipped"]
    assert skipped.startswith("requests/alice/alice-a.yaml:")
    assert skipped.endswith("[quota.containers]")
    assert "over the 'student' quota of 2" in skipped
    assert sorted(i.name for i in fake.instances() if i.managed) == ["alice-b", "alice-c"]


def test_an_over_capacity_host_refuses_the_newest_and_applies_the_rest(
    lab: Lab, fake: FakeLxd, tmp_path: Path
) -> None:
    big = lab.edited("  carol: {uid: 1003, quota: staff}", "  carol: {uid: 1003, quota: big}")
    big = big.edited(
        "  staff: {containers: 4",
        "  big: {containers: 9, gpus: 4, cpu: 512, memory: 1TiB, disk: 9TiB}\n"
        "  staff: {containers: 4",
    )
    repo = tmp_path / "repo"
    older = big.container("carol-b", owner="carol", cpu=40, gpus=0)
    newer = big.container("carol-a", owner="carol", cpu=40, gpus=0)
    checkout(big, repo, older)
    checkout(big, repo, older, newer, big.account("bob-nb"))
    v = big.validate(older, newer)
    assert blocking(v) == []  # no longer a reason to stop everything
    code, out, _ = ssp("apply", "--repo", str(repo), tmp_path=tmp_path)
    assert code == 1
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["created", "carol-b"],
        ["created", "bob-nb"],
        ["skipped:", "requests/carol/carol-a.yaml:8:6:"],
    ]
    assert "cpu: requests on super-server would need 80, the host has 64" in out


def test_a_broken_config_still_stops_the_run_before_any_change(
    lab: Lab, fake: FakeLxd, tmp_path: Path
) -> None:
    broken = lab.edited("max_lease_days: 365", "max_lease_days: lots")
    repo = tmp_path / "repo"
    checkout(broken, repo, broken.container("alice-x"))
    for command in ("plan", "apply"):
        code, out, err = ssp(command, "--repo", str(repo), tmp_path=tmp_path)
        assert (code, out) == (1, "")
        assert "nothing was changed; these problems concern every request" in err
    assert fake.calls == []


def test_an_invalid_request_is_skipped_and_what_it_made_is_left_alone(
    lab: Lab, fake: FakeLxd, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    checkout(lab, repo, lab.container("alice-x"), lab.account("bob-nb"))
    assert ssp("apply", "--repo", str(repo), tmp_path=tmp_path)[0] == 0
    label = fake.view("default").record(BASE).config[ACCOUNT + "bob-nb"]
    made = len(fake.mutations)
    # Both requests break on main (a share and a server that do not exist); carol's is new.
    checkout(
        lab,
        repo,
        lab.container("alice-x", shares=["no-such-share"]),
        lab.account("bob-nb", server="no-such-server"),
        lab.container("carol-y", owner="carol"),
    )
    code, out, _ = ssp("apply", "--repo", str(repo), tmp_path=tmp_path)
    assert code == 1
    assert {name for _m, name in fake.mutations[made:]} == {"carol-y"}
    assert fake.record("alice-x").status == "Running"
    assert fake.view("default").record(BASE).config[ACCOUNT + "bob-nb"] == label
    skipped = [line for line in out.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 2
    assert "requests/alice/alice-x.yaml" in skipped[0] and "[share.unknown]" in skipped[0]
    assert "requests/bob/bob-nb.yaml" in skipped[1] and "[server.unknown]" in skipped[1]


@pytest.mark.parametrize("jobs", ["0", "33", "two"])
def test_apply_jobs_is_a_small_whole_number(
    lab: Lab, fake: FakeLxd, tmp_path: Path, jobs: str
) -> None:
    repo = tmp_path / "repo"
    checkout(lab, repo, lab.container("alice-x"), lab.container("carol-y", owner="carol"))
    code, out, err = ssp("apply", "--repo", str(repo), "--jobs", jobs, tmp_path=tmp_path)
    assert (code, out) == (2, "")
    assert f"argument --jobs: expected a whole number from 1 to 32 (not {jobs!r})" in err
    assert fake.mutations == []
    code, out, _ = ssp("apply", "--repo", str(repo), "--jobs", "1", tmp_path=tmp_path)
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["created", "alice-x"],
        ["created", "carol-y"],
    ]


def test_an_unreachable_lxd_is_an_error(lab: Lab, fake: FakeLxd, tmp_path: Path) -> None:
    fake.fail_on("all_instances", "", "cannot reach LXD at /var/lib/lxd/unix.socket")
    repo = tmp_path / "repo"
    checkout(lab, repo, lab.container("alice-x"))
    code, out, err = ssp("apply", "--repo", str(repo), tmp_path=tmp_path)
    assert (code, out) == (3, "")
    assert err == "ssp apply: error: cannot reach LXD at /var/lib/lxd/unix.socket\n"


def test_a_second_apply_waits_for_the_host_lock(lab: Lab, fake: FakeLxd, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    checkout(lab, repo, lab.container("alice-x"))
    with host_lock(tmp_path / "lock" / "apply.lock"):
        code, _out, err = ssp("apply", "--repo", str(repo), "--lock-wait", "0", tmp_path=tmp_path)
    assert code == 3
    assert "another apply holds" in err
    assert fake.calls == []


# --- run_pass and results directly ------------------------------------------------------------


def test_a_dry_run_pass_makes_no_mutation(lab: Lab) -> None:
    fake = FakeLxd.seeded(present_gpus=PCI)
    v = lab.validate(lab.container("alice-x", gpus=2), lab.account("bob-nb"))
    done = run_pass(v, fake, fake.servers, now=NOW, sha="", dry_run=True)
    assert [o.action for o in done.result.outcomes] == ["would create", "would change account"]
    assert fake.mutations == []
    assert [m for m, _n in fake.calls] == ["all_instances", "images"]


def outcome(**fields: object) -> Outcome:
    base: dict[str, object] = {
        "name": "alice-x",
        "owner": "alice",
        "request_path": "requests/alice/alice-x.yaml",
        "kind": "container",
        "action": "created",
        "ok": True,
        "login": "alice",
        "ipv4": ("10.23.0.11",),
        "ssh_port": 22001,
    }
    base.update(fields)
    return Outcome(**base)  # type: ignore[arg-type]


def test_the_ssh_command_never_sends_the_host_port_to_the_container_address(lab: Lab) -> None:
    named = lab.validate().config
    unnamed = lab.edited("host: super-server.lab.example", 'host: ""').validate().config
    public = lab.edited('public_host: ""', "public_host: lab.example.org").validate().config
    assert named and unnamed and public
    o = outcome()
    assert applyreport.ssh_command(named.policy, o) == "ssh -p 22001 alice@super-server.lab.example"
    # No host name: the container's own sshd (port 22), not its address with the host's port.
    assert applyreport.ssh_command(unnamed.policy, o) == "ssh alice@10.23.0.11"
    assert (
        applyreport.ssh_command(unnamed.policy, outcome(ipv4=())) == "ssh -p 22001 alice@<server>"
    )
    assert applyreport.public_command(public.policy, o) == "ssh -p 22001 alice@lab.example.org"
    account = outcome(kind="account", name="bob-nb", login="bob-nb", ssh_port=None)
    assert applyreport.ssh_command(named.policy, account) == "ssh bob-nb@10.23.0.11"
    assert applyreport.public_command(public.policy, account) is None
    for gone in (outcome(action="retired"), outcome(action="failed", ok=False)):
        assert applyreport.ssh_command(named.policy, gone) is None
    text = applyreport.text_lines(named.policy, ApplyResult(outcomes=(o,)), ())
    assert text == [
        "created       alice-x                  alice        10.23.0.11  "
        "ssh -p 22001 alice@super-server.lab.example"
    ]


def test_ages_follow_the_order_of_merges_on_main_not_commit_dates(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")

    def commit(path: str, when: str) -> None:
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(when)
        git(repo, "add", "-A")
        subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com",
             "commit", "-q", "-m", path],
            check=True,
            env={**os.environ, "GIT_COMMITTER_DATE": when, "GIT_AUTHOR_DATE": when},
        )  # fmt: skip

    commit("requests/bob/bob-a.yaml", "2026-01-01T00:00:00")
    git(repo, "checkout", "-q", "-b", "pr")
    commit("requests/alice/alice-a.yaml", "2026-01-02T00:00:00")  # written early ...
    git(repo, "checkout", "-q", "main")
    commit("requests/carol/carol-a.yaml", "2026-03-01T00:00:00")
    git(repo, "merge", "-q", "--no-ff", "pr", "-m", "merge alice's PR")  # ... merged last
    commit("requests/bob/bob-a.yaml", "2026-04-01T00:00:00")  # changed: newest now
    found = gitrepo.ages(repo)
    assert sorted(found, key=found.__getitem__) == [
        "requests/carol/carol-a.yaml",
        "requests/alice/alice-a.yaml",
        "requests/bob/bob-a.yaml",
    ]
