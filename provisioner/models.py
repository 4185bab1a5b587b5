"""The contract: pydantic models of request files, the lab policy and the host inventory.

These models are the source of truth; `schemas/*.schema.json` are generated from them
(`ssp schema --write`) for editors and for the validator's JSON-Schema pass. Every model
forbids unknown keys and is strict: no string→int, no bool-as-int, dates only as ISO text.
Users never write host paths, ports, PCI addresses or LXD keys: those live in the
admin-owned policy and inventory.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

# --- scalar types -----------------------------------------------------------------------------

Name = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$"),
    Field(description="Lower-case letters, digits and '-', 3–32 characters; equals the file name."),
]
# GitHub logins: alphanumerics and single hyphens, not at either end, at most 39 characters.
LOGIN_PATTERN = r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$"
LOGIN_MAX = 39
Login = Annotated[
    str,
    StringConstraints(pattern=LOGIN_PATTERN, max_length=LOGIN_MAX),
    Field(description="A GitHub login."),
]
Id = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9._-]{0,62}$"),
    Field(description="An id from a catalogue in config/policy.yaml."),
]
Size = Annotated[
    str,
    StringConstraints(pattern=r"^[1-9][0-9]{0,6}(MiB|GiB|TiB)$"),
    Field(description="A size: a whole number and MiB, GiB or TiB, e.g. 32GiB."),
]
GpuIndex = Annotated[int, Field(ge=0, le=63, description="An nvidia-smi index.")]
GpuIndexList = Annotated[list[GpuIndex], Field(min_length=1, max_length=16)]
SshKeyText = Annotated[
    str,
    StringConstraints(min_length=16, max_length=16384),
    Field(description="One public key line: type base64 [comment]"),
]
Purpose = Annotated[
    str,
    StringConstraints(min_length=3, max_length=200),
    Field(description="What the container is for, in a sentence."),
]
AbsPath = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._/+-]*$", max_length=255)]
PciAddress = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$"),
    Field(description="PCI address in LXD's form: 0000:4b:00.0"),
]

# The form is a rule of its own (restore.snapshot), so its message can say what a snapshot is.
SnapshotName = Annotated[str, StringConstraints(min_length=1, max_length=200)]

ReminderDays = Annotated[
    list[Annotated[int, Field(ge=1, le=365)]],
    Field(max_length=10, description="Days before a lease's last day on which its owner is told."),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- requests ---------------------------------------------------------------------------------


class ContainerRequest(_Strict):
    """A container of one's own, cloned from a lab image."""

    model_config = ConfigDict(title="Container request")

    kind: Literal["container"]
    name: Name
    owner: Login
    purpose: Purpose
    image: Id | None = Field(None, description="An id in policy.images (default: the policy's).")
    gpus: GpuIndexList | Annotated[int, Field(ge=0, le=16)] = Field(
        0, description="A count, or a list of nvidia-smi indices from config/hosts.yaml."
    )
    cpu: Annotated[int, Field(ge=1, le=512)] | None = Field(None, description="Cores.")
    memory: Size | None = None
    disk: Size | None = Field(None, description="Root disk size.")
    shares: list[Id] = Field(
        default_factory=list, max_length=16, description="Ids in policy.shares."
    )
    ssh_keys: list[SshKeyText] = Field(min_length=1, max_length=10)
    desktop: bool = Field(False, description="xrdp + xfce, reachable through a forwarded port.")
    snapshots: Literal["none", "daily", "weekly"] | None = None
    expires: date = Field(
        description="Last day of the lease (YYYY-MM-DD), inclusive, in the policy's time zone."
    )
    host: Id | None = Field(
        None,
        description="A host in config/hosts.yaml (optional; default: the server with the "
        "GPUs asked for and the most room). Only read when the container is made: a "
        "container is never moved.",
    )
    gpu_model: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        None,
        description="Only GPUs of this model, as config/hosts.yaml names it (optional).",
    )
    restore: SnapshotName | None = Field(
        None,
        description="Roll the container back to this one of its snapshots, once; files "
        "written since are lost. Asking for one it lacks is refused with the list it has.",
    )


class AccountRequest(_Strict):
    """A login on a shared server (e.g. Common-Server) instead of a container of one's own."""

    model_config = ConfigDict(title="Account request")

    kind: Literal["account"]
    name: Name
    owner: Login
    purpose: Purpose
    server: Id = Field(description="An id in policy.shared_servers.")
    ssh_keys: list[SshKeyText] = Field(min_length=1, max_length=10)
    sudo: bool = False
    expires: date = Field(
        description="Last day of the lease (YYYY-MM-DD), inclusive, in the policy's time zone."
    )


Request = Annotated[ContainerRequest | AccountRequest, Field(discriminator="kind")]
REQUEST_MODELS: dict[str, type[ContainerRequest] | type[AccountRequest]] = {
    "container": ContainerRequest,
    "account": AccountRequest,
}


# --- policy -----------------------------------------------------------------------------------


class User(_Strict):
    uid: Annotated[int, Field(ge=1000, le=65533, description="The member's UID on the host.")]
    quota: Id | None = Field(None, description="A name in quotas (default: `default`).")


class Quota(_Strict):
    containers: Annotated[int, Field(ge=0, le=100)]
    gpus: Annotated[int, Field(ge=0, le=64)]
    cpu: Annotated[int, Field(ge=0, le=4096)]
    memory: Size
    disk: Size


class Defaults(_Strict):
    image: Id
    cpu: Annotated[int, Field(ge=1, le=512)]
    memory: Size
    disk: Size
    snapshots: Literal["none", "daily", "weekly"] = "none"


class _Image(_Strict):
    description: str = ""
    users: bool = Field(
        True,
        description="The image has useradd and sshd: create the owner's user and SSH keys "
        "inside. False for minimal images (e.g. busybox), which get the container only.",
    )


class CloneImage(_Image):
    clone: Annotated[
        str,
        StringConstraints(
            pattern=r"^[A-Za-z][A-Za-z0-9-]{0,62}(/[A-Za-z0-9][A-Za-z0-9._-]{0,62})?$"
        ),
        Field(description="An instance, or Instance/snapshot, to copy."),
    ]


class AliasImage(_Image):
    image: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")]


class Share(_Strict):
    source: AbsPath = Field(description="Host path.")
    path: AbsPath = Field(description="Path inside the container.")
    readonly: bool = False
    description: str = ""


class SharedServer(_Strict):
    instance: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9-]{0,62}$")]
    project: str = Field("default", description="The LXD project the instance is in.")
    ssh_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="Host port forwarded to its SSH, if any."
    )
    description: str = ""


HostName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"),
    Field(description="A DNS name or an IPv4 address."),
]


class SshPolicy(_Strict):
    listen: Annotated[
        str,
        StringConstraints(pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$"),
        Field(description="Host address the forwarded ports listen on."),
    ]
    ports: Annotated[
        list[Annotated[int, Field(ge=1024, le=65535)]], Field(min_length=2, max_length=2)
    ]
    host: str = Field("", description="Name members use to reach the server on the LAN.")
    public_host: str = Field("", description="Name or address to reach it from outside, if any.")
    jump_host: Annotated[
        str,
        StringConstraints(
            pattern=r"^(([a-z_][a-z0-9_-]{0,31}@)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
            r"(:[0-9]{1,5})?)?$"
        ),
    ] = Field(
        "",
        description="A host reachable from outside that can reach the server ([user@]host[:port]"
        "): the comment then offers `ssh -J` through it.",
    )

    @model_validator(mode="after")
    def _range(self) -> SshPolicy:
        if self.ports[0] > self.ports[1]:
            raise ValueError("ssh.ports must be [first, last] with first <= last")
        return self


class Tunnel(_Strict):
    """The lab's tunnel for off-LAN access: an frp server that forwards its ports to the host.

    frpc runs on the GPU host with the file `ssp tunnel --format frpc` writes; each forwarded
    port P on the host is reachable from anywhere as `server`:P + `remote_offset`.
    """

    kind: Literal["frp"] = Field(description="The tunnel software (frp is the one supported).")
    server: HostName = Field(description="The frp server (frps): members connect to it too.")
    server_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        7000, description="frps's bindPort, where frpc connects."
    )
    remote_offset: Annotated[int, Field(ge=-65534, le=65534)] = Field(
        0, description="Port P on the host is port P + remote_offset on the frp server."
    )
    token_env: Annotated[str, StringConstraints(pattern=r"^([A-Z_][A-Z0-9_]{0,63})?$")] = Field(
        "FRP_AUTH_TOKEN",
        description="The environment variable frpc reads the frps token from (never written "
        "into the file); empty for a server without a token.",
    )


class Retention(_Strict):
    """What happens to a container once it is retired (lease ended, or request removed)."""

    delete: bool = Field(
        default=False,
        description="The lab's consent to delete a retired container retention_days after it "
        "was retired (false: it is kept until an admin deletes it).",
    )
    final_notice_days: Annotated[int, Field(ge=1, le=365)] = Field(
        default=3,
        description="The owner's last warning comes at least this many days before deletion.",
    )
    export_dir: AbsPath | None = Field(
        default=None,
        description="Host folder where a container is exported (an `lxc export` tarball) "
        "before it is deleted; unset: deleted without an export.",
    )


class SnapshotPolicy(_Strict):
    """What the maintenance run publishes for the PR check's plan preview (`ssp publish`)."""

    addresses: bool = Field(
        default=False,
        description="Publish the containers' IP addresses in the snapshot and the status page "
        "(private LAN addresses; anyone who can read the repository can read them).",
    )
    max_age_hours: int = Field(
        default=30,
        ge=1,
        le=720,
        description="An older snapshot is not used: the PR check says so and previews nothing.",
    )


class LxdSettings(_Strict):
    project: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$")] = "ssp"
    profiles: list[str] = Field(default_factory=lambda: ["default"])
    pool: str = "default"
    network: str = "lxdbr0"


class Policy(_Strict):
    """config/policy.yaml: who may ask for what, and the catalogues requests pick from."""

    model_config = ConfigDict(title="Super Server Platform policy")

    admins: list[Login] = Field(min_length=1)
    users: dict[Login, User]
    quotas: dict[Id, Quota]
    defaults: Defaults
    max_lease_days: Annotated[int, Field(ge=1, le=3650)]
    timezone: str = Field(description="IANA time zone used for lease dates, e.g. Asia/Shanghai.")
    images: dict[Id, CloneImage | AliasImage]
    shares: dict[Id, Share] = Field(default_factory=dict)
    shared_servers: dict[Id, SharedServer] = Field(default_factory=dict)
    ssh: SshPolicy
    tunnel: Tunnel | None = Field(None, description="The lab's tunnel for off-LAN access.")
    retention_days: Annotated[int, Field(ge=0, le=3650)] = Field(
        description="Days a retired container is kept (stopped, snapshotted) before it may be "
        "deleted."
    )
    retention: Retention = Field(default_factory=Retention)
    reminders: ReminderDays = Field(
        default_factory=lambda: [14, 3],
        description="Days before the last day of a lease on which its owner gets a reminder.",
    )
    gpu_sharing: Literal["exclusive", "shared"] = "exclusive"
    lxd: LxdSettings = Field(default_factory=LxdSettings)
    snapshot: SnapshotPolicy = Field(
        default_factory=SnapshotPolicy,
        description="The published state snapshot the PR check previews against.",
    )

    def quota_for(self, login: str) -> tuple[str, Quota]:
        user = self.users.get(login)
        name = (user.quota if user else None) or "default"
        return name, self.quotas[name]


# --- inventory --------------------------------------------------------------------------------


class GpuEntry(_Strict):
    index: GpuIndex
    model: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    pci: PciAddress
    uuid: Annotated[
        str, StringConstraints(pattern=r"^GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")
    ]
    memory: Size


class Host(_Strict):
    """One GPU server; with several, each is an LXD cluster member of the same name."""

    address: HostName | None = Field(
        None,
        description="Name members use to reach this server (SSH, the PR comment); "
        "default: the policy's ssh.host.",
    )
    cpu: Annotated[int, Field(ge=1, le=4096)]
    memory: Size
    disk: Size | None = Field(None, description="Storage pool size.")
    gpus: list[GpuEntry] = Field(default_factory=list)


class Inventory(_Strict):
    """config/hosts.yaml: what the GPU server(s) have. Written by `ssp gpus --write`.

    Each key is a server's name; in an LXD cluster, the name of that cluster member.
    """

    model_config = ConfigDict(title="Super Server Platform host inventory")

    hosts: dict[Id, Host] = Field(min_length=1)
