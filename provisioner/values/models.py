"""The contract: pydantic models of request files and the host inventory, and the scalar
types they share with the lab policy (`provisioner.values.policymodels`).

These models are the source of truth; `schemas/*.schema.json` are generated from them
(`ssp schema --write`) for editors and for the validator's JSON-Schema pass. Every model
forbids unknown keys and is strict: no string→int, no bool-as-int, dates only as ISO text.
Users never write host paths, ports, PCI addresses or LXD keys: those live in the
admin-owned policy and inventory.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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

# A member's own image, published by a `kind: image` request: `<owner>/<name>`.
MEMBER_IMAGE_PATTERN = r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*/[a-z][a-z0-9-]{1,30}[a-z0-9]"
ImageRef = Annotated[
    str,
    StringConstraints(pattern=r"^([a-z][a-z0-9._-]{0,62}|" + MEMBER_IMAGE_PATTERN + r")$"),
    Field(description="An id in policy.images, or a member's image `<owner>/<name>`."),
]

# The form is a rule of its own (restore.snapshot), so its message can say what a snapshot is.
SnapshotName = Annotated[str, StringConstraints(min_length=1, max_length=200)]

ReminderDays = Annotated[
    list[Annotated[int, Field(ge=1, le=365)]],
    Field(max_length=10, description="Days before a lease's last day on which its owner is told."),
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- requests ---------------------------------------------------------------------------------


class ContainerRequest(StrictModel):
    """A container of one's own, cloned from a lab image."""

    model_config = ConfigDict(title="Container request")

    kind: Literal["container"]
    name: Name
    owner: Login
    purpose: Purpose
    image: ImageRef | None = Field(
        None,
        description="An id in policy.images (default: the policy's), or a member's image "
        "`<owner>/<name>`: your own, or one the policy shares.",
    )
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
    backup: bool = Field(
        False,
        description="Back this container up off the host, where the policy's backup section "
        "backs up the containers that opt in (`containers: opted-in`).",
    )
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


class AccountRequest(StrictModel):
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


class ImageRequest(StrictModel):
    """An LXD image made from one of one's own containers, to start later containers from."""

    model_config = ConfigDict(title="Image request")

    kind: Literal["image"]
    name: Name
    owner: Login
    purpose: Purpose
    source: Name = Field(alias="from", description="One of your own containers, to publish.")
    snapshot: SnapshotName | None = Field(
        None,
        description="One of that container's snapshots to publish (default: ssp takes one, "
        "`ssp-image-<name>`, so the container keeps running).",
    )
    expires: date = Field(
        description="Last day the image is kept (YYYY-MM-DD), inclusive, in the policy's time "
        "zone; then it is deleted (containers made from it keep their copy)."
    )


AnyRequest = ContainerRequest | AccountRequest | ImageRequest
Request = Annotated[AnyRequest, Field(discriminator="kind")]
REQUEST_MODELS: dict[str, type[ContainerRequest] | type[AccountRequest] | type[ImageRequest]] = {
    "container": ContainerRequest,
    "account": AccountRequest,
    "image": ImageRequest,
}


HostName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"),
    Field(description="A DNS name or an IPv4 address."),
]


# --- inventory --------------------------------------------------------------------------------


class GpuEntry(StrictModel):
    index: GpuIndex
    model: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    pci: PciAddress
    uuid: Annotated[
        str, StringConstraints(pattern=r"^GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")
    ]
    memory: Size


class Host(StrictModel):
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


class Inventory(StrictModel):
    """config/hosts.yaml: what the GPU server(s) have. Written by `ssp gpus --write`.

    Each key is a server's name; in an LXD cluster, the name of that cluster member.
    """

    model_config = ConfigDict(title="Super Server Platform host inventory")

    hosts: dict[Id, Host] = Field(min_length=1)
