"""Notices by e-mail and webhook after a maintenance pass (the policy's `notify:` section),
and after any pass that made a request which waited in line for GPUs (`made_after_waiting`).

Run after the host lock is released: delivery waits on networks, never on the host, and a
failure changes nothing there. The steps:
1. the messages (provisioner.reporting.notifytexts): each lease notice due, each idle GPU of a
   running lease, each final idle notice and release posted in a lease issue in this pass,
   and for the admins the pass's failures (a release that failed too) and drift;
2. the recipients: a member by e-mail (their address from the policy, else the host's private
   addresses file) and every webhook whose audience covers them; the admins likewise;
3. each (message, channel) not in the ledger is delivered (provisioner.notify.deliver: tried
   `attempts` times with backoff), and a delivered one recorded in the ledger, so a rerun on
   the same day, or the next, sends nothing twice; a failed one is tried again next run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from provisioner.doctor.checks import Check, Status
from provisioner.flows.maintain import Maintenance
from provisioner.flows.reconcile import Pass
from provisioner.notify import deliver, secrets
from provisioner.reporting import mergecomment, notifytexts
from provisioner.values.messages import Delivery, Message
from provisioner.values.notifymodels import Notify
from provisioner.values.plandata import Create
from provisioner.values.policymodels import Policy
from provisioner.values.waitlist import Landed

KEEP_LEDGER_DAYS = 400  # longer than any lease's reminders: an old key is never due again


@dataclass(frozen=True)
class Notified:
    deliveries: tuple[Delivery, ...]
    warnings: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[Delivery, ...]:
        return tuple(d for d in self.deliveries if not d.ok and not d.skipped)


def failures(m: Maintenance) -> list[str]:
    """What in the pass an admin must look at, one line each."""
    out = [f"{o.name}: {o.message or o.action}" for o in m.applied.result.outcomes if not o.ok]
    out += [f"{s.name}: {s.message}" for s in m.steps if not s.ok]
    out += [f"backup of {b.name}: {b.message}" for b in m.backups if not b.ok]
    out += [
        f"idle GPUs of {s.container}: {s.message}" for s in m.idle_steps if s.action == "failed"
    ]
    return out


def messages(m: Maintenance, policy: Policy, page: str = "") -> list[Message]:
    found = notifytexts.member_messages(m.leases, m.idle, policy, page)
    found += notifytexts.idle_release_messages(m.idle_holds, m.idle_sent, m.leases, policy, page)
    found += notifytexts.admin_messages(m.today.isoformat(), failures(m), m.applied.result.drift)
    return found


def send_all(
    m: Maintenance,
    policy: Policy,
    *,
    log: Callable[[str], None] = lambda _l: None,
    sleep: deliver.Sleep = time.sleep,
) -> Notified:
    """Steps 1-3 for the pass M; nothing when the policy has no `notify:` or M is a dry run."""
    if policy.notify is None or m.dry_run:
        return Notified(())
    found = messages(m, policy, policy.snapshot.page_url)
    return deliver_all(policy, found, m.today, log=log, sleep=sleep)


def made_after_waiting(
    done: Pass,
    landed: Mapping[str, Landed],
    sha: str,
    policy: Policy,
    today: date,
    *,
    log: Callable[[str], None] = lambda _l: None,
    sleep: deliver.Sleep = time.sleep,
) -> Notified:
    """Each owner of a request the pass DONE made although it landed on main before SHA (it
    waited in line for GPUs) is told, once (the ledger), by every channel the policy has for
    them."""
    late = mergecomment.made_late(done.result, landed, sha, created(done))
    # Only what got GPUs: a container without any never waited in line for them.
    made = [o for o in done.result.outcomes if o.request_path in late and o.ok and o.gpus]
    if policy.notify is None or not made:
        return Notified(())
    found = notifytexts.made_messages(made, policy, policy.snapshot.page_url)
    return deliver_all(policy, found, today, log=log, sleep=sleep)


def created(done: Pass) -> frozenset[str]:
    """The request paths the pass's plan created a container for."""
    return frozenset(a.spec.request_path for a in done.plan.actions if isinstance(a, Create))


def doctor_findings(
    policy: Policy,
    checks: Sequence[Check],
    today: date,
    *,
    log: Callable[[str], None] = lambda _l: None,
    sleep: deliver.Sleep = time.sleep,
) -> Notified:
    """The problems `ssp doctor` found, to the admins (the same findings once a day)."""
    if policy.notify is None:
        return Notified(())
    lines = [
        f"{c.name}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "")
        for c in checks
        if c.status is Status.PROBLEM
    ]
    found = notifytexts.admin_messages(today.isoformat(), lines, (), "ssp doctor")
    return deliver_all(policy, found, today, log=log, sleep=sleep)


def deliver_all(
    policy: Policy,
    found: Sequence[Message],
    today: date,
    *,
    log: Callable[[str], None] = lambda _l: None,
    sleep: deliver.Sleep = time.sleep,
) -> Notified:
    """Steps 2-3: FOUND to their recipients, each (message, channel) once (the ledger)."""
    settings = policy.notify
    if settings is None or not found:
        return Notified(())
    warnings: list[str] = []
    try:
        ledger = secrets.read_ledger(settings.ledger)
    except secrets.SecretError as e:
        warnings.append(f"{e}; sending as if nothing was sent before")
        ledger = {}
    book = _addresses(settings, warnings)
    done: list[Delivery] = []
    for message in found:
        logins = [message.login] if message.audience == "member" else list(policy.admins)
        for channel, attempt in _channels(settings, message, logins, book, warnings):
            entry = f"{message.key} | {channel}"
            if entry in ledger:
                continue
            if attempt is None:
                done.append(Delivery(message.key, channel, False, 0, skipped="no address"))
                continue
            result = deliver.retried(message.key, channel, settings, attempt, sleep)
            log(f"{channel}: {message.subject}: " + ("sent" if result.ok else result.error))
            if result.ok:
                ledger[entry] = today.isoformat()
            done.append(result)
    try:
        secrets.write_ledger(settings.ledger, _pruned(ledger, today))
    except OSError as e:
        warnings.append(f"cannot write the ledger {settings.ledger}: {type(e).__name__}")
    return Notified(tuple(done), tuple(warnings))


Attempt = Callable[[], None] | None


def _channels(
    settings: Notify,
    message: Message,
    logins: Sequence[str],
    book: dict[str, str],
    warnings: list[str],
) -> list[tuple[str, Attempt]]:
    """(channel, one try) for each way MESSAGE goes out; a try of None: no address."""
    out: list[tuple[str, Attempt]] = []
    mail = settings.mail
    if mail is not None:
        login = _smtp_login(settings, warnings)
        for who in logins:
            to = book.get(who.lower())
            out.append((f"mail to {who}", _mail_try(settings, login, to, message) if to else None))
    wanted = "members" if message.audience == "member" else "admins"
    for name, hook in sorted(settings.webhooks.items()):
        if hook.audience not in (wanted, "all"):
            continue
        out.append((f"webhook {name}", _hook_try(settings, hook.kind, hook.url_file, message)))
    return out


def _mail_try(
    settings: Notify, login: tuple[str, str] | None, to: str, message: Message
) -> Callable[[], None]:
    mail = settings.mail
    assert mail is not None  # noqa: S101  (only called with mail set)
    return lambda: deliver.send_mail(mail, login, to, message, settings.timeout_seconds)


def _hook_try(settings: Notify, kind: str, url_file: str, message: Message) -> Callable[[], None]:
    body = notifytexts.webhook_body(kind, message)

    def once() -> None:
        try:
            url = secrets.webhook_url(url_file)
        except secrets.SecretError as e:
            raise ValueError(str(e)) from None
        deliver.post_webhook(kind, url, body, settings.timeout_seconds)

    return once


def _smtp_login(settings: Notify, warnings: list[str]) -> tuple[str, str] | None:
    path = settings.mail.credentials_file if settings.mail else None
    if path is None:
        return None
    try:
        return secrets.smtp_login(path)
    except secrets.SecretError as e:
        if str(e) not in warnings:
            warnings.append(str(e))
        return None


def _addresses(settings: Notify, warnings: list[str]) -> dict[str, str]:
    book: dict[str, str] = {}
    if settings.addresses_file:
        try:
            book.update(secrets.addresses(settings.addresses_file))
        except secrets.SecretError as e:
            warnings.append(str(e))
    book.update({login.lower(): address for login, address in settings.addresses.items()})
    return book


def _pruned(ledger: dict[str, str], today: date) -> dict[str, str]:
    oldest = (today - timedelta(days=KEEP_LEDGER_DAYS)).isoformat()
    return {k: v for k, v in ledger.items() if v >= oldest}
