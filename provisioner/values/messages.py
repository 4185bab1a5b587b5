"""A notice on its way out by e-mail or webhook, and what became of one delivery.

Shared by reporting (which words a `Message`), the flows (which address it) and the notify
adapter (which delivers it and says how in a `Delivery`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Message:
    """One notice: for a member (LOGIN, the container's owner) or for the admins."""

    key: str  # unique per notice and stage: the ledger's key, so a rerun sends nothing twice
    audience: Literal["member", "admins"]
    login: str  # the member it is for ("" for the admins)
    subject: str
    text: str


@dataclass(frozen=True)
class Delivery:
    """What became of one message on one channel (`mail to LOGIN`, `webhook ID`)."""

    key: str
    channel: str
    ok: bool
    attempts: int
    error: str = ""
    skipped: str = ""  # why it was not tried (no address, delivered before)
