"""Delivering one message: by e-mail (SMTP, always after STARTTLS) or by webhook (an HTTP POST
of the service's JSON body), tried up to the policy's `attempts` with a doubling backoff.

A failure never raises: it is a `Delivery` with `ok=False` and an error that names the channel
but never its secret (a webhook's URL carries its token, so errors name the webhook's id).
"""

from __future__ import annotations

import http.client
import json
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage

from provisioner.values.messages import Delivery, Message
from provisioner.values.notifymodels import Mail, Notify

Sleep = Callable[[float], None]


def retried(
    key: str, channel: str, policy: Notify, once: Callable[[], None], sleep: Sleep = time.sleep
) -> Delivery:
    """ONCE tried up to policy.attempts times; the waits are backoff, 2×backoff, …"""
    error = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            once()
            return Delivery(key, channel, True, attempt)
        except (OSError, smtplib.SMTPException, http.client.HTTPException, ValueError) as e:
            error = _said(e)
        if attempt < policy.attempts:
            sleep(policy.backoff_seconds * 2 ** (attempt - 1))
    return Delivery(key, channel, False, policy.attempts, error)


def _said(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        return f"cannot connect: {e.reason}"
    if isinstance(e, smtplib.SMTPResponseException):
        return f"SMTP {e.smtp_code}"
    if isinstance(e, ValueError | smtplib.SMTPNotSupportedError):  # our own words
        return str(e)
    return f"{type(e).__name__}: {e}".split("http", 1)[0].rstrip(": ")


def send_mail(
    mail: Mail,
    login: tuple[str, str] | None,
    to: str,
    message: Message,
    timeout: float,
) -> None:
    """MESSAGE to the address TO; raises on any failure (the caller retries)."""
    email = EmailMessage()
    email["From"] = mail.sender
    email["To"] = to
    email["Subject"] = message.subject
    email.set_content(message.text)
    context = ssl.create_default_context(cafile=mail.ca_file)
    # EHLO with the host's own name: smtplib's default (getfqdn) waits on a reverse lookup.
    helo = socket.gethostname()
    with smtplib.SMTP(mail.host, mail.port, local_hostname=helo, timeout=timeout) as smtp:
        smtp.ehlo()
        smtp.starttls(context=context)  # never in the clear: no STARTTLS, no mail
        smtp.ehlo()
        if login is not None:
            smtp.login(*login)
        smtp.send_message(email)


def post_webhook(kind: str, url: str, body: dict[str, object], timeout: float) -> None:
    """BODY posted to URL as JSON; raises unless the service says it took it."""
    if not url.startswith(("https://", "http://")):
        raise ValueError("the webhook's URL file holds no http(s) URL")
    request = urllib.request.Request(  # noqa: S310  (scheme checked above)
        url,
        data=json.dumps(body, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
        said = answer.read(65536).decode("utf-8", "replace")
    _check_answer(kind, said)


def _check_answer(kind: str, said: str) -> None:
    """The services answer 200 even for a refused message; their body says so."""
    if kind == "slack":
        if said.strip() != "ok":
            raise ValueError(f"slack answered {said[:80]!r}")
        return
    try:
        doc = json.loads(said)
    except json.JSONDecodeError as e:
        raise ValueError(f"{kind} answered no JSON") from e
    if not isinstance(doc, dict):
        raise ValueError(f"{kind} answered no JSON object")
    # WeCom and DingTalk say errcode, Feishu code (StatusCode in its older answers)
    code = doc.get("errcode", doc.get("code", doc.get("StatusCode", 0)))
    if code != 0:
        raise ValueError(f"{kind} refused the message (code {code})")
