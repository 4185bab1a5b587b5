"""The lab's policy as pydantic models: members and quotas, the image catalogue, shares,
shared servers, SSH and tunnel settings, leases and retention, members' comment commands,
the LXD project.

Part of the contract with `provisioner.values.models` (request files, the inventory, the scalar
types all share): `config/policy.yaml` is read into `Policy`, and `schemas/policy.schema.json`
is generated from it. Admin-owned: the only place host paths, ports and LXD names are written.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from provisioner.values.models import (
    AbsPath,
    HostName,
    Id,
    Login,
    ReminderDays,
    Size,
    StrictModel,
)
from provisioner.values.notifymodels import Notify


class User(StrictModel):
    uid: Annotated[int, Field(ge=1000, le=65533, description="The member's UID on the host.")]
    quota: Id | None = Field(None, description="A name in quotas (default: `default`).")


class Quota(StrictModel):
    containers: Annotated[int, Field(ge=0, le=100)]
    gpus: Annotated[int, Field(ge=0, le=64)]
    cpu: Annotated[int, Field(ge=0, le=4096)]
    memory: Size
    disk: Size


class Defaults(StrictModel):
    image: Id
    cpu: Annotated[int, Field(ge=1, le=512)]
    memory: Size
    disk: Size
    snapshots: Literal["none", "daily", "weekly"] = "none"


class _Image(StrictModel):
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


class Share(StrictModel):
    source: AbsPath = Field(description="Host path.")
    path: AbsPath = Field(description="Path inside the container.")
    readonly: bool = False
    description: str = ""


class SharedServer(StrictModel):
    instance: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9-]{0,62}$")]
    project: str = Field("default", description="The LXD project the instance is in.")
    ssh_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="Host port forwarded to its SSH, if any."
    )
    description: str = ""


class SshPolicy(StrictModel):
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


EnvName = Annotated[str, StringConstraints(pattern=r"^([A-Z_][A-Z0-9_]{0,63})?$")]


class Tunnel(StrictModel):
    """The lab's tunnel for off-LAN access: an frp server that forwards its ports to the host.

    frpc runs on the GPU host with the file `ssp tunnel --format frpc` writes; each forwarded
    port P on the host is reachable from anywhere as `server`:P + `remote_offset`. With
    `admin_port`, every apply rewrites that file and reloads frpc, so a new port works at once.
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
    admin_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None,
        description="frpc's admin API (its webServer) on 127.0.0.1 of the host: each apply then "
        "writes config_file and reloads frpc through it, and the comment offers the off-LAN "
        "command only for a port whose proxy frpc reports running. Without it the tunnel "
        "is the admin's to keep in step (`ssp tunnel`) and no off-LAN command is offered.",
    )
    config_file: AbsPath = Field(
        "/etc/frp/frpc.toml",
        description="The file frpc was started with (`frpc -c`): each apply rewrites it.",
    )
    admin_user: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = Field(
        "ssp", description="The admin API's user (webServer.user)."
    )
    admin_password_env: EnvName = Field(
        "FRPC_ADMIN_PASSWORD",
        description="The environment variable frpc reads the admin API's password from "
        "(written into the file only as frp's template); empty for an API without a password.",
    )
    admin_password_file: AbsPath = Field(
        "/etc/ssp/frpc-admin-password",
        description="Where ssp reads the same password on the host (a private file the "
        "runner's user can read; the variable named by admin_password_env, when set in "
        "ssp's environment, wins). Never in the repository or a workflow.",
    )


class Retention(StrictModel):
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


class BackupPolicy(StrictModel):
    """Backups off the host: `ssp maintain` exports containers into a folder on other disks."""

    target: AbsPath = Field(
        description="A host folder on another machine's disks, mounted (NFS, SMB, sshfs or an "
        "rsync-synced folder on a NAS): one `lxc export` tarball per container and day is "
        "written there, owner-only."
    )
    containers: Literal["all", "opted-in"] = Field(
        "all",
        description="all: every container ssp manages; opted-in: those whose request says "
        "`backup: true`.",
    )
    every_days: Annotated[int, Field(ge=1, le=365)] = Field(
        7, description="A container's backup is due when its newest is this many days old."
    )
    keep: Annotated[int, Field(ge=1, le=100)] = Field(
        3, description="How many of a container's backups are kept (the newest)."
    )


PageUrl = Annotated[
    str,
    StringConstraints(
        pattern=r"^(https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/?#=&+-]*)?)?$"
    ),
]


class SnapshotPolicy(StrictModel):
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
    page_url: PageUrl = Field(
        default="",
        description="Where members find the status page (e.g. the repository's GitHub Pages "
        "address); every merge comment, lease issue, notice, e-mail and chat notice ends "
        "with it.",
    )


class UsagePolicy(StrictModel):
    """GPU use: how `ssp sample` keeps readings and when `ssp maintain` calls a GPU idle."""

    interval_minutes: Annotated[int, Field(ge=1, le=60)] = Field(
        default=5,
        description="How often the sampler's timer runs (runner/systemd/ssp-sample.timer); a "
        "reading stands for at most this long, so gaps (a host that was down) count nothing.",
    )
    keep_days: Annotated[int, Field(ge=1, le=3650)] = Field(
        default=400,
        description="Days of readings the usage database keeps; older ones are pruned at "
        "each sample, which bounds its size.",
    )
    idle_utilization: Annotated[int, Field(ge=0, le=100)] = Field(
        default=5,
        description="A GPU whose utilisation (percent) never rose above this is idle.",
    )
    idle_days: Annotated[int, Field(ge=0, le=365)] = Field(
        default=0,
        description="Days a held GPU must be idle before `ssp maintain` tells its owner in the "
        "lease issue (0: no idle notices).",
    )
    idle_action: Literal["none", "release"] = Field(
        default="none",
        description="What `ssp maintain` does with a GPU still idle after the final notice: "
        "none (notices only) or release (its GPUs come off the container, which keeps "
        "running; they go to the next request). The lab's consent: none unless set.",
    )
    idle_grace_days: Annotated[int, Field(ge=1, le=90)] = Field(
        default=7,
        description="Days between the final idle notice reaching the owner and the release; "
        "a GPU used again meanwhile is not released.",
    )
    database: AbsPath = Field(
        default="/var/lib/ssp/usage.sqlite",
        description="The usage database on the host (SQLite); $SSP_USAGE_DB overrides it.",
    )


class CommandsPolicy(StrictModel):
    """Members' comment commands: `/ssp restart|stop|start|snapshot` on a container's lease
    issue or merged pull request, run on the host by the commands workflow."""

    per_hour: Annotated[int, Field(ge=1, le=60)] = Field(
        default=4,
        description="Commands one container may be given in any hour (by its owner and the "
        "admins together); more are refused until the hour has passed.",
    )
    snapshots: Annotated[int, Field(ge=0, le=20)] = Field(
        default=3,
        description="How many `/ssp snapshot` snapshots a container keeps: the oldest of "
        "them is deleted to make room for a new one (0: `/ssp snapshot` is refused).",
    )
    ledger: AbsPath = Field(
        default="/var/lib/ssp/commands.json",
        description="The host file counting each container's commands of the last hour "
        "(the rate limit); written only under the host lock.",
    )


class LxdSettings(StrictModel):
    project: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$")] = "ssp"
    profiles: list[str] = Field(default_factory=lambda: ["default"])
    pool: str = "default"
    network: str = "lxdbr0"
    warm_pool: Annotated[int, Field(ge=0, le=32)] = Field(
        default=0,
        description="Warm clones of the default image that `ssp maintain` keeps ready: stopped "
        "copies with their own host IDs and first start done, so a new container claims one "
        "instead of copying the base (0: none; each holds a copy's disk and 65,536 host IDs).",
    )


class Policy(StrictModel):
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
    backup: BackupPolicy | None = Field(
        None, description="Backups off the host, run by `ssp maintain` (unset: none)."
    )
    reminders: ReminderDays = Field(
        default_factory=lambda: [14, 3],
        description="Days before the last day of a lease on which its owner gets a reminder.",
    )
    gpu_sharing: Literal["exclusive", "shared"] = "exclusive"
    gpu_userspace: Literal["nvidia-runtime", "image"] = Field(
        "nvidia-runtime",
        description="Where a GPU container's NVIDIA userspace (libcuda, nvidia-smi) comes from. "
        "nvidia-runtime: LXD injects the host's own at each start (nvidia.runtime; needs "
        "nvidia-container-cli on the host), so it always matches the host's driver. image: "
        "the image carries it and must match the host's driver; ssp sets no nvidia.* key and "
        "leaves an admin's own alone.",
    )
    images_shared: bool = Field(
        False, description="Every member may use members' images (false: only their owner)."
    )
    lxd: LxdSettings = Field(default_factory=LxdSettings)
    usage: UsagePolicy = Field(
        default_factory=UsagePolicy,
        description="GPU use: sampling, the usage database's retention and idle notices.",
    )
    snapshot: SnapshotPolicy = Field(
        default_factory=SnapshotPolicy,
        description="The published state snapshot the PR check previews against.",
    )
    notify: Notify | None = Field(
        None, description="Notices by e-mail and webhook besides GitHub (unset: GitHub only)."
    )
    commands: CommandsPolicy = Field(
        default_factory=CommandsPolicy,
        description="Members' comment commands (`/ssp restart` and the others): their rate "
        "limit and snapshots.",
    )

    def quota_for(self, login: str) -> tuple[str, Quota]:
        user = self.users.get(login)
        name = (user.quota if user else None) or "default"
        return name, self.quotas[name]
