"""The comment commands' judgement, without LXD: what a comment asks (strictly), who may ask
it, how often, which snapshots make room, the host's ledger, commands.yml's gate as GitHub
evaluates it, and the reactions through the fake GitHub (held to GitHub's contract).

The commands themselves, on the real LXD through the workflow's steps, are in
tests/integration/test_comment_commands_real.py.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import workflowrun
from fakegithub import FAKE_REPO, FakeGitHub
from fakegithub.events import InvalidPayloadError, issue_comment_event, validate_event
from fakelxd import NOW, FakeLxd, Lab
from workflowrun import WORKFLOWS

from provisioner.flows.comment import Host, run_command
from provisioner.flows.reconcile import Pass, run_pass
from provisioner.github.commands import CommandsClient
from provisioner.host import commandlog
from provisioner.host.lock import host_lock
from provisioner.reporting import commandreplies
from provisioner.validation import commands as judge
from provisioner.validation.validate import blocking
from provisioner.values.errors import LedgerError
from provisioner.values.issues import LEASE_LABEL, lease_marker
from provisioner.values.outcomes import Done
from provisioner.values.state import RELEASED

BOT = "github-actions[bot]"
SHA = "c0ffee" * 6 + "abcd"
PCI = {0: "0000:18:00.0", 1: "0000:3b:00.0", 2: "0000:86:00.0", 3: "0000:af:00.0"}


@pytest.mark.parametrize(
    ("body", "verb"),
    [
        ("/ssp restart", "restart"),
        ("/ssp stop", "stop"),
        ("/ssp start \t", "start"),
        ("/ssp snapshot\r\nplease, before my long run", "snapshot"),
        ("/ssp  stop", None),  # two blanks
        ("/SSP stop", None),
        ("/ssp Stop", None),
        ("/ssp stop now", None),
        ("/ssp stop; rm -rf /", None),
        ("/ssp snapshot name=mine", None),
        (" /ssp stop", None),
        ("please /ssp stop", None),
        ("/ssp", None),
        ("/ssp delete", None),
        ("/ssp restart\u202e", None),
        ("", None),
    ],
)
def test_only_a_first_line_of_exactly_ssp_and_a_verb_is_a_command(
    body: str, verb: str | None
) -> None:
    assert judge.parse_verb(body) == verb


def _payload(
    gh: FakeGitHub,
    body: str,
    *,
    author: str = "alice",
    association: str = "COLLABORATOR",
    issue_author: str = BOT,
    labels: tuple[str, ...] = (LEASE_LABEL,),
    marker: str = lease_marker("alice-x"),
) -> dict[str, Any]:
    gh.user(BOT, type="Bot")
    issue = gh.add_issue(FAKE_REPO, author=issue_author, title="Lease", body=marker, labels=labels)
    comment = gh.add_comment(FAKE_REPO, issue.number, body, author=author, association=association)
    return issue_comment_event(issue, comment, site=gh.site)


def test_the_event_names_a_container_only_on_ssp_s_own_lease_issue() -> None:
    gh = FakeGitHub()
    gh.add_repo(FAKE_REPO)
    event = judge.read_event(_payload(gh, "/ssp stop"))
    assert (event.verb, event.commenter, event.association) == ("stop", "alice", "COLLABORATOR")
    assert event.addressed and not event.on_pull
    assert judge.lease_container(event) == "alice-x"
    # a person's issue with the label and a copied marker, or ssp's issue without the label
    forged = judge.read_event(_payload(gh, "/ssp stop", issue_author="bob"))
    unlabelled = judge.read_event(_payload(gh, "/ssp stop", labels=()))
    assert judge.lease_container(forged) is None
    assert judge.lease_container(unlabelled) is None


def test_a_comment_on_a_pull_request_is_read_as_one() -> None:
    gh = FakeGitHub()
    gh.add_repo(FAKE_REPO)
    pull = gh.add_pull(FAKE_REPO, author="alice", title="x", body=lease_marker("alice-x"))
    comment = gh.add_comment(FAKE_REPO, pull.number, "/ssp start", author="alice")
    event = judge.read_event(issue_comment_event(pull, comment, site=gh.site))
    assert event.on_pull and event.number == pull.number and event.verb == "start"
    assert judge.lease_container(event) is None  # a PR is never a lease issue


def test_an_event_that_is_no_new_comment_is_refused() -> None:
    gh = FakeGitHub()
    gh.add_repo(FAKE_REPO)
    payload = _payload(gh, "/ssp stop")
    with pytest.raises(judge.EventError, match="only `created` comments"):
        judge.read_event(payload | {"action": "edited"})
    with pytest.raises(judge.EventError, match=r"comment\.user\.login"):
        judge.read_event(payload | {"comment": {**payload["comment"], "user": None}})


def _event(commenter: str, association: str = "COLLABORATOR") -> judge.CommentEvent:
    return judge.CommentEvent(
        comment_id=1,
        number=2,
        on_pull=False,
        commenter=commenter,
        association=association,
        verb="stop",
        addressed=True,
        lease_name="alice-x",
    )


def test_the_owner_and_the_admins_may_command_others_may_not() -> None:
    admins = ["lab-admin"]
    assert judge.refusal(_event("alice"), "alice", admins) is None
    assert judge.refusal(_event("ALICE", "OWNER"), "alice", admins) is None  # logins ignore case
    assert judge.refusal(_event("Lab-Admin", "MEMBER"), "alice", admins) is None
    why = judge.refusal(_event("bob"), "alice", admins)
    assert why == "only @alice (its owner) or an admin may `/ssp stop` this container"


@pytest.mark.parametrize("association", ["NONE", "CONTRIBUTOR", "FIRST_TIMER", "MANNEQUIN"])
def test_even_the_owner_must_be_known_to_the_repository(association: str) -> None:
    why = judge.refusal(_event("alice", association), "alice", ["lab-admin"])
    assert why is not None and f"GitHub says {association}" in why


def test_the_rate_limit_counts_the_last_hour_only() -> None:
    now = 10_000.0
    assert judge.rate_refusal([now - 3601, now - 4000], now, per_hour=2) is None
    assert judge.rate_refusal([now - 10], now, per_hour=2) is None
    why = judge.rate_refusal([now - 1800, now - 10], now, per_hour=2)
    assert why is not None
    assert "2 commands in the last hour" in why and "try again in 30 min" in why
    assert judge.recent([now - 3601, now - 5, now + 5], now) == [now - 5]


def test_snapshot_makes_room_only_among_its_own() -> None:
    existing = ["retired-20261101", "ssp-cmd-20261201-090000", "mine", "ssp-cmd-20261202-090000"]
    assert judge.snapshots_to_drop(existing, keep=3) == []
    assert judge.snapshots_to_drop(existing, keep=2) == ["ssp-cmd-20261201-090000"]
    assert judge.snapshots_to_drop(existing, keep=1) == [
        "ssp-cmd-20261201-090000",
        "ssp-cmd-20261202-090000",
    ]


def test_the_ledger_is_owner_only_and_an_unreadable_one_refuses(tmp_path: Path) -> None:
    path = tmp_path / "lib" / "commands.json"
    assert commandlog.read(path) == {}
    commandlog.write(path, {"alice-x": [1.0, 2.0], "gone": []})
    assert commandlog.read(path) == {"alice-x": [1.0, 2.0]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(LedgerError, match="cannot read the commands ledger"):
        commandlog.read(path)


def test_an_unknown_command_is_answered_with_the_verbs() -> None:
    text = commandreplies.unknown("https://lab.example.org/status")
    for verb in judge.VERBS:
        assert f"`/ssp {verb}`" in text
    assert text.rstrip().endswith("https://lab.example.org/status")


# --- commands.yml's gate, as GitHub evaluates the job's `if:` --------------------------------


@pytest.mark.parametrize(
    ("body", "association", "runs"),
    [
        ("/ssp stop", "COLLABORATOR", True),
        ("/ssp stop", "MEMBER", True),
        ("/ssp stop", "OWNER", True),
        ("/SSP whatever", "MEMBER", True),  # startsWith ignores case; ssp answers with the verbs
        ("/ssp stop", "NONE", False),
        ("/ssp stop", "CONTRIBUTOR", False),
        ("/ssp stop", "FIRST_TIME_CONTRIBUTOR", False),
        ("thanks!", "OWNER", False),
        ("/sspstop", "OWNER", False),
    ],
)
def test_only_ssp_comments_by_the_repository_s_people_take_the_runner(
    body: str, association: str, runs: bool
) -> None:
    gh = FakeGitHub()
    gh.add_repo(FAKE_REPO)
    event = _payload(gh, body, association=association)
    job = workflowrun.load(WORKFLOWS / "commands.yml")["jobs"]["command"]
    context = {"github": {"ref": "refs/heads/main", "event": event}}
    assert workflowrun._job_condition(str(job["if"]), context) is runs
    context = {"github": {"ref": "refs/heads/other", "event": event}}
    assert workflowrun._job_condition(str(job["if"]), context) is False


def test_a_comment_event_github_would_not_send_is_refused() -> None:
    gh = FakeGitHub()
    gh.add_repo(FAKE_REPO)
    event = _payload(gh, "/ssp stop")
    event["comment"]["author_association"] = "ADMIN"  # not one of GitHub's values
    with pytest.raises(InvalidPayloadError, match="author_association"):
        validate_event("issue_comment$created", event)


# --- reactions and answers through the fake GitHub --------------------------------------------


def test_reactions_and_the_answer_are_never_doubled(fake_github: FakeGitHub) -> None:
    client = CommandsClient(repository=FAKE_REPO, token=fake_github.token, api_url=fake_github.url)
    issue = fake_github.add_issue(FAKE_REPO, author="alice", title="t", body="b")
    comment = fake_github.add_comment(FAKE_REPO, issue.number, "/ssp stop", author="alice")
    client.react(comment.id, "eyes")
    client.react(comment.id, "eyes")  # a retry: GitHub answers 200 and adds nothing
    client.react(comment.id, "+1")
    assert fake_github.reactions_on(comment.id) == [("ssp-bot", "eyes"), ("ssp-bot", "+1")]
    first = client.answer(issue.number, comment.id, "done")
    again = client.answer(issue.number, comment.id, "done, said again")
    assert first.id == again.id
    (answer,) = [c for c in fake_github.comments_on(FAKE_REPO, issue.number) if c.id == first.id]
    assert answer.body.endswith("done, said again")
    with pytest.raises(ValueError, match="not a reaction"):
        client.react(comment.id, "heart")
    fake_github.assert_no_violations()


# --- what /ssp stop and /ssp start do to GPUs: whole passes on the in-memory LXD --------------


def test_stop_hands_the_gpus_to_the_request_waiting_and_start_queues_for_them(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    lab = Lab.make(tmp_path)
    fake = FakeLxd.seeded(present_gpus=list(PCI.values()))
    alice = lab.container("alice-x", gpus=2)
    first = run_pass(lab.validate(alice), fake, fake.servers, now=NOW, sha=SHA)  # type: ignore[arg-type]
    assert first.result.ok
    # carol's request wants exactly the two GPUs alice holds: it waits
    validation = lab.validate(alice, lab.container("carol-y", owner="carol", gpus=[0, 1]))
    assert not blocking(validation)

    def reconcile() -> Pass:
        return run_pass(validation, fake, fake.servers, now=NOW, sha=SHA)  # type: ignore[arg-type]

    waiting = {o.name: o.action for o in reconcile().result.outcomes}
    assert waiting["carol-y"] == Done.WAITING and waiting["alice-x"] != Done.WAITING
    client = CommandsClient(repository=FAKE_REPO, token=fake_github.token, api_url=fake_github.url)
    fake_github.user(BOT, type="Bot")
    issue = fake_github.add_issue(
        FAKE_REPO, author=BOT, title="t", body=lease_marker("alice-x"), labels=(LEASE_LABEL,)
    )
    host = Host(
        lxd=fake,  # type: ignore[arg-type]
        lock=lambda: host_lock(tmp_path / "ssp.lock"),
        ledger=tmp_path / "commands.json",
        reconcile=reconcile,
    )

    def command(body: str) -> str:
        comment = fake_github.add_comment(FAKE_REPO, issue.number, body, author="alice")
        event = judge.read_event(issue_comment_event(issue, comment, site=fake_github.site))
        done = run_command(event, validation, client, host, now=NOW)
        assert done.outcome == "done", done.message
        return done.message

    def gpus(name: str) -> list[str]:
        devices = fake.instance(name).devices.values()
        return [d["pci"] for d in devices if d.get("type") == "gpu"]

    assert "GPUs went back to the pool" in command("/ssp stop")
    after = fake.instance("alice-x")
    assert not after.running and after.config[RELEASED].endswith(" owner")
    assert gpus("alice-x") == [] and sorted(gpus("carol-y")) == [PCI[0], PCI[1]]
    assert fake.instance("carol-y").running

    # started again, alice asks for two GPUs again and gets the two still free
    assert "It is running with 2 GPUs." in command("/ssp start")
    assert fake.instance("alice-x").running and RELEASED not in fake.instance("alice-x").config
    assert sorted(gpus("alice-x")) == [PCI[2], PCI[3]]
    assert sorted(gpus("carol-y")) == [PCI[0], PCI[1]]


def test_a_busy_host_is_a_failure_the_member_is_told_without_the_host_s_paths(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    lab = Lab.make(tmp_path)
    fake = FakeLxd.seeded()
    validation = lab.validate(lab.container("alice-x"))
    assert run_pass(validation, fake, fake.servers, now=NOW, sha=SHA).result.ok  # type: ignore[arg-type]
    lock = tmp_path / "run" / "ssp-apply.lock"
    host = Host(
        lxd=fake,  # type: ignore[arg-type]
        lock=lambda: host_lock(lock, wait_s=0),
        ledger=tmp_path / "commands.json",
        reconcile=lambda: None,
    )
    fake_github.user(BOT, type="Bot")
    issue = fake_github.add_issue(
        FAKE_REPO, author=BOT, title="t", body=lease_marker("alice-x"), labels=(LEASE_LABEL,)
    )
    comment = fake_github.add_comment(FAKE_REPO, issue.number, "/ssp restart", author="alice")
    event = judge.read_event(issue_comment_event(issue, comment, site=fake_github.site))
    client = CommandsClient(repository=FAKE_REPO, token=fake_github.token, api_url=fake_github.url)
    before = len(fake.mutations)
    with host_lock(lock):  # an apply is running
        done = run_command(event, validation, client, host, now=NOW)
    assert (done.outcome, done.ok) == ("failed", False)
    assert "the host is busy" in done.message and str(lock) not in done.message
    assert str(lock) in done.error  # the job's log names it for the admins
    assert fake_github.reactions_on(comment.id) == [("ssp-bot", "eyes"), ("ssp-bot", "-1")]
    assert fake.mutations[before:] == []  # nothing was done to the container
    assert not (tmp_path / "commands.json").exists()  # a command not run is not counted
