"""The lab's rules over loaded requests: per file, then across all of them. Pure.

Input is data that already passed the schema (models + the Documents they came from, for
positions); output is Problems. Cross-file findings (quota, GPU double-booking, capacity, a
key shared by two owners) are pinned on the newest requests involved: the older ones keep
what they have (see `ranked`), so apply can refuse exactly those and carry out the rest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
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
from provisioner.usernames import namespace_owner, system_user

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
    out += _account_name(item, req, policy)
    return out


def _account_name(item: Loaded, req: AccountRequest, policy: Policy) -> list[Problem]:
    """A login on a shared server is the member's own: `<login>` or `<login>-<suffix>`."""
    mine = req.owner.lower()
    holder = namespace_owner(req.name, [*policy.users, *policy.admins, req.owner])
    if holder != mine:
        whose = ""
        if holder is not None:
            whose = (
                f"; '{holder}' is another member's login"
                if req.name == holder
                else f"; it starts with {holder}'s login"
            )
        return [
            item.problem(
                ("name",),
                "account.name_owner",
                f"an account on a shared server is named after its owner: '{mine}' or "
                f"'{mine}-<something>' (e.g. '{mine}-common'), not '{req.name}'{whose}",
            )
        ]
    if system_user(req.name):
        return [
            item.problem(
                ("name",),
                "account.system_user",
                f"'{req.name}' is a system or service account name on Linux; "
                f"pick another, e.g. '{mine}-common'",
            )
        ]
    return []


# --- across files -----------------------------------------------------------------------------
#
# When requests compete (a name, a GPU, a quota, a host's capacity), the OLDER ones keep what
# they have and the newest are refused until the rest fits: `ranked` puts the requests oldest
# first, and every rule below walks them in that order. Oldest means the request's current
# form reached `main` earliest (`ages`, which apply reads from git); a pull request's own files
# (`focus`) are the newest of all, since they are not merged yet; without ages, path order.
# A running total that goes over a limit blames every later request that adds to it, so
# removing or shrinking a request never makes another one fail.


# Rules of requests that compete for one thing: apply refuses the newest, not everything.
COMPETING = (
    "quota.",
    "capacity.",
    "gpus.capacity",
    "gpus.double_booked",
    "name.duplicate",
    "account.duplicate",
    "ssh_key.shared",
)


def competing(rule: str) -> bool:
    return rule.startswith(COMPETING)


def ranked(
    items: Iterable[Loaded], focus: frozenset[str] | None, ages: Mapping[str, int] | None
) -> list[Loaded]:
    """Oldest first: by age (a larger number is newer; unknown is newest), then path."""

    def key(item: Loaded) -> tuple[bool, bool, int, str]:
        in_focus = focus is not None and item.path in focus
        age = None if ages is None else ages.get(item.path)
        return (in_focus, ages is not None and age is None, age or 0, item.path)

    return sorted(items, key=key)


def _newer(items: Sequence[Loaded]) -> list[Loaded]:
    """Of several requests sharing one thing (in age order), those that do not get it."""
    return list(items[1:])


def check_all(
    items: Sequence[Loaded],
    policy: Policy,
    inventory: Inventory,
    focus: frozenset[str] | None,
    ages: Mapping[str, int] | None = None,
) -> list[Problem]:
    items = ranked(items, focus, ages)
    return [
        *_unique_names(items),
        *_unique_accounts(items),
        *_shared_keys(items, focus),
        *_quotas(items, policy, inventory),
        *_gpus(items, policy, inventory),
        *_capacity(items, policy, inventory),
    ]


def _unique_names(items: Sequence[Loaded]) -> Iterable[Problem]:
    by_name: dict[str, list[Loaded]] = defaultdict(list)
    for item in items:
        by_name[item.request.name].append(item)
    for name, same in by_name.items():
        for item in _newer(same):
            yield item.problem(
                ("name",), "name.duplicate", f"name '{name}' is already used by {same[0].path}"
            )


def _unique_accounts(items: Sequence[Loaded]) -> Iterable[Problem]:
    by_key: dict[tuple[str, str], list[Loaded]] = defaultdict(list)
    for item in items:
        if isinstance(item.request, AccountRequest):
            by_key[(item.request.owner, item.request.server)].append(item)
    for (owner, server), same in by_key.items():
        for item in _newer(same):
            yield item.problem(
                ("server",),
                "account.duplicate",
                f"{owner} already has an account on '{server}' ({same[0].path})",
            )


def _shared_keys(items: Sequence[Loaded], focus: frozenset[str] | None) -> Iterable[Problem]:
    # Every place a key is written, oldest first: a member may hold one key in several
    # requests; the owner of the oldest keeps it and every other owner is told.
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
        # A PR's own files are told whenever they use a key that is also someone else's,
        # even the first owner's: a key is a person, and age does not say whose it is.
        blamed = [(item, i) for item, i in found if focus is not None and item.path in focus]
        if not blamed:
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


def _over(running: list[tuple[Loaded, int]], limit: int) -> list[Loaded]:
    """The requests (oldest first) from the one that takes the total over `limit` on."""
    total, over = 0, []
    for item, n in running:
        total += n
        if total > limit and n > 0:
            over.append(item)
    return over


def _older(running: list[tuple[Loaded, int]], item: Loaded, what: str) -> str:
    """What the requests before `item` hold: up to three named, then a count."""
    before = [(i, n) for i, n in running[: [i for i, _ in running].index(item)] if n > 0]
    if not before:
        return ""
    named = ", ".join(f"{i.path}: {_amount(what, n)}" for i, n in before[:3])
    more = f" and {len(before) - 3} more" if len(before) > 3 else ""
    return f"; older requests hold {_amount(what, sum(n for _, n in before))} ({named}{more})"


def _quotas(items: Sequence[Loaded], policy: Policy, inventory: Inventory) -> Iterable[Problem]:
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
            for item in _over(running, limit):
                shown = _amount(what, total)
                cap = _amount(what, limit)
                yield item.problem(
                    (field,),
                    f"quota.{what}",
                    f"{what}: {owner} would use {shown} in total, over the '{quota_name}' "
                    f"quota of {cap}{_older(running, item, what)}"
                    if len(running) > 1
                    else f"{what}: {shown} exceeds {owner}'s quota of {cap}",
                )


def _amount(what: str, n: int) -> str:
    return format_size(n) if what in ("memory", "disk") else str(n)


def _per_host(
    items: Sequence[Loaded], policy: Policy, inventory: Inventory
) -> dict[str, list[tuple[Loaded, Resources]]]:
    per_host: dict[str, list[tuple[Loaded, Resources]]] = defaultdict(list)
    for item, req in _containers(items):
        if req.host is None or req.host in inventory.hosts:
            res = resources(req, policy, inventory)
            per_host[res.host].append((item, res))
    return per_host


def _gpus(items: Sequence[Loaded], policy: Policy, inventory: Inventory) -> Iterable[Problem]:
    if policy.gpu_sharing != "exclusive":
        return
    for host_id, on_host in sorted(_per_host(items, policy, inventory).items()):
        holders: dict[int, list[Loaded]] = defaultdict(list)
        for item, res in on_host:
            for index in res.pinned:
                holders[index].append(item)
        for index, same in sorted(holders.items()):
            for item in _newer(same):
                pins = next(r.pinned for i, r in on_host if i is item)
                yield item.problem(
                    ("gpus", pins.index(index)),
                    "gpus.double_booked",
                    f"GPU {index} is already pinned by {same[0].path}",
                )
        yield from _gpu_capacity(host_id, len(inventory.hosts[host_id].gpus), on_host)


def _gpu_capacity(
    host_id: str, total: int, on_host: list[tuple[Loaded, Resources]]
) -> Iterable[Problem]:
    """Pins and counts share the host's GPUs, oldest first; from the first that does not
    fit on, every later request that wants a GPU is refused."""
    pinned: set[int] = set()
    counted = 0
    held: list[str] = []
    over = False
    for item, res in on_host:
        if not res.gpus:
            continue
        pins = pinned | set(res.pinned)
        over = over or len(pins) + counted + res.counted > total
        if over:
            here = (
                f"GPU{'s' if len(res.pinned) > 1 else ''} "
                f"{', '.join(map(str, res.pinned))} pinned here"
                if res.pinned
                else f"the {res.counted} asked for here"
            )
            older = f" ({', '.join(held[:3])}{' …' if len(held) > 3 else ''})" if held else ""
            yield item.problem(
                ("gpus",),
                "gpus.capacity",
                f"gpus: {host_id} has {total} GPUs and older requests take "
                f"{len(pinned) + counted}{older}; {here} do not fit beside them",
            )
        pinned, counted = pins, counted + res.counted
        held.append(
            f"{item.path}: GPU {', '.join(map(str, res.pinned))}"
            if res.pinned
            else f"{item.path}: {res.counted}"
        )


def _capacity(items: Sequence[Loaded], policy: Policy, inventory: Inventory) -> Iterable[Problem]:
    for host_id, on_host in sorted(_per_host(items, policy, inventory).items()):
        host = inventory.hosts[host_id]
        limits: list[tuple[str, int, Callable[[Resources], int]]] = [
            ("cpu", host.cpu, lambda r: r.cpu),
            ("memory", size_bytes(host.memory), lambda r: r.memory),
        ]
        if host.disk:
            limits.append(("disk", size_bytes(host.disk), lambda r: r.disk))
        for what, limit, amount in limits:
            running = [(item, amount(res)) for item, res in on_host]
            for item in _over(running, limit):
                total = sum(n for _, n in running)
                yield item.problem(
                    (what,),
                    f"capacity.{what}",
                    f"{what}: requests on {host_id} would need "
                    f"{_amount(what, total)}, the host has {_amount(what, limit)}"
                    f"{_older(running, item, what)}",
                )
