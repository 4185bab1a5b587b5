"""The lab's rules over loaded requests: per file, then across all of them. Pure.

Input is data that already passed the schema (models + the Documents they came from, for
positions); output is Problems. Cross-file findings (quota, GPU double-booking, capacity, a
key shared by two owners) are pinned on the request that tips the balance: one the PR
touches when there is one (`focus`), otherwise the later ones in path order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from provisioner.models import (
    AccountRequest,
    ContainerRequest,
    Host,
    Inventory,
    Policy,
    format_size,
    size_bytes,
)
from provisioner.problems import Problem, Severity
from provisioner.sources import Document, Where
from provisioner.sshkeys import KeyRefusal, SshKey, parse_key

# Linux accounts a Debian/Ubuntu base already has, or that would confuse admins.
SYSTEM_USERS = frozenset(
    [
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "gnats",
        "nobody",
        "nogroup",
        "_apt",
        "messagebus",
        "sshd",
        "systemd-network",
        "systemd-resolve",
        "systemd-timesync",
        "systemd-journal",
        "systemd-coredump",
        "syslog",
        "uuidd",
        "tcpdump",
        "landscape",
        "pollinate",
        "polkitd",
        "ubuntu",
        "debian",
        "admin",
        "administrator",
        "lxd",
        "sudo",
        "adm",
        "staff",
        "users",
        "operator",
        "guest",
        "xrdp",
        "postfix",
        "ntp",
    ]
)
# Instance names that would collide with LXD or the lab's own machines on the bridge's DNS.
RESERVED_NAMES = frozenset({"default", "localhost", "lxdbr0", "host", "gateway", "common-server"})


@dataclass(frozen=True)
class Loaded:
    """A request that passed the schema, with the document it came from."""

    path: str
    doc: Document
    request: ContainerRequest | AccountRequest

    @property
    def folder(self) -> str:
        return self.path.split("/")[1]

    @property
    def stem(self) -> str:
        return self.path.rsplit("/", 1)[-1].removesuffix(".yaml")

    def problem(
        self, where: Where, rule: str, message: str, severity: Severity = Severity.ERROR
    ) -> Problem:
        return Problem(self.path, self.doc.position(where), rule, message, severity, where)


@dataclass(frozen=True)
class Resources:
    """What one container request takes from its host and its owner's quota."""

    host: str
    cpu: int
    memory: int
    disk: int
    pinned: tuple[int, ...]
    counted: int

    @property
    def gpus(self) -> int:
        return len(self.pinned) + self.counted


def resources(req: ContainerRequest, policy: Policy, inventory: Inventory) -> Resources:
    host = req.host or sorted(inventory.hosts)[0]
    pinned = tuple(req.gpus) if isinstance(req.gpus, list) else ()
    counted = req.gpus if isinstance(req.gpus, int) else 0
    return Resources(
        host=host,
        cpu=req.cpu or policy.defaults.cpu,
        memory=size_bytes(req.memory or policy.defaults.memory),
        disk=size_bytes(req.disk or policy.defaults.disk),
        pinned=pinned,
        counted=counted,
    )


# --- per file ---------------------------------------------------------------------------------


def check_request(
    item: Loaded, policy: Policy, inventory: Inventory, today: date, focused: bool
) -> list[Problem]:
    req = item.request
    out: list[Problem] = []
    if req.name != item.stem:
        out.append(
            item.problem(
                ("name",),
                "name.stem",
                f"name '{req.name}' must equal the file name '{item.stem}.yaml'",
            )
        )
    if req.owner != item.folder:
        out.append(
            item.problem(
                ("owner",),
                "owner.folder",
                f"owner '{req.owner}' must equal the folder: "
                f"this file is in requests/{item.folder}/",
            )
        )
    elif req.owner not in policy.users:
        out.append(
            item.problem(
                ("owner",),
                "owner.unknown",
                f"'{req.owner}' is not a registered member; an admin adds you to "
                "config/policy.yaml (users) first",
            )
        )
    if req.name in RESERVED_NAMES or req.name in {
        s.instance.lower() for s in policy.shared_servers.values()
    }:
        out.append(item.problem(("name",), "name.reserved", f"'{req.name}' is reserved"))
    out += _lease(item, policy, today, focused)
    out += _keys(item)
    if isinstance(req, ContainerRequest):
        out += _container(item, req, policy, inventory)
    else:
        out += _account(item, req, policy)
    return out


def _lease(item: Loaded, policy: Policy, today: date, focused: bool) -> list[Problem]:
    expires = item.request.expires
    if expires <= today:
        if focused:
            return [
                item.problem(
                    ("expires",),
                    "lease.past",
                    f"expires: {expires} is not after today ({today}, {policy.timezone})",
                )
            ]
        return [
            item.problem(
                ("expires",),
                "lease.expired",
                f"the lease ended on {expires}; this will be retired",
                Severity.WARNING,
            )
        ]
    last = today + timedelta(days=policy.max_lease_days)
    if expires > last:
        return [
            item.problem(
                ("expires",),
                "lease.too_long",
                f"expires: {expires} is more than {policy.max_lease_days} days "
                f"away; the latest allowed today is {last}",
            )
        ]
    return []


def _keys(item: Loaded) -> list[Problem]:
    out = []
    seen: dict[str, int] = {}
    for i, text in enumerate(item.request.ssh_keys):
        parsed = parse_key(text)
        if isinstance(parsed, KeyRefusal):
            out.append(
                item.problem(("ssh_keys", i), parsed.rule, f"ssh_keys[{i}]: {parsed.message}")
            )
        elif parsed.fingerprint in seen:
            out.append(
                item.problem(
                    ("ssh_keys", i),
                    "ssh_key.duplicate",
                    f"ssh_keys[{i}]: the same key as ssh_keys[{seen[parsed.fingerprint]}]",
                )
            )
        else:
            seen[parsed.fingerprint] = i
    return out


def _container(
    item: Loaded, req: ContainerRequest, policy: Policy, inventory: Inventory
) -> list[Problem]:
    out = []
    image = req.image or policy.defaults.image
    if image not in policy.images:
        out.append(
            item.problem(
                ("image",),
                "image.unknown",
                f"image '{image}' is not in the lab's catalogue "
                f"({', '.join(sorted(policy.images))})",
            )
        )
    for i, share in enumerate(req.shares):
        if share not in policy.shares:
            out.append(
                item.problem(
                    ("shares", i),
                    "share.unknown",
                    f"share '{share}' is not in the lab's catalogue "
                    f"({', '.join(sorted(policy.shares)) or 'none'})",
                )
            )
        elif share in req.shares[:i]:
            out.append(
                item.problem(("shares", i), "share.duplicate", f"share '{share}' is listed twice")
            )
    if req.host is not None and req.host not in inventory.hosts:
        out.append(
            item.problem(
                ("host",), "host.unknown", f"host '{req.host}' is not in config/hosts.yaml"
            )
        )
        return out
    host = inventory.hosts[req.host or sorted(inventory.hosts)[0]]
    if isinstance(req.gpus, list):
        known = {g.index for g in host.gpus}
        for i, index in enumerate(req.gpus):
            if index in req.gpus[:i]:
                out.append(
                    item.problem(("gpus", i), "gpus.duplicate", f"GPU {index} is listed twice")
                )
            elif index not in known:
                out.append(
                    item.problem(
                        ("gpus", i),
                        "gpus.unknown",
                        f"GPU {index} does not exist on this host (it has {_indices(host)})",
                    )
                )
    elif req.gpus > len(host.gpus):
        out.append(
            item.problem(
                ("gpus",),
                "gpus.too_many",
                f"gpus: {req.gpus} is more than the host has ({len(host.gpus)})",
            )
        )
    return out


def _indices(host: Host) -> str:
    return ", ".join(str(g.index) for g in host.gpus) or "no GPUs"


def _account(item: Loaded, req: AccountRequest, policy: Policy) -> list[Problem]:
    out = []
    if req.server not in policy.shared_servers:
        out.append(
            item.problem(
                ("server",),
                "server.unknown",
                f"server '{req.server}' is not a shared server "
                f"({', '.join(sorted(policy.shared_servers)) or 'none'})",
            )
        )
    if req.name in SYSTEM_USERS or req.name.startswith("systemd-"):
        out.append(
            item.problem(
                ("name",),
                "account.system_user",
                f"'{req.name}' is a system account name; pick another",
            )
        )
    return out


# --- across files -----------------------------------------------------------------------------


def _blame(items: Sequence[Loaded], focus: frozenset[str] | None) -> list[Loaded]:
    """Which of several requests sharing a fault to report: the PR's own, else the later ones."""
    if focus is not None:
        mine = [i for i in items if i.path in focus]
        if mine:
            return mine
    return list(items[1:]) or list(items[-1:])


def check_all(
    items: Sequence[Loaded], policy: Policy, inventory: Inventory, focus: frozenset[str] | None
) -> list[Problem]:
    items = sorted(items, key=lambda i: i.path)
    return [
        *_unique_names(items, focus),
        *_unique_accounts(items, focus),
        *_shared_keys(items, focus),
        *_quotas(items, policy, inventory, focus),
        *_gpus(items, policy, inventory, focus),
        *_capacity(items, policy, inventory, focus),
    ]


def _unique_names(items: Sequence[Loaded], focus: frozenset[str] | None) -> Iterable[Problem]:
    by_name: dict[str, list[Loaded]] = defaultdict(list)
    for item in items:
        by_name[item.request.name].append(item)
    for name, same in by_name.items():
        if len(same) > 1:
            for item in _blame(same, focus):
                other = next(o.path for o in same if o is not item)
                yield item.problem(
                    ("name",), "name.duplicate", f"name '{name}' is already used by {other}"
                )


def _unique_accounts(items: Sequence[Loaded], focus: frozenset[str] | None) -> Iterable[Problem]:
    by_key: dict[tuple[str, str], list[Loaded]] = defaultdict(list)
    for item in items:
        if isinstance(item.request, AccountRequest):
            by_key[(item.request.owner, item.request.server)].append(item)
    for (owner, server), same in by_key.items():
        if len(same) > 1:
            for item in _blame(same, focus):
                other = next(o.path for o in same if o is not item)
                yield item.problem(
                    ("server",),
                    "account.duplicate",
                    f"{owner} already has an account on '{server}' ({other})",
                )


def _shared_keys(items: Sequence[Loaded], focus: frozenset[str] | None) -> Iterable[Problem]:
    # Every place a key is written, in path order: a member may hold one key in several
    # requests, and the PR's own file must be found even when it is not that member's first.
    places: dict[str, list[tuple[Loaded, int]]] = defaultdict(list)
    for item in items:
        for i, text in enumerate(item.request.ssh_keys):
            key = parse_key(text)
            if isinstance(key, SshKey):
                places[key.fingerprint].append((item, i))
    for fingerprint, found in places.items():
        owners = {item.request.owner for item, _ in found}
        if len(owners) < 2:
            continue
        blamed = [(item, i) for item, i in found if focus is not None and item.path in focus]
        if not blamed:  # the first owner keeps the key; everyone after is told
            first = found[0][0].request.owner
            blamed = [(item, i) for item, i in found if item.request.owner != first]
        for item, index in blamed:
            others = sorted(owners - {item.request.owner})
            yield item.problem(
                ("ssh_keys", index),
                "ssh_key.shared",
                f"ssh_keys[{index}] ({fingerprint}) is also "
                f"{', '.join(others)}'s key; each member uses their own key",
            )


def _containers(items: Sequence[Loaded]) -> list[tuple[Loaded, ContainerRequest]]:
    return [(i, i.request) for i in items if isinstance(i.request, ContainerRequest)]


def _over(
    running: list[tuple[Loaded, int]], limit: int, focus: frozenset[str] | None
) -> list[Loaded]:
    """The requests that push a running total over `limit`."""
    if sum(n for _, n in running) <= limit:
        return []
    if focus is not None:
        mine = [item for item, n in running if item.path in focus and n > 0]
        if mine:
            return mine
    total, over = 0, []
    for item, n in running:
        total += n
        if total > limit and n > 0:
            over.append(item)
    return over


def _quotas(
    items: Sequence[Loaded], policy: Policy, inventory: Inventory, focus: frozenset[str] | None
) -> Iterable[Problem]:
    by_owner: dict[str, list[tuple[Loaded, Resources]]] = defaultdict(list)
    for item, req in _containers(items):
        if req.owner in policy.users and (req.host is None or req.host in inventory.hosts):
            by_owner[req.owner].append((item, resources(req, policy, inventory)))
    for owner, mine in sorted(by_owner.items()):
        quota_name, quota = policy.quota_for(owner)
        checks: list[tuple[str, str, int, Callable[[Resources], int]]] = [
            ("containers", "kind", quota.containers, lambda r: 1),
            ("gpus", "gpus", quota.gpus, lambda r: r.gpus),
            ("cpu", "cpu", quota.cpu, lambda r: r.cpu),
            ("memory", "memory", size_bytes(quota.memory), lambda r: r.memory),
            ("disk", "disk", size_bytes(quota.disk), lambda r: r.disk),
        ]
        for what, field, limit, amount in checks:
            running = [(item, amount(res)) for item, res in mine]
            total = sum(n for _, n in running)
            for item in _over(running, limit, focus):
                shown = _amount(what, total)
                cap = _amount(what, limit)
                yield item.problem(
                    (field,),
                    f"quota.{what}",
                    f"{what}: {owner} would use {shown} in total, over the '{quota_name}' "
                    f"quota of {cap}"
                    if len(running) > 1
                    else f"{what}: {shown} exceeds {owner}'s quota of {cap}",
                )


def _amount(what: str, n: int) -> str:
    return format_size(n) if what in ("memory", "disk") else str(n)


def _gpus(
    items: Sequence[Loaded], policy: Policy, inventory: Inventory, focus: frozenset[str] | None
) -> Iterable[Problem]:
    per_host: dict[str, list[tuple[Loaded, Resources]]] = defaultdict(list)
    for item, req in _containers(items):
        if req.host is None or req.host in inventory.hosts:
            per_host[(req.host or sorted(inventory.hosts)[0])].append(
                (item, resources(req, policy, inventory))
            )
    for host_id, on_host in sorted(per_host.items()):
        host = inventory.hosts[host_id]
        if policy.gpu_sharing == "exclusive":
            holders: dict[int, list[Loaded]] = defaultdict(list)
            pins = {item.path: res.pinned for item, res in on_host}
            for item, res in on_host:
                for index in res.pinned:
                    holders[index].append(item)
            for index, same in sorted(holders.items()):
                if len(same) > 1:
                    for item in _blame(same, focus):
                        other = next(o.path for o in same if o is not item)
                        pos = pins[item.path].index(index)
                        yield item.problem(
                            ("gpus", pos),
                            "gpus.double_booked",
                            f"GPU {index} is already pinned by {other}",
                        )
            pinned = {i for _, res in on_host for i in res.pinned}
            free = len(host.gpus) - len(pinned)
            running = [(item, res.counted) for item, res in on_host]
            for item in _over(running, max(free, 0), focus):
                want = sum(n for _, n in running)
                yield item.problem(
                    ("gpus",),
                    "gpus.capacity",
                    f"gpus: {host_id} has {free} GPUs not pinned by anyone, "
                    f"but the requests ask for {want} more",
                )


def _capacity(
    items: Sequence[Loaded], policy: Policy, inventory: Inventory, focus: frozenset[str] | None
) -> Iterable[Problem]:
    per_host: dict[str, list[tuple[Loaded, Resources]]] = defaultdict(list)
    for item, req in _containers(items):
        if req.host is None or req.host in inventory.hosts:
            res = resources(req, policy, inventory)
            per_host[res.host].append((item, res))
    for host_id, on_host in sorted(per_host.items()):
        host = inventory.hosts[host_id]
        limits: list[tuple[str, int, Callable[[Resources], int]]] = [
            ("cpu", host.cpu, lambda r: r.cpu),
            ("memory", size_bytes(host.memory), lambda r: r.memory),
        ]
        if host.disk:
            limits.append(("disk", size_bytes(host.disk), lambda r: r.disk))
        for what, limit, amount in limits:
            running = [(item, amount(res)) for item, res in on_host]
            for item in _over(running, limit, focus):
                total = sum(n for _, n in running)
                yield item.problem(
                    (what,),
                    f"capacity.{what}",
                    f"{what}: requests on {host_id} would need "
                    f"{_amount(what, total)}, the host has {_amount(what, limit)}",
                )
