"""Notices by e-mail and webhook (policy `notify:`), delivered to real local servers: an SMTP
server that insists on STARTTLS (a self-signed certificate made here, verified through the
policy's `ca_file`) and a login read from a private file; an HTTP receiver that answers as
WeCom, Feishu, DingTalk and Slack do, or fails (500s, then success; a dead port). Each
notice goes out once (the ledger), a failure is retried with backoff and reported, never
raised, and a secret (the webhook's URL, the SMTP password) is never in what is reported."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from notifyservers import LOGIN, PASSWORD, Mailbox, Receiver, free_port, smtp_server
from pydantic import ValidationError
from test_leases import LAST, container, policy

from provisioner.doctor.checks import Check, Status
from provisioner.flows import notify
from provisioner.flows.maintain import Maintenance
from provisioner.flows.reconcile import Pass
from provisioner.planning.leases import review
from provisioner.reporting.notices import Sent
from provisioner.values.outcomes import ApplyResult, Done, GpuInfo, Outcome, Subject
from provisioner.values.plandata import Create, Drift, Plan
from provisioner.values.policymodels import Policy, SnapshotPolicy
from provisioner.values.usage import IdleGpu, IdleHold
from provisioner.values.waitlist import Landed

REMINDER_DAY = LAST - timedelta(days=3)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[int, Mailbox]]:
    yield from smtp_server(tmp_path)


@pytest.fixture
def plain_smtp(tmp_path: Path) -> Iterator[tuple[int, Mailbox]]:
    yield from smtp_server(tmp_path, starttls=False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def secret(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def lab_policy(tmp_path: Path, **section: Any) -> Policy:
    return policy(notify={"ledger": str(tmp_path / "ledger.json"), **section})


def mail_section(tmp_path: Path, port: int) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "sender": "gpu-lab@lab.example",
        "credentials_file": secret(tmp_path, "smtp", f"{LOGIN}\n{PASSWORD}\n"),
        "ca_file": str(tmp_path / "smtp.crt"),
    }


def hook(tmp_path: Path, name: str, kind: str, url: str, audience: str = "all") -> dict[str, Any]:
    return {"kind": kind, "url_file": secret(tmp_path, f"hook-{name}", url), "audience": audience}


def upkeep(p: Policy, day: date, *, drift: tuple[Drift, ...] = (), **labels: str) -> Maintenance:
    applied = Pass(None, None, ApplyResult(outcomes=(), drift=drift), ())  # type: ignore[arg-type]
    return Maintenance(applied, day, tuple(review([container(**labels)], p, day)), ())


def test_a_reminder_is_mailed_after_starttls_with_the_login_from_the_private_file_once(
    tmp_path: Path, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    p = lab_policy(
        tmp_path,
        mail=mail_section(tmp_path, port),
        addresses_file=secret(tmp_path, "addresses", "# login address\nalice alice@lab.example\n"),
    )
    p = p.model_copy(update={"snapshot": SnapshotPolicy(page_url="https://lab.example/status")})
    for _ in range(2):  # a rerun on the same day sends nothing again
        done = notify.send_all(upkeep(p, REMINDER_DAY), p)
        assert not done.failed and not done.warnings, done

    (got,) = box.got
    assert got.tls and got.login == LOGIN
    assert got.to == ["alice@lab.example"]
    assert got.mail["From"] == "gpu-lab@lab.example"
    assert got.mail["Subject"] == "[ssp] Lease of alice-thesis ends soon"
    text = got.mail.get_payload(decode=True).decode()
    assert f"ends with {LAST}" in text and "**" not in text
    assert "https://lab.example/status" in text
    # the next notice (the expiry) is new: it goes out too
    notify.send_all(upkeep(p, LAST + timedelta(days=1)), p)
    assert [r.mail["Subject"] for r in box.got][
        1
    ] == "[ssp] Lease of alice-thesis ended: stopped and kept"


def test_no_mail_goes_out_without_starttls_and_the_failure_is_reported_after_retries(
    tmp_path: Path, plain_smtp: tuple[int, Mailbox]
) -> None:
    port, box = plain_smtp
    mail = mail_section(tmp_path, port) | {"ca_file": None}
    p = lab_policy(tmp_path, mail=mail, addresses={"alice": "alice@lab.example"})
    waits: list[float] = []
    done = notify.send_all(upkeep(p, REMINDER_DAY), p, sleep=waits.append)

    assert box.got == []
    (failed,) = done.failed
    assert failed.channel == "mail to alice" and failed.attempts == 3
    assert "STARTTLS" in failed.error and PASSWORD not in failed.error
    assert waits == [2, 4]  # backoff, doubled


def test_a_member_without_an_address_is_reported_not_mailed(
    tmp_path: Path, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    p = lab_policy(tmp_path, mail=mail_section(tmp_path, port))
    done = notify.send_all(upkeep(p, REMINDER_DAY), p)
    assert box.got == []
    assert [(d.channel, d.skipped) for d in done.deliveries] == [("mail to alice", "no address")]


def test_each_webhook_gets_its_services_documented_body(tmp_path: Path, receiver: Receiver) -> None:
    wecom, feishu = receiver.add("/wecom"), receiver.add("/feishu", '{"code": 0, "msg": "ok"}')
    ding, slack = receiver.add("/ding"), receiver.add("/slack", "ok")
    p = lab_policy(
        tmp_path,
        webhooks={
            "wecom": hook(tmp_path, "w", "wecom", receiver.url + "/wecom"),
            "feishu": hook(tmp_path, "f", "feishu", receiver.url + "/feishu"),
            "ding": hook(tmp_path, "d", "dingtalk", receiver.url + "/ding"),
            "slack": hook(tmp_path, "s", "slack", receiver.url + "/slack"),
        },
    )
    done = notify.send_all(upkeep(p, REMINDER_DAY), p)
    assert all(d.ok for d in done.deliveries) and len(done.deliveries) == 4

    (w,), (f,), (d,), (s,) = wecom.bodies, feishu.bodies, ding.bodies, slack.bodies
    assert w["msgtype"] == "text" and d["msgtype"] == "text"
    assert f["msg_type"] == "text" and set(s) == {"text"}
    texts = [w["text"]["content"], f["content"]["text"], d["text"]["content"], s["text"]]
    assert len(set(texts)) == 1
    assert texts[0].startswith("alice: [ssp] Lease of alice-thesis ends soon")
    assert f"ends with {LAST}" in texts[0]


def test_a_failing_webhook_is_retried_with_backoff_until_it_takes_the_message(
    tmp_path: Path, receiver: Receiver
) -> None:
    wecom = receiver.add("/wecom")
    wecom.fail_with = [500, 500]
    p = lab_policy(
        tmp_path, webhooks={"lab": hook(tmp_path, "w", "wecom", receiver.url + "/wecom")}
    )
    waits: list[float] = []
    (done,) = notify.send_all(upkeep(p, REMINDER_DAY), p, sleep=waits.append).deliveries
    assert done.ok and done.attempts == 3
    assert waits == [2, 4]
    assert wecom.bodies[:2] == [None, None] and wecom.bodies[2]["msgtype"] == "text"


def test_a_refusal_in_a_200_answer_is_a_failure(tmp_path: Path, receiver: Receiver) -> None:
    receiver.add("/ding", '{"errcode": 310000, "errmsg": "keywords not in content"}')
    p = lab_policy(
        tmp_path,
        attempts=1,
        webhooks={"lab": hook(tmp_path, "d", "dingtalk", receiver.url + "/ding")},
    )
    (failed,) = notify.send_all(upkeep(p, REMINDER_DAY), p).failed
    assert failed.error == "dingtalk refused the message (code 310000)"


def test_a_dead_webhook_is_reported_without_its_url_and_tried_again_next_run(
    tmp_path: Path, receiver: Receiver
) -> None:
    token = "key=93ab5e7c-secret-token"
    dead = f"http://127.0.0.1:{free_port()}/cgi-bin/webhook/send?{token}"
    p = lab_policy(
        tmp_path, backoff_seconds=0, webhooks={"lab": hook(tmp_path, "w", "wecom", dead)}
    )
    (failed,) = notify.send_all(upkeep(p, REMINDER_DAY), p).failed
    assert failed.channel == "webhook lab" and failed.attempts == 3
    assert failed.error.startswith("cannot connect") and token not in failed.error

    live = receiver.add("/cgi-bin/webhook/send")
    secret(tmp_path, "hook-w", f"{receiver.url}/cgi-bin/webhook/send?{token}")
    (done,) = notify.send_all(upkeep(p, REMINDER_DAY), p).deliveries
    assert done.ok and len(live.bodies) == 1


def test_admins_hear_of_drift_and_members_webhooks_do_not(
    tmp_path: Path, receiver: Receiver
) -> None:
    members, admins = receiver.add("/members"), receiver.add("/admins", "ok")
    p = lab_policy(
        tmp_path,
        webhooks={
            "members": hook(tmp_path, "m", "wecom", receiver.url + "/members", "members"),
            "admins": hook(tmp_path, "a", "slack", receiver.url + "/admins", "admins"),
        },
    )
    drift = (Drift(name="bob-exp", message="limits.cpu is 8 in LXD, 4 in the request"),)
    notify.send_all(upkeep(p, LAST - timedelta(days=30), drift=drift), p)
    (said,) = admins.bodies
    assert "drift: bob-exp: limits.cpu is 8 in LXD" in said["text"]
    assert members.bodies == []


def test_idle_gpus_reach_their_owner_once_per_idle_stretch(
    tmp_path: Path, receiver: Receiver
) -> None:
    hooked = receiver.add("/feishu", '{"code": 0}')
    p = lab_policy(
        tmp_path, webhooks={"lab": hook(tmp_path, "f", "feishu", receiver.url + "/feishu")}
    )
    day = LAST - timedelta(days=30)
    m = upkeep(p, day)
    idle = IdleGpu("", "0000:4b:00.0", "alice-thesis", "alice", 1_800_000_000, 1)
    for _ in range(2):
        notify.send_all(replace(m, idle=(idle,)), p)
    (body,) = hooked.bodies
    assert "GPU 0000:4b:00.0 of alice-thesis is idle" in body["content"]["text"]


def test_dry_runs_and_a_policy_without_notify_send_nothing(
    tmp_path: Path, receiver: Receiver
) -> None:
    wecom = receiver.add("/wecom")
    p = lab_policy(
        tmp_path, webhooks={"lab": hook(tmp_path, "w", "wecom", receiver.url + "/wecom")}
    )
    assert notify.send_all(replace(upkeep(p, REMINDER_DAY), dry_run=True), p).deliveries == ()
    assert notify.send_all(upkeep(p, REMINDER_DAY), policy()).deliveries == ()
    assert wecom.bodies == []


@pytest.mark.parametrize(
    "section",
    [
        {},
        {"mail": {"host": "smtp.lab.example", "sender": "a@lab.example", "password": "x"}},
        {"webhooks": {"lab": {"kind": "wecom", "url": "https://qyapi.weixin.qq.com/?key=x"}}},
        {"webhooks": {"lab": {"kind": "teams", "url_file": "/etc/ssp/hook"}}},
    ],
    ids=["empty", "password-in-policy", "url-in-policy", "unknown-service"],
)
def test_the_policy_takes_no_secret_and_no_unknown_service(section: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        policy(notify=section)


def test_a_bad_secret_file_is_named_never_quoted(tmp_path: Path, smtp: tuple[int, Mailbox]) -> None:
    mail = mail_section(tmp_path, smtp[0])
    mail["credentials_file"] = secret(tmp_path, "smtp", "pw-on-the-only-line\n")
    p = lab_policy(
        tmp_path,
        attempts=1,
        mail=mail,
        addresses={"alice": "alice@lab.example"},
        webhooks={"lab": hook(tmp_path, "w", "wecom", "token=abc123 not a url")},
    )
    done = notify.send_all(upkeep(p, REMINDER_DAY), p)
    (failed,) = done.failed
    assert failed.channel == "webhook lab"
    assert str(tmp_path / "hook-w") in failed.error and "abc123" not in failed.error
    (warning,) = done.warnings
    assert str(tmp_path / "smtp") in warning and "pw-on-the-only-line" not in warning


def test_doctor_problems_reach_the_admins_once_a_day_by_mail_and_chat(
    tmp_path: Path, smtp: tuple[int, Mailbox], receiver: Receiver
) -> None:
    port, box = smtp
    admins, members = receiver.add("/admins", "ok"), receiver.add("/members")
    p = lab_policy(
        tmp_path,
        mail=mail_section(tmp_path, port),
        addresses={"lab-admin": "admin@lab.example", "alice": "alice@lab.example"},
        webhooks={
            "admins": hook(tmp_path, "a", "slack", receiver.url + "/admins", "admins"),
            "members": hook(tmp_path, "m", "wecom", receiver.url + "/members", "members"),
        },
    )
    checks = [
        Check("lxd", Status.OK, "LXD 5.0.2"),
        Check("pool", Status.PROBLEM, "pool default is 97% full", "grow it (admin guide 4)"),
    ]
    for _ in range(2):
        done = notify.doctor_findings(p, checks, REMINDER_DAY)
        assert not done.failed, done
    (mail,) = box.got
    assert mail.to == ["admin@lab.example"]
    assert mail.mail["Subject"] == f"[ssp] ssp doctor on {REMINDER_DAY}: 1 to look at"
    (said,) = admins.bodies
    assert "pool: pool default is 97% full (fix: grow it (admin guide 4))" in said["text"]
    assert "lxd" not in said["text"].split("\n", 2)[-1] and members.bodies == []
    healthy = [Check("lxd", Status.OK, "LXD 5.0.2")]
    assert notify.doctor_findings(p, healthy, REMINDER_DAY).deliveries == ()


def test_a_receiver_that_answers_garbage_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    # a server whose answer is no HTTP: http.client's own errors, which are not OSErrors
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def bad_answers() -> None:
        for _ in range(2):
            conn, _addr = server.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 two hundred\r\n\r\n")  # http.client: BadStatusLine
            conn.close()

    threading.Thread(target=bad_answers, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    p = lab_policy(
        tmp_path, attempts=2, backoff_seconds=0, webhooks={"lab": hook(tmp_path, "w", "wecom", url)}
    )
    try:
        (failed,) = notify.send_all(upkeep(p, REMINDER_DAY), p).failed
    finally:
        server.close()
    assert failed.attempts == 2 and failed.error


def test_a_final_idle_notice_goes_by_chat_too_once_it_is_in_the_lease_issue(
    tmp_path: Path, receiver: Receiver
) -> None:
    hooked = receiver.add("/feishu", '{"code": 0}')
    p = lab_policy(
        tmp_path, webhooks={"lab": hook(tmp_path, "f", "feishu", receiver.url + "/feishu")}
    )
    day = LAST - timedelta(days=30)
    m = upkeep(p, day)
    hold = IdleHold("alice-thesis", "alice", ("0000:4b:00.0",), day, "final", day + timedelta(7))
    # Not in the lease issue (GitHub failed): no mail or chat either; the next pass tries.
    failed = Sent("alice-thesis", "idle-final", error="GitHub: 502")
    notify.send_all(replace(m, idle_holds=(hold,), idle_sent=(failed,)), p)
    assert hooked.bodies == []
    posted = Sent("alice-thesis", "idle-final", 12, "https://github.example/i/12", True)
    for _ in range(2):
        notify.send_all(replace(m, idle_holds=(hold,), idle_sent=(posted,)), p)
    (body,) = hooked.bodies
    text = body["content"]["text"]
    assert f"GPUs of alice-thesis will be released on {day + timedelta(7)}" in text
    assert "final notice" in text


def test_a_request_made_after_it_waited_in_line_is_told_once_with_its_ssh_command(
    tmp_path: Path, receiver: Receiver
) -> None:
    hooked = receiver.add("/slack", "ok")
    p = lab_policy(
        tmp_path, webhooks={"lab": hook(tmp_path, "s", "slack", receiver.url + "/slack")}
    )
    path = "requests/alice/alice-pin.yaml"
    made = Outcome(
        name="alice-pin",
        owner="alice",
        request_path=path,
        kind=Subject.CONTAINER,
        action=Done.CREATED,
        ok=True,
        login="alice",
        ssh_port=22005,
        gpus=(GpuInfo(0, "NVIDIA GeForce RTX 4090", "0000:18:00.0"),),
    )
    # the pass's plan created it (only the request path of its spec is read)
    create = Create(spec=SimpleNamespace(request_path=path))  # type: ignore[arg-type]
    done = Pass(None, Plan(actions=(create,)), ApplyResult(outcomes=(made,)), ())  # type: ignore[arg-type]
    landed = {path: Landed(3, "a" * 40)}
    for _ in range(2):  # the next run, or a rerun, sends nothing again (the ledger)
        notify.made_after_waiting(done, landed, "b" * 40, p, LAST)
    (body,) = hooked.bodies
    assert body["text"].startswith("alice: [ssp] alice-pin is ready: its GPUs came free")
    assert "GPU 0 (NVIDIA GeForce RTX 4090)" in body["text"]
    assert "ssh -p 22005 alice@" in body["text"]
    # made on the very pass its PR was merged (no wait): the PR comment says it, no notice
    again = notify.made_after_waiting(done, {path: Landed(3, "b" * 40)}, "b" * 40, p, LAST)
    assert again.deliveries == ()
