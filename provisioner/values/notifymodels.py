"""The policy's `notify:` section: where notices go besides the lease issues on GitHub.

E-mail through the lab's SMTP server (always with STARTTLS) and webhooks into the lab's chat
(WeCom, Feishu, DingTalk, Slack). Secrets never sit in the repository: the SMTP login and each
webhook's URL (its token is in the URL) are read from private files on the host, named here
by path. Members' addresses are in `addresses` or in a private file on the host, never in
requests, so a member cannot send the lab's mail to someone else.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from provisioner.values.models import AbsPath, HostName, Id, Login, StrictModel

EMAIL_PATTERN = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"
Email = Annotated[
    str,
    StringConstraints(pattern=EMAIL_PATTERN, max_length=254),
    Field(description="An e-mail address (no display name)."),
]
WEBHOOK_KINDS = ("wecom", "feishu", "dingtalk", "slack")


class Mail(StrictModel):
    """The lab's SMTP server; every message is sent after STARTTLS, never in the clear."""

    host: HostName = Field(description="The SMTP server (submission).")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(587, description="Its submission port.")
    sender: Email = Field(description="The From address of every notice.")
    credentials_file: AbsPath | None = Field(
        None,
        description="A private file on the host (mode 0600) holding the SMTP login on its "
        "first line and the password on its second; unset: no login.",
    )
    ca_file: AbsPath | None = Field(
        None,
        description="A CA bundle on the host to verify the server's certificate with (a lab's "
        "own CA); unset: the system's.",
    )


class Webhook(StrictModel):
    """A chat group's incoming webhook; the URL (which carries its token) is in a file."""

    kind: Literal["wecom", "feishu", "dingtalk", "slack"] = Field(
        description="The service, which decides the message's JSON body."
    )
    url_file: AbsPath = Field(
        description="A private file on the host holding the webhook's URL (a secret)."
    )
    audience: Literal["members", "admins", "all"] = Field(
        "all",
        description="members: lease and idle-GPU notices; admins: failures and drift; all: both.",
    )


class Notify(StrictModel):
    """Notices by e-mail and webhook, sent by `ssp maintain` after the host work is done."""

    mail: Mail | None = Field(None, description="E-mail through the lab's SMTP server.")
    webhooks: dict[Id, Webhook] = Field(default_factory=dict)
    addresses: dict[Login, Email] = Field(
        default_factory=dict, description="Members' (and admins') e-mail addresses by login."
    )
    addresses_file: AbsPath | None = Field(
        None,
        description="A private file on the host with more addresses, one `login address` a "
        "line; the policy's own win.",
    )
    attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        3, description="Tries per message before it is reported as failed."
    )
    backoff_seconds: Annotated[int, Field(ge=0, le=60)] = Field(
        2, description="Wait before the second try; doubled before each further one."
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=60)] = Field(
        10, description="How long one try may take (connect and answer)."
    )
    ledger: AbsPath = Field(
        "/var/lib/ssp/notify-sent.json",
        description="The host file recording what was delivered, so a rerun sends nothing twice.",
    )

    @model_validator(mode="after")
    def _something(self) -> Notify:
        if self.mail is None and not self.webhooks:
            raise ValueError("notify: needs `mail:` or at least one webhook")
        return self
