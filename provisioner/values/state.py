"""Observed LXD state as plain data, and the interface the LXD adapter offers.

The pure core (`plan`) reads `Instance` values, never pylxd objects; `apply` drives an
`LxdApi`, which `provisioner.lxd.api` implements against a real daemon and the tests implement in
memory. Labels are `user.ssp.*` config keys: LXD keeps `user.*` keys as they are, so they are
where a managed instance remembers what it is (owner, request, commit, lifecycle state).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from provisioner.values.gpuinventory import Card
from provisioner.values.idranges import IdMapUse

LABEL = "user.ssp."
MANAGED = "user.ssp.managed"
OWNER = "user.ssp.owner"
REQUEST = "user.ssp.request"
SHA = "user.ssp.sha"
STATE = "user.ssp.state"  # creating | ready | retired | expired
# The two ways a container is stopped and kept: given back (its request removed), or its
# lease ended (restarted, data intact, by a renewal that extends `expires`).
RETIRED_STATE = "retired"
EXPIRED_STATE = "expired"
EXPIRES = "user.ssp.expires"
KEYS = "user.ssp.keys"  # sha256 of the authorized keys pushed inside
RETIRED = "user.ssp.retired"  # date the instance was retired
RESTORED = "user.ssp.restored"  # the snapshot its request's `restore` rolled it back to
# GPUs handed back while the container stays (its owner's `/ssp stop`, or an idle release
# the policy consented to): "<YYYY-MM-DD> <why>". While it is set the plan gives the
# container no GPUs and does not put them back; whoever clears it (`/ssp start`) puts the
# container back in line for its GPUs.
RELEASED = "user.ssp.released"
RELEASED_WHY = ("idle", "owner")
# The day the final idle-GPU notice reached the owner (posted on the lease issue): an idle
# release the policy consents to waits `usage.idle_grace_days` from it, and never happens
# without it.
IDLE_FINAL = "user.ssp.idle-final"
# The lease's last day when its GPUs were released for idleness: a renewal past it (a later
# `user.ssp.expires`) gives the container its GPUs back at the next maintenance pass.
IDLE_LEASE = "user.ssp.idle-lease"
ACCOUNT = "user.ssp.account."  # on a shared server: one key per account
# A warm clone (provisioner.planning.warm): a stopped, unmanaged copy of a base made ahead by
# `ssp maintain`, with its own host IDs and first start done; never a member's container.
WARM = "user.ssp.warm"  # the policy image id it is a copy of
WARM_SOURCE = "user.ssp.warm.source"  # the instance/snapshot it was copied from
WARM_STATE = "user.ssp.warm.state"  # making | ready
WARM_IDS = "user.ssp.warm.ids"  # every UID and GID owning a file in it ("": not known)
# A member's image (`kind: image`) keeps its labels in the image's properties, which LXD
# keeps as they are: the same names without `user.`.
IMAGE_MANAGED = "ssp.managed"
IMAGE_OWNER = "ssp.owner"
IMAGE_REQUEST = "ssp.request"
IMAGE_SHA = "ssp.sha"
IMAGE_SOURCE = "ssp.source"  # the container/snapshot it was published from
IMAGE_USERS = "ssp.users"  # "true": it has useradd and sshd (see policy images' `users`)
# The LXD project whose ssp published it. ssp's project shares the default project's images
# (features.images=false), so every project on the daemon sees them: another project's ssp (a
# second lab, a test) must neither use nor unpublish them. One published before it was
# recorded counts as every project's, as it did.
IMAGE_PROJECT = "ssp.project"


def image_of(properties: Mapping[str, str], project: str) -> bool:
    """Whether an image with PROPERTIES is ssp's in PROJECT (see `IMAGE_PROJECT`)."""
    return (
        properties.get(IMAGE_MANAGED) == "true"
        and properties.get(IMAGE_PROJECT, project) == project
    )


Devices = Mapping[str, Mapping[str, str]]


def plain_devices(devices: Devices) -> dict[str, dict[str, str]]:
    """Devices as plain dicts, for comparing what LXD holds with what was asked for."""
    return {name: dict(options) for name, options in devices.items()}


@dataclass(frozen=True)
class Instance:
    """One instance as LXD reports it (local config and devices, not the expanded ones)."""

    name: str
    status: str  # "Running", "Stopped", "Frozen", ...
    config: Mapping[str, str] = field(default_factory=dict)
    devices: Devices = field(default_factory=dict)
    expanded_devices: Devices = field(default_factory=dict)
    description: str = ""
    profiles: tuple[str, ...] = ()
    ipv4: tuple[str, ...] = ()
    snapshots: tuple[str, ...] = ()
    location: str = ""

    @property
    def managed(self) -> bool:
        return self.config.get(MANAGED) == "true"

    @property
    def running(self) -> bool:
        return self.status == "Running"

    def label(self, key: str) -> str | None:
        return self.config.get(key)

    @property
    def gpus_released(self) -> bool:
        """Its GPUs were handed back while it stays (see `RELEASED`)."""
        return self.managed and bool(self.config.get(RELEASED))

    @property
    def stopped_by_owner(self) -> bool:
        """Stopped by its owner's `/ssp stop` (GPUs handed back "owner"): it stays stopped,
        whatever the passes after it find, until `/ssp start` clears the mark."""
        why = (self.config.get(RELEASED) or "").split()
        return self.managed and not self.running and why[-1:] == ["owner"]


@dataclass(frozen=True)
class Image:
    """One of ssp's images (a member's `kind: image`) as LXD reports it."""

    fingerprint: str
    aliases: tuple[str, ...]
    properties: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def managed(self) -> bool:
        return self.properties.get(IMAGE_MANAGED) == "true"


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


class LxdApi(Protocol):
    """What apply needs from LXD. Every method raises provisioner.values.errors.LxdError."""

    project: str  # the LXD project it works in

    def instances(self) -> list[Instance]:
        """Every instance of the project, with state, in one request."""
        ...

    def all_instances(self) -> dict[str, list[Instance]]:
        """Every instance of every project of the daemon, with state, by project, in one
        request (what a pass observes: its project, the shared servers, the host ID blocks)."""
        ...

    def instance(self, name: str) -> Instance: ...

    def id_maps(self) -> list[IdMapUse]:
        """Every instance's host ID blocks, in every project of the daemon, in one request."""
        ...

    def members(self) -> dict[str, str]:
        """In an LXD cluster, each member's name → its status, in one request; {} on a single
        server."""
        ...

    def create(
        self,
        name: str,
        source: Mapping[str, str],
        config: Mapping[str, str],
        devices: Devices,
        profiles: Sequence[str],
        description: str,
        target: str = "",
    ) -> None:
        """Create a stopped instance (copy of an instance/snapshot, or from an image); in a
        cluster, on member `target` ("": where LXD chooses)."""
        ...

    def replace(
        self,
        name: str,
        config: Mapping[str, str],
        devices: Devices,
        profiles: Sequence[str],
        description: str,
    ) -> None:
        """PUT the instance's whole local config and devices."""
        ...

    def set_config(self, name: str, changes: Mapping[str, str | None]) -> None:
        """PATCH config keys (None removes a key)."""
        ...

    def start(self, name: str) -> None: ...

    def stop(self, name: str, timeout_s: int = 60) -> None:
        """A clean shutdown first; forced only when it does not stop in time."""
        ...

    def snapshot(self, name: str, snapshot: str) -> None: ...

    def restore_snapshot(self, name: str, snapshot: str) -> None:
        """Roll a stopped instance back to one of its snapshots: its files and its config."""
        ...

    def delete(self, name: str) -> None: ...

    def rename(self, name: str, new_name: str) -> None:
        """Give a stopped instance another name (a warm clone claimed by a request)."""
        ...

    def execute(self, name: str, argv: Sequence[str], stdin: str | None = None) -> ExecResult: ...

    def push_file(
        self, name: str, path: str, data: bytes, mode: int, uid: int, gid: int
    ) -> None: ...

    def make_dir(self, name: str, path: str, mode: int, uid: int, gid: int) -> None:
        """Create a directory (works on a stopped container); an existing one is kept."""
        ...

    def delete_file(self, name: str, path: str) -> None: ...

    def wait_ipv4(self, name: str, timeout_s: float) -> tuple[str, ...]:
        """The instance's IPv4 addresses, polling until one appears or time runs out."""
        ...

    def images(self) -> list[Image]:
        """ssp's images (properties `ssp.managed=true`) the project can use, in one request."""
        ...

    def publish_image(
        self,
        name: str,
        snapshot: str,
        alias: str,
        properties: Mapping[str, str],
        description: str,
    ) -> str:
        """Publish an instance's snapshot as an image with `alias`; returns its fingerprint.
        The instance may be running. An alias that exists already is refused."""
        ...

    def delete_image(self, fingerprint: str) -> None:
        """Delete an image and its aliases; instances made from it keep their own copy."""
        ...


# --- the host: what `ssp host init` and `ssp doctor` read and write ---------------------------


@dataclass(frozen=True)
class Project:
    name: str
    description: str = ""
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    config: Mapping[str, str] = field(default_factory=dict)
    devices: Devices = field(default_factory=dict)


@dataclass(frozen=True)
class Pool:
    """A storage pool and its space in bytes, as LXD reports it."""

    name: str
    driver: str
    total: int
    used: int

    @property
    def free(self) -> int:
        return max(self.total - self.used, 0)


@dataclass(frozen=True)
class ServerInfo:
    version: str
    api_extensions: frozenset[str]


class HostApi(Protocol):
    """What host init and doctor read and write in LXD. Every method raises LxdError."""

    def server(self) -> ServerInfo: ...

    def read_project(self) -> Project | None:
        """The adapter's project, or None when it does not exist."""
        ...

    def create_project(self, project: Project) -> None: ...

    def update_project(self, project: Project) -> None:
        """Replace the project's description and whole config."""
        ...

    def read_profile(self, name: str) -> Profile | None: ...

    def update_profile(self, profile: Profile) -> None: ...

    def storage_pool(self, name: str, member: str = "") -> Pool | None:
        """The pool and its space; in a cluster, on `member` ("": the member answering)."""
        ...

    def members(self) -> dict[str, str]:
        """In an LXD cluster, each member's name → its status; {} on a single server."""
        ...

    def network_exists(self, name: str) -> bool: ...

    def gpu_cards(self, member: str = "") -> tuple[Card, ...]:
        """The GPU cards LXD lists on `member` ("": the member answering), from its PCI bus."""
        ...
