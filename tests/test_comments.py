"""The comment on a merged pull request: its text per outcome (golden files), which results
belong to which pull request, and `ssp apply` posting it through the fake GitHub.

Golden files live in tests/golden/comments/; after a deliberate change to a template,
regenerate them with `SSP_UPDATE_GOLDEN=1 pytest tests/test_comments.py` and read the diff.

The CLI tests run `ssp apply` in-process on a git checkout with the commands' `connect`
pointed at the in-memory LXD (tests/fakelxd.py) and GITHUB_* pointed at the fake GitHub,
which checks every request against GitHub's OpenAPI description.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from contextlib import redirect_stderr, redirect_stdout
from datetime import date
from pathlib import Path

import pytest
from fakegithub import FAKE_REPO, FakeGitHub, PullFile
from fakelxd import NOW, FakeLxd, Lab

from provisioner.cli import main
from provisioner.commands import apply as apply_command
from provisioner.github.client import GitHubClient
from provisioner.reporting import mergecomment
from provisioner.validation.config import load_config
from provisioner.values.outcomes import Done, GpuInfo, Outcome, Subject
from provisioner.values.policymodels import Policy, Tunnel
from provisioner.values.problems import Position, Problem
from provisioner.values.spec import Share
from provisioner.values.state import LxdApi

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden" / "comments"
SHA = "5e1f0c3a9b7d2e4f6a8c0b1d3e5f7a9c1b3d5e7f"
RUN = "https://github.com/lab/super-server/actions/runs/4242"
PCI = ("0000:18:00.0", "0000:3b:00.0", "0000:86:00.0", "0000:af:00.0")
MODEL = "NVIDIA GeForce RTX 4090"
ALICE = "requests/alice/alice-thesis.yaml"
BOB = "requests/bob/bob-common.yaml"
CAROL = "requests/carol/carol-ci.yaml"


PAGE = "https://lab.github.io/super-server/"


def sample_policy(**ssh: str) -> Policy:
    """The seed policy, with the lab's status page on GitHub Pages (snapshot.page_url), which
    every comment names last."""
    config, problems = load_config(
        (ROOT / "config" / "policy.yaml").read_bytes(),
        (ROOT / "config" / "hosts.yaml").read_bytes(),
    )
    assert config is not None, problems
    policy = config.policy
    snapshot = policy.snapshot.model_copy(update={"page_url": PAGE})
    policy = policy.model_copy(update={"snapshot": snapshot})
    return policy.model_copy(update={"ssh": policy.ssh.model_copy(update=ssh)}) if ssh else policy


def golden(name: str, text: str) -> None:
    """TEXT equals tests/golden/comments/NAME.md (rewritten when SSP_UPDATE_GOLDEN=1)."""
    path = GOLDEN / f"{name}.md"
    if os.environ.get("SSP_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with SSP_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(encoding="utf-8")


def alice(**changes: object) -> Outcome:
    base = Outcome(
        name="alice-thesis",
        owner="alice",
        request_path=ALICE,
        kind=Subject.CONTAINER,
        action=Done.CREATED,
        ok=True,
        login="alice",
        ipv4=("10.201.7.23",),
        ssh_port=22001,
        gpus=(GpuInfo(0, MODEL, PCI[0]), GpuInfo(1, MODEL, PCI[1])),
        shares=(Share("share", "/home/user/share", "/home/user/share", False),),
        expires=date(2027, 6, 30),
        snapshots="daily",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def bob_account(**changes: object) -> Outcome:
    base = Outcome(
        name="bob-common",
        owner="bob",
        request_path=BOB,
        kind=Subject.ACCOUNT,
        action=Done.CREATED,
        ok=True,
        login="bob-common",
        ipv4=("10.201.7.5",),
        ssh_port=None,
        server="common",
        sudo=False,
        expires=date(2027, 3, 31),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def carol_retired() -> Outcome:
    return Outcome(
        name="carol-ci",
        owner="carol",
        request_path=CAROL,
        kind=Subject.CONTAINER,
        action=Done.RETIRED,
        ok=True,
        message="request removed: stopped and kept as snapshot retired-20261128 for 30 days; "
        "an admin can restore it until then",
    )


PURPOSES = {ALICE: "Diffusion experiments for my thesis", BOB: "Quick notebooks"}


def ctx(policy: Policy | None = None, **kw: object) -> mergecomment.Context:
    args: dict[str, object] = {"policy": policy or sample_policy(), "sha": SHA, "run_url": RUN}
    args |= {"purposes": PURPOSES} | kw
    return mergecomment.Context(**args)  # type: ignore[arg-type]


def body(context: mergecomment.Context, *outcomes: Outcome, **kw: object) -> mergecomment.Draft:
    made = mergecomment.draft(context, outcomes, **kw)  # type: ignore[arg-type]
    assert made is not None
    return made


# --- every template, exactly -----------------------------------------------------------------


def test_applied_one_container_with_gpus_shares_and_an_off_lan_command() -> None:
    made = body(ctx(sample_policy(public_host="lab.example.org")), alice())
    assert made.template == "applied"
    golden("applied", made.body)


def test_applied_container_account_and_retirement_in_one_pull_request() -> None:
    bare = alice(action="unchanged", gpus=(), shares=(), ipv4=(), rdp_port=23001, snapshots="none")
    made = body(ctx(), bare, bob_account(ssh_port=22100, sudo=True), carol_retired())
    assert made.template == "applied"
    golden("applied_mixed", made.body)


def test_account_created() -> None:
    made = body(ctx(), bob_account())
    assert made.template == "account"
    golden("account", made.body)


def tunnel_policy() -> Policy:
    """The seed policy with the lab's frp tunnel (host port P is P + 10000 on frp.lab.example)
    and a jump host."""
    policy = sample_policy(jump_host="gate@jump.lab.example")
    tunnel = Tunnel(kind="frp", server="frp.lab.example", remote_offset=10000)
    return policy.model_copy(update={"tunnel": tunnel})


def ssh_config_hosts(text: str) -> dict[str, dict[str, str]]:
    """The `Host` blocks of the comment's ~/.ssh/config snippet, keyword → value."""
    snippet = text.split("```\n", 2)[1]
    hosts: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in snippet.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "Host":
            current = hosts.setdefault(words[1], {})
        else:
            current[words[0]] = words[1]
    return hosts


def test_account_through_the_shared_servers_port_the_tunnel_and_the_jump_host() -> None:
    # frpc reported the shared server's proxy running after the apply (flows/tunnel.py)
    carried = bob_account(ssh_port=22000, tunnel_ports=frozenset({22000}))
    made = body(ctx(tunnel_policy()), carried)
    assert made.template == "account"
    golden("account_tunnel", made.body)
    # Never the server's internal address: the forwarded port on the host, from outside the
    # frp server's port, or the jump host.
    assert "10.201.7.5" not in made.body
    assert "`ssh -p 22000 bob-common@super-server.lab.example`" in made.body
    assert "`ssh -p 32000 bob-common@frp.lab.example`" in made.body
    assert (
        "`ssh -J gate@jump.lab.example -p 22000 bob-common@super-server.lab.example`" in made.body
    )
    # The config block says the same as the commands, alias by alias.
    key = {"IdentityFile": "~/.ssh/id_ed25519", "User": "bob-common"}
    lan = {"HostName": "super-server.lab.example", "Port": "22000"} | key
    assert ssh_config_hosts(made.body) == {
        "bob-common": lan,
        "bob-common-away": {"HostName": "frp.lab.example", "Port": "32000"} | key,
        "bob-common-jump": lan | {"ProxyJump": "gate@jump.lab.example"},
    }


def test_desktop_through_the_tunnel_and_how_to_set_its_password() -> None:
    desk = alice(gpus=(), shares=(), rdp_port=23001, tunnel_ports=frozenset({22001, 23001}))
    made = body(ctx(tunnel_policy()), desk)
    golden("applied_tunnel", made.body)
    assert "`super-server.lab.example:23001`, from outside the lab `frp.lab.example:33001`" in (
        made.body
    )
    assert "`sudo passwd alice`" in made.body
    assert "`ssh -p 32001 alice@frp.lab.example`" in made.body


def test_no_off_lan_command_for_a_port_the_tunnel_is_not_known_to_carry() -> None:
    # The tunnel carries the desktop but not SSH (frpc: `start error`, or no admin API to
    # ask): no SSH command through it, no `-away` alias; the jump host still works.
    desk = alice(gpus=(), shares=(), rdp_port=23001, tunnel_ports=frozenset({23001}))
    made = body(ctx(tunnel_policy()), desk)
    assert "SSH from outside the lab" not in made.body and "frp.lab.example:32001" not in made.body
    assert "from outside the lab `frp.lab.example:33001`" in made.body
    assert set(ssh_config_hosts(made.body)) == {"alice-thesis", "alice-thesis-jump"}
    nothing = body(ctx(tunnel_policy()), alice(rdp_port=23001))
    assert "frp.lab.example" not in nothing.body


def test_every_comment_ends_with_where_the_status_page_is_when_the_policy_says() -> None:
    line = f"**The lab's status page:** [{PAGE}]({PAGE})"
    for made in (
        body(ctx(), alice()),
        body(ctx(), bob_account()),
        body(ctx(), carol_retired()),
        body(
            ctx(),
            problems=[Problem("config/policy.yaml", Position(1, 1), "policy.x", "broken")],
            blocked=True,
        ),
    ):
        assert made.body.rstrip().splitlines()[-1].startswith(line), made.template
    bare = sample_policy().model_copy(
        update={"snapshot": sample_policy().snapshot.model_copy(update={"page_url": ""})}
    )
    assert "status page" not in body(ctx(bare), alice()).body


def test_no_off_lan_lines_without_a_tunnel_public_host_or_jump_host() -> None:
    made = body(ctx(), alice(rdp_port=23001))
    assert "outside the lab" not in made.body and "jump" not in made.body
    assert set(ssh_config_hosts(made.body)) == {"alice-thesis"}


def test_retired_container_and_locked_account() -> None:
    locked = bob_account(action="locked", message="login locked; the home directory is kept")
    made = body(ctx(), carol_retired(), locked)
    assert made.template == "retired"
    golden("retired", made.body)


def test_partly_failed_says_what_failed_why_how_to_retry_and_what_worked() -> None:
    why = (
        "GPU 1 (NVIDIA GeForce RTX 4090, PCI 0000:3b:00.0) is not present on the host, so "
        "carol-ci cannot start with it; compare `ssp gpus` with config/hosts.yaml "
        "(LXD: Invalid PCI address (no device found): 0000:3b:00.0)"
    )
    failed = Outcome(
        name="carol-ci",
        owner="carol",
        request_path=CAROL,
        kind=Subject.CONTAINER,
        action=Done.FAILED,
        ok=False,
        message=why,
    )
    skipped = Problem(BOB, Position(8, 10), "expires.past", "expires: 2026-01-01 is in the past")
    made = body(ctx(), alice(action="updated", message="cpu 8 → 4"), failed, problems=[skipped])
    assert made.template == "failed"
    golden("failed_partly", made.body)


def test_nothing_applied_when_the_config_is_broken() -> None:
    broken = Problem(
        "config/policy.yaml", Position(12, 3), "policy.schema", "quotas.student.gpus: not a number"
    )
    made = body(ctx(policy=None, run_url=""), problems=[broken], blocked=True)
    assert made.template == "failed"
    golden("failed_blocked", made.body)


def test_a_published_image_says_how_to_start_a_container_from_it() -> None:
    image = Outcome(
        name="alice-base",
        owner="alice",
        request_path="requests/alice/alice-base.yaml",
        kind=Subject.IMAGE,
        action=Done.PUBLISHED,
        ok=True,
        image="alice/alice-base",
    )
    made = body(ctx(), image)
    assert made.template == "image"
    assert "image: alice/alice-base" in made.body
    golden("image", made.body)


def test_waiting_in_line_says_the_place_the_gpus_and_when_one_frees_without_the_run_link() -> None:
    waits = alice(
        action=Done.WAITING,
        login="",
        ipv4=(),
        ssh_port=None,
        gpus=(),
        shares=(),
        expires=None,
        snapshots="",
        place=1,
        waits_for=(0,),
        frees=date(2027, 1, 20),
        message=f"GPU 0 ({PCI[0]}) is held by container 'bob-old', which was given it for "
        "its GPU count; GPUs never move under a container, so it is yours once that is given "
        "back (or pin a free GPU, or ask for a count)",
    )
    made = body(ctx(), waits)
    assert made.template == "waiting"
    assert "- **Status:** waiting, 1st in line; GPU 0 frees on 2027-01-20" in made.body
    # the same text on every pass while the place stays: no link to the run that wrote it
    assert RUN not in made.body and made.body == body(ctx(run_url=RUN + "9"), waits).body
    golden("waiting", made.body)


@pytest.mark.parametrize("name", mergecomment.TEMPLATES)
def test_every_template_has_a_golden_file_and_ends_with_the_next_step(name: str) -> None:
    text = (GOLDEN / f"{'failed_partly' if name == 'failed' else name}.md").read_text("utf-8")
    assert text.startswith(mergecomment.MARKER + "\n")
    # the next step, then where the status page is (the policy's snapshot.page_url)
    *_, last, page = text.rstrip("\n").split("\n\n")
    assert last.startswith("**Next:**"), last
    assert page.startswith(f"**The lab's status page:** [{PAGE}]({PAGE})"), page
    # long detail is folded, and every fold is closed
    assert text.count("<details>") == text.count("</details>")


# --- what belongs to which pull request ----------------------------------------------------------


def test_a_pull_request_gets_the_results_of_the_files_it_touched() -> None:
    outcomes = (alice(), bob_account(), carol_retired())
    problems = (Problem(BOB, Position(3, 1), "x.y", "bad"),)
    # a rename counts under both names: the old one was retired, the new one created
    mine, theirs = mergecomment.belongs(
        [CAROL, "requests/carol/carol-new.yaml"], outcomes, problems
    )
    assert [o.name for o in mine] == ["carol-ci"]
    assert theirs == ()
    mine, theirs = mergecomment.belongs([BOB, "README.md"], outcomes, problems)
    assert [o.name for o in mine] == ["bob-common"]
    assert theirs == problems
    assert (
        mergecomment.draft(ctx(), *mergecomment.belongs(["config/policy.yaml"], outcomes, ()))
        is None
    )


def test_the_adapter_lists_a_renamed_request_under_both_names(
    fake_github: FakeGitHub, github_client: GitHubClient
) -> None:
    moved = PullFile("requests/carol/carol-new.yaml", "renamed", previous_filename=CAROL)
    pull = fake_github.add_pull(FAKE_REPO, author="carol", title="Rename", files=[moved, BOB])
    assert github_client.pull_files(pull.number) == [CAROL, "requests/carol/carol-new.yaml", BOB]


@pytest.mark.parametrize(
    ("outcomes", "problems", "blocked", "template"),
    [
        ((alice(),), (), False, "applied"),
        ((alice(action="unchanged"), bob_account()), (), False, "applied"),
        ((bob_account(),), (), False, "account"),
        ((bob_account(action="updated"),), (), False, "account"),
        ((carol_retired(),), (), False, "retired"),
        ((bob_account(action="locked"),), (), False, "retired"),
        ((carol_retired(), alice()), (), False, "applied"),
        ((alice(ok=False, action="failed"),), (), False, "failed"),
        ((alice(ok=False, action="refused"), bob_account()), (), False, "failed"),
        ((alice(),), (Problem(ALICE, Position(), "r", "m"),), False, "failed"),
        ((), (Problem("config/policy.yaml", Position(), "r", "m"),), True, "failed"),
    ],
)
def test_the_template_follows_from_the_outcomes(
    outcomes: tuple[Outcome, ...], problems: tuple[Problem, ...], blocked: bool, template: str
) -> None:
    assert mergecomment.template_for(outcomes, problems, blocked) == template


def test_a_container_without_address_yet_says_so() -> None:
    text = body(ctx(), alice(ipv4=(), message="no IPv4 address yet")).body
    assert "- **Address:** none yet" in text
    assert "(no IPv4 address yet)" in text
    # the forwarded port is on the host, so the SSH command does not need the address
    assert "`ssh -p 22001 alice@super-server.lab.example`" in text


def test_a_run_address_that_could_break_the_link_is_left_out() -> None:
    text = body(ctx(run_url="https://x.example/runs/1) [click](https://evil"), alice()).body
    assert "evil" not in text
    assert "workflow run" not in text


# --- nothing secret, nothing that renders as something else -----------------------------------

PRIVATE = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


def test_redact_removes_secrets_and_private_keys_whatever_the_text() -> None:
    token = "ghs_0123456789abcdefghijklmnopqrstuvwxyz"
    text = mergecomment.redact(f"a {token} b\n{PRIVATE}\nc", [token, "short"])
    assert text == "a *** b\n[private key removed]\nc"
    # a key block cut off half-way is removed to the end
    assert mergecomment.redact("x -----BEGIN RSA PRIVATE KEY-----\nMIIE", []) == (
        "x [private key removed]"
    )


def test_an_error_message_carrying_a_token_or_key_is_redacted() -> None:
    token = "ghp_" + "A" * 36
    failed = alice(ok=False, action="failed", message=f"LXD said {token} and\n{PRIVATE}")
    text = body(ctx(secrets=(token,)), failed).body
    assert token not in text
    assert "PRIVATE KEY" not in text
    assert "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE" not in text


# --- ssp apply posts the comments -----------------------------------------------------------------

WEIRD = (
    "<img src=x onerror=alert(1)> **Thesis** [click](https://evil.example) @lab-admin "
    "<!-- ssp:apply --> | `code` _x_ # not a heading"
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("keys")).edited(
        'public_host: ""', "public_host: ssh.lab.example.org"
    )


@pytest.fixture
def fake_lxd(monkeypatch: pytest.MonkeyPatch) -> FakeLxd:
    lxd = FakeLxd.seeded(present_gpus=PCI)

    def connect(_policy: object, _env: Mapping[str, str]) -> tuple[LxdApi, object]:
        return lxd, lxd.servers

    monkeypatch.setattr(apply_command, "connect", connect)
    return lxd


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def commit(lab: Lab, repo: Path, *requests: tuple[str, bytes]) -> str:
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "-q")
    lab.write(repo, *requests)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "main")
    return git(repo, "rev-parse", "HEAD")


def ssp_apply(
    repo: Path, gh: FakeGitHub, sha: str, tmp_path: Path, *argv: str, **env: str
) -> tuple[int, str, str]:
    environ = {
        "SSP_NOW": NOW.isoformat(),
        "SSP_LOCK": str(tmp_path / "apply.lock"),
        "SSP_GPU_CHECK": "off",
        "GITHUB_TOKEN": gh.token,
        "GITHUB_REPOSITORY": FAKE_REPO,
        "GITHUB_SHA": sha,
        "GITHUB_API_URL": gh.url,
        **env,
    }
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["apply", "--repo", str(repo), *argv], environ)
    return code, out.getvalue(), err.getvalue()


def merged(gh: FakeGitHub, sha: str, author: str, *files: str) -> int:
    pull = gh.add_pull(FAKE_REPO, author=author, title=f"{author}'s request", files=files)
    gh.merge_pull(FAKE_REPO, pull.number, merge_commit_sha=sha, merged_by="lab-admin")
    return pull.number


skip_without_tools = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None or shutil.which("git") is None,
    reason="needs ssh-keygen and git",
)


@skip_without_tools
def test_apply_comments_each_merged_pull_request_with_its_own_results(
    lab: Lab, fake_lxd: FakeLxd, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    alice_req = lab.container("alice-thesis", gpus=1, shares=["share"], snapshots="daily")
    bob_req = lab.account("bob-common")
    repo = tmp_path / "repo"
    sha = commit(lab, repo, alice_req, bob_req)
    first = merged(fake_github, sha, "alice", alice_req[0])
    second = merged(fake_github, sha, "bob", bob_req[0])
    infra = merged(fake_github, sha, "lab-admin", "config/policy.yaml")

    code, out, err = ssp_apply(repo, fake_github, sha, tmp_path)

    assert code == 0, err
    (a,) = fake_github.comments_on(FAKE_REPO, first)
    (b,) = fake_github.comments_on(FAKE_REPO, second)
    assert fake_github.comments_on(FAKE_REPO, infra) == []
    port = fake_lxd.record("alice-thesis").devices["ssh"]["listen"].rsplit(":", 1)[1]
    (ip,) = fake_lxd.instance("alice-thesis").ipv4
    assert a.body.startswith(mergecomment.MARKER)
    assert "### ✅ Your container is ready" in a.body
    assert f"`ssh -p {port} alice@super-server.lab.example`" in a.body
    assert f"`ssh -p {port} alice@ssh.lab.example.org`" in a.body
    assert f"GPU 0: {MODEL}, PCI `{PCI[0]}`" in a.body
    assert "bob-common" not in a.body
    assert "### ✅ Your account is ready" in b.body
    assert "alice-thesis" not in b.body
    assert f"- **Address:** `{ip}`" in a.body
    assert f"commented on #{first}" in err and f"commented on #{second}" in err
    assert f"#{infra} touched no request file" in err
    # the report on stdout is the host's, untouched by commenting
    assert "alice-thesis" in out


@skip_without_tools
def test_a_rerun_edits_the_comment_instead_of_adding_one(
    lab: Lab, fake_lxd: FakeLxd, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    req = lab.container("alice-thesis")
    repo = tmp_path / "repo"
    sha = commit(lab, repo, req)
    number = merged(fake_github, sha, "alice", req[0])
    assert ssp_apply(repo, fake_github, sha, tmp_path, GITHUB_RUN_ID="1")[0] == 0
    (before,) = fake_github.comments_on(FAKE_REPO, number)
    assert "- **Status:** created" in before.body

    code, _out, err = ssp_apply(repo, fake_github, sha, tmp_path, GITHUB_RUN_ID="2")

    assert code == 0
    (after,) = fake_github.comments_on(FAKE_REPO, number)
    assert after.id == before.id
    assert "- **Status:** running; nothing needed changing" in after.body
    assert "/actions/runs/2)" in after.body
    # a re-run of that run keeps its id; the link then names the attempt
    ssp_apply(repo, fake_github, sha, tmp_path, GITHUB_RUN_ID="2", GITHUB_RUN_ATTEMPT="2")
    (again,) = fake_github.comments_on(FAKE_REPO, number)
    assert "/actions/runs/2/attempts/2)" in again.body
    assert f"updated the comment on #{number}" in err
    comments_path = f"/repos/{FAKE_REPO}/issues/{number}/comments"
    assert len(fake_github.requests_matching("POST", comments_path)) == 1
    assert len(fake_github.requests_matching("PATCH", f"/repos/{FAKE_REPO}/issues/comments")) == 2


@skip_without_tools
def test_github_failing_at_comment_time_changes_nothing_on_the_host_and_the_next_run_posts(
    lab: Lab, fake_lxd: FakeLxd, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    req = lab.container("alice-thesis")
    repo = tmp_path / "repo"
    sha = commit(lab, repo, req)
    number = merged(fake_github, sha, "alice", req[0])
    # 500s for every try the client makes (Retry-After: 0 keeps the test fast)
    fake_github.fail_next(4, 500, retry_after=0, path_prefix=f"/repos/{FAKE_REPO}/issues/")

    code, out, err = ssp_apply(repo, fake_github, sha, tmp_path, GITHUB_ACTIONS="true")

    assert code == 0
    assert fake_lxd.record("alice-thesis").status == "Running"
    assert fake_github.comments_on(FAKE_REPO, number) == []
    (warning,) = [line for line in err.splitlines() if line.startswith("::warning ")]
    assert "500" in warning and "re-run the apply" in warning
    assert fake_github.token not in err
    # the warning goes to stderr: stdout is the report apply.yml puts in the job summary
    assert "::warning" not in out
    code, _out, err = ssp_apply(repo, fake_github, sha, tmp_path)

    assert code == 0
    (posted,) = fake_github.comments_on(FAKE_REPO, number)
    assert "alice-thesis" in posted.body


@skip_without_tools
def test_an_account_whose_comment_was_lost_gets_it_on_the_next_run(
    lab: Lab, fake_lxd: FakeLxd, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    req = lab.account("bob-common")
    repo = tmp_path / "repo"
    sha = commit(lab, repo, req)
    number = merged(fake_github, sha, "bob", req[0])
    fake_github.fail_next(4, 500, retry_after=0, path_prefix=f"/repos/{FAKE_REPO}/issues/")
    assert ssp_apply(repo, fake_github, sha, tmp_path)[0] == 0
    assert fake_github.comments_on(FAKE_REPO, number) == []
    made = len(fake_lxd.mutations)

    code, out, err = ssp_apply(repo, fake_github, sha, tmp_path)

    assert code == 0, err
    assert fake_lxd.mutations[made:] == []  # the account was already right
    assert out.split()[:2] == ["unchanged", "bob-common"]
    (posted,) = fake_github.comments_on(FAKE_REPO, number)
    assert "### ✅ Your account is ready" in posted.body
    assert "ready; nothing needed changing" in posted.body
    assert f"commented on #{number}" in err


@skip_without_tools
def test_a_failed_request_keeps_its_exit_status_and_is_explained_on_its_pull_request(
    lab: Lab, fake_lxd: FakeLxd, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    req = lab.container("alice-thesis")
    repo = tmp_path / "repo"
    sha = commit(lab, repo, req)
    number = merged(fake_github, sha, "alice", req[0])
    fake_lxd.fail_on("start", "alice-thesis", 'Failed to start device "ssh": boom')

    code, _out, _err = ssp_apply(repo, fake_github, sha, tmp_path)

    assert code == 1
    (posted,) = fake_github.comments_on(FAKE_REPO, number)
    assert "### ❌ Failed" in posted.body
    assert "boom" in posted.body
    assert "re-runs the **apply** workflow" in posted.body


@skip_without_tools
def test_a_merge_that_no_longer_fits_is_refused_on_its_own_pull_request_only(
    lab: Lab, fake_lxd: FakeLxd, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    # Two of alice's PRs each passed the check against the main of their day; with the
    # first merged she holds 2 GPUs, her quota. The second (sorting first) is merged after.
    first_req = lab.container("alice-z", gpus=2)
    second_req = lab.container("alice-a", gpus=1)
    carol_req = lab.container("carol-ci", owner="carol")
    repo = tmp_path / "repo"
    sha1 = commit(lab, repo, first_req)
    first = merged(fake_github, sha1, "alice", first_req[0])
    assert ssp_apply(repo, fake_github, sha1, tmp_path)[0] == 0
    sha2 = commit(lab, repo, first_req, second_req, carol_req)
    second = merged(fake_github, sha2, "alice", second_req[0])
    third = merged(fake_github, sha2, "carol", carol_req[0])

    code, out, _err = ssp_apply(repo, fake_github, sha2, tmp_path)

    assert code == 1
    assert fake_lxd.record("carol-ci").status == "Running"
    assert "alice-a" not in {i.name for i in fake_lxd.instances()}
    assert len(fake_lxd.record("alice-z").devices) > 2  # still has its GPUs
    (refused,) = fake_github.comments_on(FAKE_REPO, second)
    assert "### ❌ Failed" in refused.body
    assert "`requests/alice/alice-a.yaml` line" in refused.body
    assert (
        "line 8: gpus: alice would use 3 in total, over the 'student' quota of 2; older "
        r"requests hold 2 \(requests/alice/alice\-z.yaml: 2\) `[quota.gpus]`" in refused.body
    )
    assert "served oldest first" in refused.body
    assert "nobody else's request was held back by it" in refused.body
    assert "ask for less in a new pull request" in refused.body
    (ok,) = fake_github.comments_on(FAKE_REPO, third)
    assert "### ✅ Your container is ready" in ok.body
    assert "alice" not in ok.body
    # the earlier PR's comment is from its own apply and stays as it was
    (earlier,) = fake_github.comments_on(FAKE_REPO, first)
    assert "### ✅ Your container is ready" in earlier.body
    assert "skipped: requests/alice/alice-a.yaml" in out


@skip_without_tools
def test_a_broken_policy_is_reported_on_the_pull_request_that_merged_it(
    lab: Lab, fake_lxd: FakeLxd, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    broken = lab.edited("max_lease_days: 365", "max_lease_days: lots")
    repo = tmp_path / "repo"
    sha = commit(broken, repo)
    number = merged(fake_github, sha, "lab-admin", "config/policy.yaml")

    code, _out, _err = ssp_apply(repo, fake_github, sha, tmp_path)

    assert code == 1
    assert fake_lxd.mutations == []
    (posted,) = fake_github.comments_on(FAKE_REPO, number)
    assert "### ❌ Not applied" in posted.body
    assert "`config/policy.yaml` line" in posted.body


@skip_without_tools
@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--no-comment"], {}),
        (["--dry-run"], {}),
        ([], {"GITHUB_TOKEN": ""}),
        ([], {"GITHUB_SHA": ""}),
        ([], {"GITHUB_REPOSITORY": ""}),
    ],
    ids=["no-comment", "dry-run", "no-token", "no-sha", "no-repository"],
)
def test_no_comment_without_the_github_settings_or_when_asked_not_to(
    argv: list[str],
    env: dict[str, str],
    lab: Lab,
    fake_lxd: FakeLxd,
    fake_github: FakeGitHub,
    tmp_path: Path,
) -> None:
    req = lab.container("alice-thesis")
    repo = tmp_path / "repo"
    sha = commit(lab, repo, req)
    merged(fake_github, sha, "alice", req[0])
    code, _out, _err = ssp_apply(repo, fake_github, sha, tmp_path, *argv, **env)
    assert code == 0
    assert fake_github.requests == []


@skip_without_tools
def test_a_weird_purpose_is_escaped_and_the_token_never_appears(
    lab: Lab, fake_lxd: FakeLxd, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    # The purpose also carries the job's own token: the comment must not repeat it.
    req = lab.container("alice-thesis", purpose=f"{WEIRD} {fake_github.token}")
    repo = tmp_path / "repo"
    sha = commit(lab, repo, req)
    number = merged(fake_github, sha, "alice", req[0])

    code, _out, err = ssp_apply(repo, fake_github, sha, tmp_path)

    assert code == 0, err
    (posted,) = fake_github.comments_on(FAKE_REPO, number)
    text = posted.body
    assert fake_github.token not in text
    assert "<img" not in text
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in text
    assert "\\*\\*Thesis\\*\\*" in text
    assert "\\[click\\]\\(https:\u200d//evil.example\\)" in text  # not even autolinked
    assert "@lab" not in text and "@\u200blab\\-admin" in text
    assert text.count(mergecomment.MARKER) == 1  # the purpose cannot forge a second marker
    assert "\\| \\`code\\` \\_x\\_ \\# not a heading" in text
    # HTML in the comment is only ours: the folds and the code in their summaries
    assert set(re.findall(r"</?([a-z]+)", text)) <= {"details", "summary", "code", "sub"}


def test_a_url_in_a_purpose_is_text_not_a_link_in_the_pr_comment() -> None:
    # GitHub autolinks bare `https://…` and `www.…`: a member's purpose must not become a
    # link (a phishing page "to finish setting up your container") in anyone's comment
    purposes = {ALICE: "Log in at https://evil.example/ssp or www.evil.example first"}
    made = body(ctx(purposes=purposes), alice())
    assert "evil.example" in made.body
    assert "https://evil.example" not in made.body
    assert "www.evil.example" not in made.body
    assert "https:\u200d//evil.example/ssp" in made.body
    assert "www\u200d.evil.example" in made.body
