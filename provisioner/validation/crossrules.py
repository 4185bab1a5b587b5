"""The lab's rules across all requests: unique names, shared keys, quotas, GPUs, capacity.

Pure. Cross-file findings are pinned on the newest requests involved: the older ones keep
what they have (see `ranked`), so apply can refuse exactly those and carry out the rest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

from provisioner.validation.imagerules import check_images
from provisioner.validation.sshkeys import SshKey, parse_key
from provisioner.values import sizes
from provisioner.values.held import Held
from provisioner.values.loaded import Loaded, Resources, resources
from provisioner.values.models import AccountRequest, ContainerRequest, ImageRequest, Inventory
from provisioner.values.policymodels import Policy
from provisioner.values.problems import Problem
from provisioner.values.sizes import size_bytes

# --- across files -----------------------------------------------------------------------------
#
# When requests compete (a name, a GPU, a quota, a host's capacity), the OLDER ones keep what
# they have and the newest are refused until the rest fits: `ranked` puts the requests oldest
# first, and every rule below walks them in that order. Oldest means the request's current
# form reached `main` earliest (`ages`, which apply reads from git); a pull request's own files
# (`focus`) are the newest of all, since they are not merged yet; without ages, path order.
# A running total that goes over a limit blames every later request that adds to it, so
# removing or shrinking a request never makes another one fail.


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
    held: Held | None = None,
) -> list[Problem]:
    items = ranked(items, focus, ages)
    held = held or Held()
    return [
        *_unique_names(items, held),
        *_unique_accounts(items),
        *_held_accounts(items, held),
        *_shared_keys(items, focus),
        *_quotas(items, policy, inventory),
        *_gpus(items, policy, inventory),
        *_capacity(items, policy, inventory),
        *check_images(items, policy, held.images),
    ]


def _unique_names(items: Sequence[Loaded], held: Held) -> Iterable[Problem]:
    """One request per name; a name LXD holds (a container, retired or expired ones
    included) is its owner's before any request's age counts, so a squatter never keeps
    the owner's renewal out."""
    by_name: dict[str, list[Loaded]] = defaultdict(list)
    for item in items:
        by_name[item.request.name].append(item)
    for name, asking in by_name.items():
        holder = held.names.get(name)
        # An account's holder keeps its name too, however new its request's file is.
        same = sorted(asking, key=lambda i: not _holds_account(i, held))
        if holder:
            same = [i for i in same if i.request.owner.lower() == holder]
            for item in asking:
                if item not in same:
                    yield item.problem(
                        ("name",),
                        "name.held",
                        f"name '{name}' is held by {holder}'s container (kept in LXD, even "
                        "when retired or expired, until it is deleted): it stays theirs to "
                        "renew; pick another name",
                    )
        for item in _newer(same):
            yield item.problem(
                ("name",), "name.duplicate", f"name '{name}' is already used by {same[0].path}"
            )


def _holds_account(item: Loaded, held: Held) -> bool:
    req = item.request
    return isinstance(req, AccountRequest) and (
        held.accounts.get((req.server, req.name.lower())) == req.owner.lower()
    )


def _held_accounts(items: Sequence[Loaded], held: Held) -> Iterable[Problem]:
    """A login on a shared server stays with the member it was made for until an admin
    removes it, whatever a newer member's login is."""
    for item in items:
        req = item.request
        if not isinstance(req, AccountRequest):
            continue
        holder = held.account_holder(req.server, req.name, req.owner)
        if holder is not None:
            yield item.problem(
                ("name",),
                "account.held",
                f"account '{req.name}' on '{req.server}' was made for {holder} and stays "
                "theirs (their home and files are kept) until an admin removes it; pick "
                "another name",
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
        if isinstance(item.request, ImageRequest):
            continue  # an image holds no keys
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
    named = ", ".join(f"{i.path}: {sizes.amount(what, n, exact=True)}" for i, n in before[:3])
    more = f" and {len(before) - 3} more" if len(before) > 3 else ""
    held = sizes.amount(what, sum(n for _, n in before), exact=True)
    return f"; older requests hold {held} ({named}{more})"


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
                shown = sizes.amount(what, total, exact=True)
                cap = sizes.amount(what, limit, exact=True)
                yield item.problem(
                    (field,),
                    f"quota.{what}",
                    f"{what}: {owner} would use {shown} in total, over the '{quota_name}' "
                    f"quota of {cap}{_older(running, item, what)}"
                    if len(running) > 1
                    else f"{what}: {shown} exceeds {owner}'s quota of {cap}",
                )


def _per_host(
    items: Sequence[Loaded], policy: Policy, inventory: Inventory
) -> dict[str, list[tuple[Loaded, Resources]]]:
    per_host: dict[str, list[tuple[Loaded, Resources]]] = defaultdict(list)
    for item, req in _containers(items):
        if req.host is None and len(inventory.hosts) > 1:
            continue  # placed at apply, on a server with room, or refused there with why
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
                    f"{sizes.amount(what, total, exact=True)}, the host has "
                    f"{sizes.amount(what, limit, exact=True)}"
                    f"{_older(running, item, what)}",
                )
