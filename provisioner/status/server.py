"""What the server looks like now: who holds which GPU until when, containers, accounts, quotas.

Pure: `build` takes what was observed (the project's instances, the shared servers, the pool,
NVML's live readings when there is a driver), what `main` asks for (the valid and expired
requests, the policy and inventory) and who waits in line for GPUs (the plan's `Wait`
actions), and returns a `ServerStatus` of plain values that
`ssp status` prints as text, JSON, Markdown or a self-contained HTML page.

Observed state wins: a container's GPUs are the `gpu` devices it has, not the ones its
request asks for, and its lease is the one it was made with (`user.ssp.expires`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from provisioner.values import spec as specs
from provisioner.values import state
from provisioner.values.loaded import Loaded, resources
from provisioner.values.models import AccountRequest, ContainerRequest, Inventory
from provisioner.values.plandata import Wait
from provisioner.values.policymodels import Policy
from provisioner.values.sizes import size_bytes
from provisioner.values.state import Instance


@dataclass(frozen=True)
class Live:
    """One GPU as NVML reads it now (absent without a driver)."""

    utilization: int | None  # percent
    memory_used: int  # bytes
    memory: int  # bytes


@dataclass(frozen=True)
class GpuSlot:
    index: int
    model: str
    pci: str
    memory: int
    container: str | None = None
    owner: str | None = None
    until: date | None = None
    live: Live | None = None
    server: str = ""  # in a cluster, the member the card is in ("" on a single server)

    @property
    def free(self) -> bool:
        return self.container is None

    @property
    def label(self) -> str:
        return f"{self.server}: {self.index}" if self.server else str(self.index)


@dataclass(frozen=True)
class ContainerRow:
    name: str
    owner: str
    state: str  # running | stopped | expired | retired | creating
    gpus: tuple[int, ...]
    ipv4: tuple[str, ...]
    ssh_port: int | None
    expires: date | None
    days_left: int | None
    retired: date | None = None
    sha: str = ""  # the commit of `main` that made or last changed it ("" unknown)
    # its GPUs were handed back while it stays (`state.RELEASED`): the day, and why
    released: date | None = None
    released_why: str = ""  # idle (the policy's idle release) | owner (`/ssp stop`)


@dataclass(frozen=True)
class WaitRow:
    """A merged container request waiting in line for GPUs that are taken."""

    name: str
    owner: str
    request_path: str
    place: int  # 1: the first in line (merge order)
    gpus: tuple[int, ...]  # the GPUs it waits for, the first to come free first
    frees: date | None  # the day the first of them comes free (None: no lease says)
    message: str  # what it waits for
    line: str = ""  # "1st in line; GPU 0 frees on 2027-01-20", as everything says it


@dataclass(frozen=True)
class AccountRow:
    server: str
    login: str
    owner: str
    state: str  # active | locked | expired
    expires: date | None
    days_left: int | None


@dataclass(frozen=True)
class QuotaRow:
    member: str
    containers: int
    containers_limit: int
    gpus: int
    gpus_limit: int


@dataclass(frozen=True)
class PoolUse:
    name: str
    used: int
    total: int

    @property
    def percent(self) -> int:
        return round(100 * self.used / self.total) if self.total else 0


@dataclass(frozen=True)
class ServerStatus:
    generated: datetime
    host: str
    gpus: tuple[GpuSlot, ...]
    containers: tuple[ContainerRow, ...]
    accounts: tuple[AccountRow, ...]
    quotas: tuple[QuotaRow, ...]
    pool: PoolUse | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Merged requests waiting for GPUs, first in line first (none in an older snapshot).
    waiting: tuple[WaitRow, ...] = field(default_factory=tuple)

    @property
    def free_gpus(self) -> tuple[int, ...]:
        return tuple(g.index for g in self.gpus if g.free)

    @property
    def free_labels(self) -> tuple[str, ...]:
        """The free GPUs as people name them: `2`, or `node2: 0` in a cluster."""
        return tuple(g.label for g in self.gpus if g.free)

    def upcoming(self, within_days: int = 30) -> tuple[ContainerRow | AccountRow, ...]:
        """Leases that end within `within_days`, soonest first (already ended ones too)."""
        every: list[ContainerRow | AccountRow] = [*self.containers, *self.accounts]
        rows = [
            r
            for r in every
            if r.days_left is not None and r.days_left <= within_days and r.state != "retired"
        ]
        return tuple(sorted(rows, key=lambda r: (r.days_left or 0, r.owner)))


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _container_state(inst: Instance, expires: date | None, today: date) -> str:
    if inst.config.get(state.RETIRED):
        # Stopped and kept: because its lease ended (a renewal restarts it), or given back.
        return "expired" if inst.config.get(state.STATE) == state.EXPIRED_STATE else "retired"
    if inst.config.get(state.STATE) == "creating":
        return "creating"
    if expires is not None and expires < today:
        return "expired"
    return "running" if inst.running else "stopped"


def _released(inst: Instance) -> tuple[date | None, str]:
    """The day and reason from `state.RELEASED` ("2027-01-20 idle"), when it is set."""
    if not inst.gpus_released:
        return None, ""
    day, _, why = (inst.config.get(state.RELEASED) or "").partition(" ")
    return _date(day), why if why in state.RELEASED_WHY else ""


def _sha(text: str) -> str:
    """A commit id as LXD holds it, or "" for anything else (it ends up in links)."""
    return text if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", text) else ""


def _days(expires: date | None, today: date) -> int | None:
    return None if expires is None else (expires - today).days


def build(
    *,
    policy: Policy,
    inventory: Inventory,
    requests: Sequence[Loaded],
    instances: Sequence[Instance],
    servers: Sequence[Instance],
    now: datetime,
    today: date,
    pool: PoolUse | None = None,
    live: Mapping[str, Live] | None = None,
    waiting: Sequence[Wait] = (),
) -> ServerStatus:
    """The status of the host, or of every server of a cluster, from what was observed.

    GPUs are told apart by (server, PCI address): two servers of one make have the same
    addresses. `live` (NVML's readings, keyed by PCI address) is the runner's own host's, so
    it is shown on a single server only; in a cluster it would be put on every server's card
    in that slot.
    """
    hosts = sorted(inventory.hosts)
    single = len(hosts) == 1
    by_pci = {(h, g.pci.lower()): g for h in hosts for g in inventory.hosts[h].gpus}
    holders: dict[tuple[str, str], Instance] = {}
    containers: list[ContainerRow] = []
    for inst in sorted(instances, key=lambda i: i.name):
        if not inst.managed:
            continue
        expires = _date(inst.config.get(state.EXPIRES))
        member = inst.location if inst.location in inventory.hosts else hosts[0]
        pcis = [(member, d["pci"].lower()) for d in inst.devices.values() if d.get("type") == "gpu"]
        row_state = _container_state(inst, expires, today)
        if not inst.config.get(state.RETIRED):  # a kept container holds no GPU
            for pci in pcis:
                holders.setdefault(pci, inst)
        containers.append(
            ContainerRow(
                name=inst.name,
                owner=inst.config.get(state.OWNER, ""),
                state=row_state,
                gpus=tuple(sorted(by_pci[p].index for p in pcis if p in by_pci)),
                ipv4=inst.ipv4,
                ssh_port=specs.listen_port(inst.devices.get(specs.SSH_DEVICE, {})),
                expires=expires,
                days_left=_days(expires, today),
                retired=_date(inst.config.get(state.RETIRED)),
                sha=_sha(inst.config.get(state.SHA, "")),
                released=_released(inst)[0],
                released_why=_released(inst)[1],
            )
        )
    slots = []
    for (server, slot), g in sorted(by_pci.items(), key=lambda e: (e[0][0], e[1].index)):
        holder = holders.get((server, slot))
        slots.append(
            GpuSlot(
                index=g.index,
                model=g.model,
                pci=g.pci.lower(),
                memory=size_bytes(g.memory),
                container=holder.name if holder else None,
                owner=holder.config.get(state.OWNER) if holder else None,
                until=_date(holder.config.get(state.EXPIRES)) if holder else None,
                live=(live or {}).get(slot) if single else None,
                server="" if single else server,
            )
        )
    return ServerStatus(
        generated=now,
        host=", ".join(hosts),
        gpus=tuple(slots),
        containers=tuple(containers),
        accounts=_accounts(policy, requests, servers, today),
        quotas=_quotas(policy, inventory, requests, containers),
        pool=pool,
        waiting=_waiting(requests, waiting),
    )


def _waiting(requests: Sequence[Loaded], waits: Sequence[Wait]) -> tuple[WaitRow, ...]:
    owners = {i.path: i.request.owner for i in requests}
    return tuple(
        WaitRow(
            name=w.name,
            owner=owners.get(w.request_path, ""),
            request_path=w.request_path,
            place=w.place,
            gpus=w.gpus,
            frees=w.frees,
            message=w.message,
            line=w.line,
        )
        for w in sorted(waits, key=lambda w: w.place)
    )


def _accounts(
    policy: Policy, requests: Sequence[Loaded], servers: Sequence[Instance], today: date
) -> tuple[AccountRow, ...]:
    asked = {i.path: i.request.expires for i in requests if isinstance(i.request, AccountRequest)}
    by_instance = {s.instance: sid for sid, s in policy.shared_servers.items()}
    rows = []
    for inst in sorted(servers, key=lambda i: i.name):
        for key, value in sorted(inst.config.items()):
            if not key.startswith(state.ACCOUNT):
                continue
            try:
                label = json.loads(value)
            except ValueError:
                label = {}
            label = label if isinstance(label, dict) else {}
            expires = asked.get(str(label.get("request", "")))
            locked = label.get("state") == "locked"
            expired = expires is not None and expires < today
            rows.append(
                AccountRow(
                    server=by_instance.get(inst.name, inst.name),
                    login=key.removeprefix(state.ACCOUNT),
                    owner=str(label.get("owner", "")),
                    state="locked" if locked else "expired" if expired else "active",
                    expires=expires,
                    days_left=None if locked else _days(expires, today),
                )
            )
    return tuple(rows)


def _quotas(
    policy: Policy,
    inventory: Inventory,
    requests: Sequence[Loaded],
    containers: Sequence[ContainerRow],
) -> tuple[QuotaRow, ...]:
    """Per member: live containers and their GPUs against the member's quota."""
    asked_gpus = {
        i.request.name: resources(i.request, policy, inventory).gpus
        for i in requests
        if isinstance(i.request, ContainerRequest)
    }
    rows = []
    for member, user in sorted(policy.users.items()):
        quota = policy.quotas[user.quota or "default"]
        mine = [c for c in containers if c.owner == member and c.retired is None]
        gpus = sum(len(c.gpus) or asked_gpus.get(c.name, 0) for c in mine)
        rows.append(QuotaRow(member, len(mine), quota.containers, gpus, quota.gpus))
    return tuple(rows)
