"""`ssp gpus --write` in an LXD cluster: every member's GPUs for config/hosts.yaml.

The member it runs on is read through NVML, which knows everything the file records. Every
other member is read through its own LXD (the resources API, `?target=<member>`), which lists
the cards on that member's PCI bus with the driver's model and UUID, but not their memory
size: that comes from the entry the file already has for the same card. A member whose cards
cannot be told that way (LXD cannot ask its driver, a new card, the member is down) is not
written, and the reason says to run the command on that member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from provisioner.validation.hostsfile import recorded_memory, update_hosts_text
from provisioner.values.errors import LxdError, UsageError
from provisioner.values.gpuinventory import Card, Gpu, cards_as_gpus

ONLINE = "Online"


class MemberLxd(Protocol):
    def members(self) -> dict[str, str]: ...

    def member_name(self) -> str: ...

    def gpu_cards(self, member: str = "") -> tuple[Card, ...]: ...


@dataclass(frozen=True)
class Written:
    """The hosts file after --write, and what happened to each member."""

    text: str
    changes: tuple[str, ...]  # "node2: added 0000:3b:00.0: ..." lines
    skipped: tuple[str, ...]  # "node2: not written: why" lines
    dropped_comments: bool


def _member_gpus(lxd: MemberLxd, member: str, status: str, text: str) -> list[Gpu] | str:
    if status != ONLINE:
        return f"LXD calls it {status}"
    try:
        cards = lxd.gpu_cards(member)
    except LxdError as e:
        return str(e)
    return cards_as_gpus(cards, recorded_memory(text, member))


def write_members(lxd: MemberLxd, local: Sequence[Gpu], text: str) -> Written | None:
    """Every member's entry rewritten (None: LXD here is not clustered)."""
    members = lxd.members()
    if not members:
        return None
    here = lxd.member_name()
    changes: list[str] = []
    skipped: list[str] = []
    dropped = False
    for member, status in sorted(members.items()):
        gpus = list(local) if member == here else _member_gpus(lxd, member, status, text)
        if isinstance(gpus, str):
            skipped.append(
                f"{member}: not written ({gpus}); run `ssp gpus --write --host {member}` there"
            )
            continue
        try:
            text, _host, lines, lost = update_hosts_text(text, member, gpus)
        except UsageError as e:  # a member the file has no entry for
            skipped.append(f"{member}: not written ({e})")
            continue
        changes += [f"{member}: {line}" for line in lines]
        dropped = dropped or lost
    return Written(text, tuple(changes), tuple(skipped), dropped)
