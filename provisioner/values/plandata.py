"""The plan as data: what planning reads (`Inputs`) and what it decides (actions, `Plan`).

Values only. `provisioner.planning.plan` makes them, `provisioner.applying.apply` walks them,
the reports print them; none of those needs another's code to read one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import ClassVar, TypedDict

from provisioner.values import idranges
from provisioner.values import spec as specs
from provisioner.values.idranges import IdMapUse, IdRange
from provisioner.values.loaded import Loaded
from provisioner.values.models import Inventory
from provisioner.values.policymodels import Policy
from provisioner.values.state import Image, Instance
from provisioner.values.waitlist import line_text


class Kind(StrEnum):
    """What an action does to its instance (or, for accounts, to its shared server)."""

    CREATE = "create"
    UPDATE = "update"
    START = "start"
    READY = "ready"
    RETIRE = "retire"
    RESTORE = "restore"
    PUBLISH = "publish"  # a member's image (`kind: image`)
    UNPUBLISH = "unpublish"
    REFUSE = "refuse"
    WAIT = "wait"  # a merged container request whose GPUs are taken: it waits in line
    ACCOUNT = "account"


class AccountVerb(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    LOCK = "lock"
    KEEP = "keep"  # nothing to change: reported only


@dataclass(frozen=True, kw_only=True)
class Create:
    spec: specs.Spec
    replace_half_made: bool = False
    warm: str = ""  # the warm clone it claims instead of copying the base ("": none)
    kind: ClassVar[Kind] = Kind.CREATE

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def detail(self) -> str:
        again = " (replacing a half-made one)" if self.replace_half_made else ""
        where = f" on {self.spec.member}" if self.spec.member else ""
        warm = f" (claims warm clone {self.warm})" if self.warm else ""
        return f"from {self.spec.image}{where}{again}{warm}"


@dataclass(frozen=True, kw_only=True)
class Update:
    spec: specs.Spec
    config: Mapping[str, str | None]  # keys to set (None: remove)
    devices: bool  # the device set differs: replace it
    push_keys: bool  # authorized_keys inside must be rewritten
    restart: bool  # a change that only takes effect on start (idmap)
    reasons: tuple[str, ...]
    kind: ClassVar[Kind] = Kind.UPDATE

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def detail(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True, kw_only=True)
class Start:
    spec: specs.Spec
    kind: ClassVar[Kind] = Kind.START
    detail: str = "found stopped"

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, kw_only=True)
class Ready:
    """Nothing to change: reported so the result can still show IP, ports and GPUs."""

    spec: specs.Spec
    kind: ClassVar[Kind] = Kind.READY
    detail: str = ""

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, kw_only=True)
class Restore:
    """Roll a container back to one of its snapshots, then make it match its spec again."""

    spec: specs.Spec
    snapshot: str
    kind: ClassVar[Kind] = Kind.RESTORE

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def detail(self) -> str:
        return f"roll back to snapshot {self.snapshot}"


@dataclass(frozen=True, kw_only=True)
class Publish:
    """Publish a member's image from a snapshot of one of their containers (taken first
    when the request names none), replacing ssp's older image under the alias if any."""

    name: str  # the image request's name
    owner: str
    request_path: str
    alias: str
    instance: str
    snapshot: str
    take_snapshot: bool
    description: str
    users: bool  # the image has useradd and sshd, as its container's image had
    replace: str = ""  # the fingerprint of ssp's image under the alias now, deleted first
    kind: ClassVar[Kind] = Kind.PUBLISH

    @property
    def detail(self) -> str:
        return f"image {self.alias} from {self.instance}/{self.snapshot}"


@dataclass(frozen=True, kw_only=True)
class Unpublish:
    """Delete a member's image whose request was removed or whose lease ended."""

    name: str
    owner: str
    request_path: str
    alias: str
    fingerprint: str
    reason: str
    kind: ClassVar[Kind] = Kind.UNPUBLISH

    @property
    def detail(self) -> str:
        return f"delete image {self.alias}: {self.reason}"


@dataclass(frozen=True, kw_only=True)
class ImageReady:
    """A member's image that is as asked: reported only."""

    name: str
    owner: str
    request_path: str
    alias: str
    kind: ClassVar[Kind] = Kind.READY
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class Retire:
    name: str
    owner: str
    request_path: str
    reason: str
    today: date
    expired: bool = False  # its lease ended (state `expired`), rather than given back
    kind: ClassVar[Kind] = Kind.RETIRE

    @property
    def detail(self) -> str:
        return self.reason


@dataclass(frozen=True, kw_only=True)
class Refuse:
    name: str
    request_path: str
    message: str
    member_down: bool = False  # not refused as such: its cluster member does not answer
    # The containers holding the GPUs it pins (given to them for a count): they keep them.
    gpu_holders: tuple[str, ...] = ()
    kind: ClassVar[Kind] = Kind.REFUSE

    @property
    def detail(self) -> str:
        return self.message


@dataclass(frozen=True, kw_only=True)
class Wait:
    """A merged container request that cannot have its GPUs now (too few free, or its
    pinned ones held): nothing is done for it, and the first pass that finds them free makes
    it. `place` is its place in line by merge order (1: the first), among all who wait."""

    name: str
    request_path: str
    place: int
    message: str  # what it waits for, as its owner reads it
    gpus: tuple[int, ...] = ()  # the GPUs it waits for, the first to come free first
    frees: date | None = None  # when the first of them comes free, from its holder's lease
    gpu_holders: tuple[str, ...] = ()  # containers given its pinned GPUs for a count
    # Its container exists (it asks for more GPUs, or for its own again after they were
    # handed back): it keeps running as it is meanwhile.
    exists: bool = False
    kind: ClassVar[Kind] = Kind.WAIT

    @property
    def line(self) -> str:
        """ "1st in line; GPU 0 frees on 2027-01-20"."""
        return line_text(self.place, self.gpus, self.frees)

    @property
    def detail(self) -> str:
        return f"waiting, {self.line}: {self.message}"


@dataclass(frozen=True, kw_only=True)
class AccountAction:
    account: specs.AccountSpec
    verb: AccountVerb
    ipv4: tuple[str, ...] = ()  # the server's addresses as observed (for "keep")
    kind: ClassVar[Kind] = Kind.ACCOUNT

    @property
    def name(self) -> str:
        return f"{self.account.instance}:{self.account.name}"

    @property
    def detail(self) -> str:
        if self.verb == AccountVerb.KEEP:
            return f"unchanged account {self.account.name}"
        return f"{self.verb} account {self.account.name}"


@dataclass(frozen=True, kw_only=True)
class Drift:
    name: str
    message: str


Action = (
    Create
    | Update
    | Start
    | Ready
    | Restore
    | Retire
    | Refuse
    | Wait
    | AccountAction
    | Publish
    | Unpublish
    | ImageReady
)


def unchanged(action: Action) -> bool:
    """Nothing to do, only to report: a container or an image as asked, an account likewise."""
    return isinstance(action, Ready | ImageReady) or (
        isinstance(action, AccountAction) and action.verb == AccountVerb.KEEP
    )


@dataclass(frozen=True, kw_only=True)
class Plan:
    actions: tuple[Action, ...]
    drift: tuple[Drift, ...] = ()
    sha: str = ""

    @property
    def changes(self) -> tuple[Action, ...]:
        """The actions that change something: not a Ready container, not a kept account."""
        return tuple(a for a in self.actions if not unchanged(a))

    def count(self, kind: Kind) -> int:
        return sum(1 for a in self.actions if a.kind == kind)


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """Everything the plan depends on, gathered by apply before planning."""

    policy: Policy
    inventory: Inventory
    valid: tuple[Loaded, ...]
    expired: tuple[Loaded, ...]
    observed: tuple[Instance, ...]
    today: date
    sha: str = ""
    busy_ports: frozenset[int] = frozenset()
    gpu_refusal: str | None = None  # why GPUs may not be attached now (None: they may)
    skipped: frozenset[str] = field(default_factory=frozenset)  # invalid request paths
    servers: tuple[Instance, ...] = ()  # the shared servers' instances (accounts live there)
    images: tuple[Image, ...] = ()  # ssp's images (members' `kind: image`)
    # Where containers' host ID blocks may go (root's subordinate IDs), and every instance's
    # blocks on the host, in all projects: a new block must be clear of all of them.
    id_spans: tuple[IdRange, ...] = idranges.LXD_DEFAULT_SPANS
    id_maps: tuple[IdMapUse, ...] = ()
    # False in a project that forbids low-level keys (ssp's restricted project): LXD chooses
    # the blocks there, and apply makes new containers one create at a time and checks them.
    pin_ids: bool = True
    # In an LXD cluster, each member's name → its status ("Online", "Offline", ...); empty
    # on a single server, where nothing is placed or targeted.
    members: Mapping[str, str] = field(default_factory=dict)
    # Request path → its place in merge order (larger: later; see values.waitlist.Landed):
    # the waitlist's order. A path without one (a pull request's own file, a checkout
    # outside git) comes after all that have one, then path order decides.
    merged: Mapping[str, int] = field(default_factory=dict)


class HostFacts(TypedDict):
    """What planning needs to know about the host besides LXD: ports other programs hold,
    why GPUs may not be attached now, where host ID blocks may go, and whether ssp may
    choose them. `provisioner.commands.host_facts` reads them; tests give their own."""

    busy_ports: frozenset[int]
    gpu_refusal: str | None
    id_spans: tuple[IdRange, ...]
    pin_ids: bool
