"""The lab's rules over one loaded request at a time: its lease, keys, name, GPUs. Pure.

Input is data that already passed the schema (models + the Documents they came from, for
positions); output is Problems. The rules across requests (quotas, GPU double-booking,
capacity, a key shared by two owners) are in `provisioner.validation.crossrules`.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from provisioner.validation.sshkeys import KeyRefusal, parse_key
from provisioner.validation.usernames import namespace_owner, system_user
from provisioner.values.held import Held
from provisioner.values.loaded import Lifecycle, Loaded, lifecycle
from provisioner.values.models import AccountRequest, ContainerRequest, ImageRequest, Inventory
from provisioner.values.policymodels import Policy
from provisioner.values.problems import Problem, Severity

# LXD's snapshot names as ssp and LXD's schedules make them (retired-20270110, snap0, ...).
SNAPSHOT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# Instance names that would collide with LXD or the lab's own machines on the bridge's DNS.
RESERVED_NAMES = frozenset({"default", "localhost", "lxdbr0", "host", "gateway", "common-server"})
# Purposes that say nothing: an admin cannot judge a request by them (`ssp new` refuses them
# too, with the same words).
PLACEHOLDERS = frozenset(
    {"todo", "tbd", "tba", "test", "testing", "xxx", "purpose", "none", "n/a", "na", "-",
     "...", "work", "my work", "research", "stuff", "something", "container", "account", "待定",
     "测试", "无"}
)  # fmt: skip


def says_nothing(purpose: str, name: str) -> bool:
    """A placeholder, the request's own name again, or under three characters."""
    text = purpose.strip().casefold()
    return text in PLACEHOLDERS or text == name.casefold() or len(text) < 3


# --- per file ---------------------------------------------------------------------------------


def check_request(
    item: Loaded,
    policy: Policy,
    inventory: Inventory,
    today: date,
    focused: bool,
    held: Held | None = None,
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
    # GitHub logins are case-insensitive: requests/WangXM/ is wangxm's folder too.
    if req.owner.casefold() != item.folder.casefold():
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
    if says_nothing(req.purpose, req.name):
        out.append(_vague_purpose(item, focused))
    out += _lease(item, policy, today, focused)
    if isinstance(req, ImageRequest):
        return out + _image(item, req)
    out += _keys(item)
    if isinstance(req, ContainerRequest):
        out += _container(item, req, policy, inventory)
    else:
        out += _account(item, req, policy, held or Held())
    return out


def _vague_purpose(item: Loaded, focused: bool) -> Problem:
    """An error for the request a PR writes; one already on main is only reported, so a
    stricter check never retires what was accepted before."""
    why = (
        f"purpose: '{_shown(item.request.purpose)}' does not say what it is for; write a "
        "sentence an admin can judge, e.g. 'Diffusion experiments for my thesis'"
    )
    if focused:
        return item.problem(("purpose",), "purpose.placeholder", why)
    return item.problem(("purpose",), "purpose.vague", why, Severity.WARNING)


def _image(item: Loaded, req: ImageRequest) -> list[Problem]:
    if req.snapshot is None or SNAPSHOT.fullmatch(req.snapshot):
        return []
    return [
        item.problem(
            ("snapshot",),
            "image.snapshot",
            f"snapshot: '{_shown(req.snapshot)}' is not a snapshot's name (letters, digits, '.', "
            "'_' and '-', at most 63, e.g. snap0)",
        )
    ]


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:39] + "…"


def _lease(item: Loaded, policy: Policy, today: date, focused: bool) -> list[Problem]:
    expires = item.request.expires
    if lifecycle(item, today, focused=focused) is Lifecycle.EXPIRED:
        return [
            item.problem(
                ("expires",),
                "lease.expired",
                f"the lease ended on {expires}; this will be retired",
                Severity.WARNING,
            )
        ]
    if expires < today:  # a PR's own request with a past date
        return [
            item.problem(
                ("expires",),
                "lease.past",
                f"expires: {expires} is in the past (today is {today}, {policy.timezone})",
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
    req = item.request
    assert not isinstance(req, ImageRequest)  # noqa: S101  (an image has no keys)
    out = []
    seen: dict[str, int] = {}
    for i, text in enumerate(req.ssh_keys):
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
    # A member's image (`<owner>/<name>`) is checked against the image requests (imagerules).
    if "/" not in image and image not in policy.images:
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
    if req.restore is not None and not SNAPSHOT.fullmatch(req.restore):
        shown = _shown(req.restore)
        out.append(
            item.problem(
                ("restore",),
                "restore.snapshot",
                f"restore: '{shown}' is not a snapshot's name (letters, digits, '.', '_' and "
                "'-', at most 63, e.g. retired-20270110)",
            )
        )
    if req.host is not None and req.host not in inventory.hosts:
        out.append(
            item.problem(
                ("host",), "host.unknown", f"host '{req.host}' is not in config/hosts.yaml"
            )
        )
        return out
    return out + _gpu_rules(item, req, inventory)


def _gpu_rules(item: Loaded, req: ContainerRequest, inventory: Inventory) -> list[Problem]:
    """GPUs against the server(s) the request may go to: its `host:`, the only one, or, with
    several servers and no `host:`, any of them (placement picks one at apply)."""
    out = []
    hosts = [inventory.hosts[req.host or sorted(inventory.hosts)[0]]]
    where = "this host"
    if req.host is None and len(inventory.hosts) > 1:
        hosts, where = list(inventory.hosts.values()), "any server"
    if req.gpu_model is not None:
        models = sorted({g.model for h in hosts for g in h.gpus})
        if req.gpu_model not in models:
            out.append(
                item.problem(
                    ("gpu_model",),
                    "gpus.model",
                    f"no GPU of model '{req.gpu_model}' on {where} "
                    f"(models: {', '.join(models) or 'none'})",
                )
            )
            return out
    fitting = [[g for g in h.gpus if req.gpu_model in (None, g.model)] for h in hosts]
    if isinstance(req.gpus, list):
        known = {g.index for gpus in fitting for g in gpus}
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
                        f"GPU {index} does not exist on {where} (it has {_indices(known)})",
                    )
                )
    elif req.gpus > max(len(gpus) for gpus in fitting):
        most = max(len(gpus) for gpus in fitting)
        out.append(
            item.problem(
                ("gpus",),
                "gpus.too_many",
                f"gpus: {req.gpus} is more than {where} has ({most})",
            )
        )
    return out


def _indices(known: set[int]) -> str:
    return ", ".join(str(i) for i in sorted(known)) or "no GPUs"


def _account(item: Loaded, req: AccountRequest, policy: Policy, held: Held) -> list[Problem]:
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
    if held.accounts.get((req.server, req.name.lower())) != req.owner.lower():
        out += _account_name(item, req, policy)  # a login made for its owner stays theirs
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
