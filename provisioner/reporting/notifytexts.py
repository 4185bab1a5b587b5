"""The words of notices sent by e-mail and webhook, and each chat service's JSON body.

Pure: `member_messages` and `admin_messages` turn what maintenance found (leases with a notice
due, idle GPUs, failures and drift), and `made_messages` the requests made after they waited in
line for GPUs, into `Message`s with a stable key per notice, so the
ledger can tell a rerun from a new notice. `webhook_body` is each service's documented
incoming-webhook format for a plain-text message:

- WeCom (企业微信 群机器人): `{"msgtype": "text", "text": {"content": ...}}`
- Feishu (飞书 自定义机器人): `{"msg_type": "text", "content": {"text": ...}}`
- DingTalk (钉钉 自定义机器人): `{"msgtype": "text", "text": {"content": ...}}`
- Slack (incoming webhook): `{"text": ...}`

The texts are the lease issue's own (provisioner.reporting.notices), so a member reads the
same words wherever they read them, with GitHub's Markdown marks taken out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from provisioner.planning.leases import Lease
from provisioner.reporting.applyreport import ssh_command
from provisioner.reporting.idlenotices import final_text, idle_text, released_text, watched
from provisioner.reporting.notices import Sent, notice_text
from provisioner.values.messages import Message
from provisioner.values.outcomes import Outcome
from provisioner.values.plandata import Drift
from provisioner.values.policymodels import Policy
from provisioner.values.usage import IdleGpu, IdleHold

# A chat message or mail line is capped: a drift list cannot flood a group.
MAX_TEXT = 4000
_MARKS = re.compile(r"\*\*|`")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

_SUBJECTS = {
    "reminder": "Lease of {name} ends soon",
    "expired": "Lease of {name} ended: stopped and kept",
    "final": "Last notice: {name} will be deleted",
}


def plain(text: str) -> str:
    """TEXT without Markdown marks and control characters (newlines and tabs kept), capped."""
    text = _CONTROL.sub("", _MARKS.sub("", text))
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def member_messages(
    leases: Sequence[Lease], idle: Sequence[IdleGpu], policy: Policy, page: str = ""
) -> list[Message]:
    """A message per lease notice due (reminder, expiry, final notice) and per idle GPU of a
    running lease; PAGE, the status page's address, is added when known."""
    tail = f"\n\nThe lab's GPUs and leases: {page}\n" if page else ""
    out = []
    for lease in leases:
        if not lease.notice:
            continue
        subject = _SUBJECTS[lease.notice.split("-", 1)[0]].format(name=lease.name)
        out.append(
            Message(
                f"lease {lease.name} {lease.notice}",
                "member",
                lease.owner,
                f"[ssp] {subject}",
                plain(notice_text(lease, policy)) + tail,
            )
        )
    by_name = {lease.name: lease for lease in leases}
    due = watched(idle, leases)
    for gpu in idle:
        if gpu.container not in due:
            continue
        lease = by_name[gpu.container]
        out.append(
            Message(
                f"idle {gpu.container} {gpu.pci} {gpu.since_day(policy.timezone)}",
                "member",
                lease.owner,
                f"[ssp] GPU {gpu.pci} of {gpu.container} is idle",
                plain(idle_text(gpu, lease, policy)) + tail,
            )
        )
    return out


def idle_release_messages(
    holds: Sequence[IdleHold],
    sent: Sequence[Sent],
    leases: Sequence[Lease],
    policy: Policy,
    page: str = "",
) -> list[Message]:
    """The final idle notice and the release's comment, by mail and chat too, once each is in
    the lease issue (SENT, this pass's): the issue is the record the release waits on, these
    repeat it. One message per idle stretch and step."""
    tail = f"\n\nThe lab's GPUs and leases: {page}\n" if page else ""
    posted = {(s.name, s.notice) for s in sent if not s.error}
    by_name = {lease.name: lease for lease in leases}
    out = []
    for hold in holds:
        lease = by_name.get(hold.container)
        if lease is None or (hold.container, f"idle-{hold.due}") not in posted:
            continue
        if hold.due == "final":
            subject = f"[ssp] GPUs of {hold.container} will be released on {hold.release_on}"
            text = final_text(hold, lease, policy)
        else:
            subject = f"[ssp] GPUs of {hold.container} were released for idleness"
            text = released_text(hold, lease, policy)
        key = f"idle-{hold.due} {hold.container} {hold.since}"
        out.append(Message(key, "member", lease.owner, subject, plain(text) + tail))
    return out


def made_messages(made: Sequence[Outcome], policy: Policy, page: str = "") -> list[Message]:
    """A message to each owner whose request waited in line for GPUs and is made now: the
    GPUs it got and how to log in (the PR comment says the same)."""
    tail = f"\n\nThe lab's GPUs and leases: {page}\n" if page else ""
    out = []
    for o in made:
        gpus = ", ".join(f"GPU {g.index} ({g.model})" for g in o.gpus) or "none"
        command = ssh_command(policy, o)
        login = f"Log in with: {command}" if command else "Its address is on its PR comment."
        text = (
            f"Your container {o.name} ({o.request_path}) waited in line for its GPUs and "
            f"is made now.\nGPUs: {gpus}\n{login}\n"
        )
        out.append(
            Message(
                f"made {o.name} {o.request_path}",
                "member",
                o.owner,
                f"[ssp] {o.name} is ready: its GPUs came free",
                plain(text) + tail,
            )
        )
    return out


def admin_messages(
    day: str, failures: Sequence[str], drift: Sequence[Drift], what: str = "ssp maintain"
) -> list[Message]:
    """One message for the admins when WHAT (the day's upkeep, the doctor) failed somewhere
    or found drift; its key is the day and its content, so the same findings are sent once
    a day at most."""
    if not failures and not drift:
        return []
    lines = [f"{what} on {day} needs an admin:"]
    lines += [f"- failed: {f}" for f in failures]
    lines += [f"- drift: {d.name}: {d.message}" for d in drift]
    text = plain("\n".join(lines) + "\n")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]  # same findings, same key
    subject = f"[ssp] {what} on {day}: {len(failures) + len(drift)} to look at"
    return [Message(f"admins {what} {day} {digest}", "admins", "", subject, text)]


def webhook_body(kind: str, message: Message) -> dict[str, object]:
    """The JSON body KIND's incoming webhook takes for MESSAGE as plain text."""
    text = f"{message.subject}\n{message.text}".rstrip("\n")
    if message.login:
        text = f"{message.login}: {text}"
    if kind == "feishu":
        return {"msg_type": "text", "content": {"text": text}}
    if kind == "slack":
        return {"text": text}
    if kind in ("wecom", "dingtalk"):
        return {"msgtype": "text", "text": {"content": text}}
    raise ValueError(f"unknown webhook kind {kind!r}")
