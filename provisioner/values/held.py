"""What the host has already given out, and to whom: names that stay with their owner.

A request's file is not the only record of who holds a name. A container that was retired
or whose lease ended is kept (stopped, with its files) until retention deletes it, and an
account on a shared server keeps its home after its request goes: while they exist, their
names are their owners', whoever files a request for them, and a newer member login that
happens to equal an account name does not change that. `Held` is that record, read from
LXD on the host (`from_lxd`) or from the published snapshot at PR time
(`provisioner.status.snapshot.held`), and the validator's name rules read it
(`provisioner.validation.crossrules`). Pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from provisioner.values import state
from provisioner.values.policymodels import Policy
from provisioner.values.state import Instance


@dataclass(frozen=True)
class Held:
    """Owners (lower case) of what exists: instances by name, accounts by (server id, login),
    and ssp's images by alias (None: not known, as on the host, where the plan checks them)."""

    names: Mapping[str, str] = field(default_factory=dict)
    accounts: Mapping[tuple[str, str], str] = field(default_factory=dict)
    images: Mapping[str, str] | None = None

    def name_holder(self, name: str, owner: str) -> str | None:
        """Who holds instance NAME when it is not OWNER (None: free, or OWNER's own)."""
        holder = self.names.get(name)
        return holder if holder and holder != owner.lower() else None

    def account_holder(self, server: str, login: str, owner: str) -> str | None:
        """Who holds LOGIN on SERVER when it is not OWNER (None: free, or OWNER's own)."""
        holder = self.accounts.get((server, login.lower()))
        return holder if holder and holder != owner.lower() else None


def account_owner(label: str) -> str:
    """The owner a shared server's `user.ssp.account.<login>` records ("" when none)."""
    try:
        data = json.loads(label)
    except ValueError:
        return ""
    owner = data.get("owner") if isinstance(data, dict) else None
    return owner.lower() if isinstance(owner, str) else ""


def from_lxd(instances: Sequence[Instance], servers: Sequence[Instance], policy: Policy) -> Held:
    """The record as LXD holds it: ssp's instances with their owner label, and the accounts
    each shared server's config records (locked ones included: their homes are kept)."""
    names = {
        i.name: i.config.get(state.OWNER, "").lower()
        for i in instances
        if i.managed and i.config.get(state.OWNER)
    }
    by_instance = {s.instance: sid for sid, s in policy.shared_servers.items()}
    accounts: dict[tuple[str, str], str] = {}
    for inst in servers:
        server = by_instance.get(inst.name)
        for key, value in inst.config.items():
            owner = account_owner(value)
            if server is not None and key.startswith(state.ACCOUNT) and owner:
                accounts[(server, key.removeprefix(state.ACCOUNT).lower())] = owner
    return Held(names=names, accounts=accounts)
