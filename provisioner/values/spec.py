"""What a valid request should look like in LXD: the desired config, devices and inside state.

Pure. A `Spec` is everything `apply` needs to create or check one container; an
`AccountSpec` one login on a shared server. Values come from the policy and inventory (host
paths, ports, PCI addresses, UIDs), never from the request text itself, which only picks ids
from those catalogues. Device names are fixed here, so the plan can tell ours from hand-added.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from provisioner.values import idranges, state
from provisioner.values.idranges import IdRange
from provisioner.values.models import AccountRequest, ContainerRequest, GpuEntry
from provisioner.values.policymodels import AliasImage, CloneImage, Policy
from provisioner.values.requestpaths import member_image
from provisioner.values.sizes import size_bytes

SSH_DEVICE = "ssh"
RDP_DEVICE = "rdp"
ROOT_DEVICE = "root"
GPU_PREFIX = "gpu-"
SHARE_PREFIX = "share-"
PROCESSES_LIMIT = "10000"
IMAGE = "user.ssp.image"

# Config keys whose value is ours to set: anything else on a managed instance that differs
# from what we set is someone's hand edit, reported as drift but left alone.
OWNED_PREFIXES = (
    "limits.",
    "security.",
    "raw.",
    "snapshots.",
    "boot.",
    "nvidia.",
    "linux.",
    state.LABEL,
)
# LXD writes these itself; never compare, never send back different values.
LXD_MANAGED_PREFIXES = ("volatile.", "image.")
# Labels that record history rather than desire: not compared.
# Set by ssp outside the plan (the apply's progress, retirement, a GPU release, the final
# idle notice): the plan neither sets nor removes them.
UNCOMPARED = (
    state.SHA,
    state.STATE,
    state.RETIRED,
    state.RELEASED,
    state.IDLE_FINAL,
    state.IDLE_LEASE,
)
# Of those, the ones an update keeps: the GPU release and what the idle release records
# (the apply rewrites the whole config, and would otherwise drop them at the first change,
# the release's own taking the GPU devices off included).
KEPT_LABELS = (state.RELEASED, state.IDLE_FINAL, state.IDLE_LEASE)
# The NVIDIA userspace from the host (policy `gpu_userspace: nvidia-runtime`): LXD's hook
# injects the host driver's libraries and nvidia-smi at each start, so they always match the
# running driver; compute and utility are what CUDA and nvidia-smi need, nothing for graphics.
NVIDIA_RUNTIME = "nvidia.runtime"
NVIDIA_CAPABILITIES = "nvidia.driver.capabilities"
NVIDIA_PREFIX = "nvidia."
SCHEDULES = {"daily": ("@daily", "2w"), "weekly": ("@weekly", "8w")}


def owned(key: str) -> bool:
    return key.startswith(OWNED_PREFIXES)


def ours(key: str, spec: Spec) -> bool:
    """Whether KEY is ssp's to set on SPEC's instance: owned, and not left to the admin."""
    return owned(key) and not (spec.admin_prefixes and key.startswith(spec.admin_prefixes))


def lxd_managed(key: str) -> bool:
    return key.startswith(LXD_MANAGED_PREFIXES)


def keys_hash(keys: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def linux_user(login: str) -> str:
    """A GitHub login as a Linux user name (lower case; logins are case-insensitive)."""
    return login.lower()


def gpu_device(gpu: GpuEntry) -> tuple[str, dict[str, str]]:
    name = GPU_PREFIX + gpu.pci.replace(":", "-").replace(".", "-")
    return name, {"type": "gpu", "gputype": "physical", "pci": gpu.pci}


def proxy_device(listen: str, port: int, inside: int) -> dict[str, str]:
    return {
        "type": "proxy",
        "bind": "host",
        "listen": f"tcp:{listen}:{port}",
        "connect": f"tcp:127.0.0.1:{inside}",
    }


def listen_port(device: Mapping[str, str]) -> int | None:
    """The host port of a proxy device (`tcp:0.0.0.0:22001` → 22001)."""
    if device.get("type") != "proxy":
        return None
    tail = device.get("listen", "").rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


@dataclass(frozen=True)
class Share:
    id: str
    source: str
    path: str
    readonly: bool


@dataclass(frozen=True)
class Spec:
    """The desired state of one container."""

    name: str
    owner: str
    login: str
    uid: int
    request_path: str
    image: str
    source: Mapping[str, str]
    config: Mapping[str, str]
    devices: Mapping[str, Mapping[str, str]]
    profiles: tuple[str, ...]
    description: str
    keys: tuple[str, ...]
    gpus: tuple[GpuEntry, ...]
    shares: tuple[Share, ...]
    ssh_port: int
    rdp_port: int | None
    desktop: bool
    expires: date
    snapshots: str
    users: bool = True  # the image can hold the owner's user and keys
    member: str = ""  # the LXD cluster member it is on or goes to ("": a single server)
    host: str = ""  # the name members reach that server by ("": the policy's ssh.host)
    # Owned config prefixes ssp neither sets nor reverts here: nvidia.* where the image
    # carries the NVIDIA userspace (an admin may set nvidia.* by hand for it).
    admin_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccountSpec:
    """The desired state of one login on a shared server."""

    name: str
    owner: str
    server: str  # the policy's shared-server id
    instance: str  # the LXD instance it lives on
    request_path: str
    keys: tuple[str, ...]
    sudo: bool
    expires: date

    def label(self, status: str = "active") -> str:
        """What the shared server's `user.ssp.account.<name>` key records."""
        return json.dumps(
            {
                "owner": self.owner,
                "keys": keys_hash(self.keys),
                "sudo": self.sudo,
                "request": self.request_path,
                "state": status,
            },
            sort_keys=True,
            separators=(",", ":"),
        )


def image_source(policy: Policy, image_id: str) -> dict[str, str]:
    if member_image(image_id) is not None:  # a member's image: its alias is its name
        return {"type": "image", "alias": image_id}
    image = policy.images[image_id]
    if isinstance(image, CloneImage):
        # Instances and their snapshots live in the default project (the admin's base).
        return {"type": "copy", "source": image.clone, "project": "default"}
    assert isinstance(image, AliasImage)  # noqa: S101  (the union has two members)
    return {"type": "image", "alias": image.image}


@dataclass(frozen=True)
class Placement:
    """The concrete resources a container gets at apply time (GPUs, ports, host IDs)."""

    gpus: tuple[GpuEntry, ...] = ()
    ssh_port: int = 0
    rdp_port: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    ids: IdRange | None = None  # the host ID block (None only where a caller has no host)
    # Members' images (`<owner>/<name>`) → whether each has useradd and sshd (imageplan).
    member_users: Mapping[str, bool] = field(default_factory=dict)
    member: str = ""  # the LXD cluster member it is on or goes to ("": a single server)
    host: str = ""  # the name members reach that server by ("": the policy's ssh.host)


def container_spec(
    request: ContainerRequest, path: str, policy: Policy, placement: Placement
) -> Spec:
    """The Spec of a valid container request, with its GPUs and ports already chosen."""
    image_id = request.image or policy.defaults.image
    uid = policy.users[request.owner].uid
    snapshots = request.snapshots or policy.defaults.snapshots
    shares = tuple(
        Share(s, policy.shares[s].source, policy.shares[s].path, policy.shares[s].readonly)
        for s in request.shares
    )
    config: dict[str, str] = {
        "limits.cpu": str(request.cpu or policy.defaults.cpu),
        "limits.memory": request.memory or policy.defaults.memory,
        "limits.processes": PROCESSES_LIMIT,
        "security.idmap.isolated": "true",
        "security.protection.delete": "true",
        "boot.autostart": "true",
        state.MANAGED: "true",
        state.OWNER: request.owner,
        state.REQUEST: path,
        state.EXPIRES: request.expires.isoformat(),
        state.KEYS: keys_hash(tuple(request.ssh_keys)),
        IMAGE: image_id,
    }
    if placement.ids is not None:
        config[idranges.BASE] = str(placement.ids.base)
        config[idranges.SIZE_KEY] = str(placement.ids.size)
    if shares:
        # The owner's host UID/GID appear as themselves inside, so files they write in the
        # share are theirs on the host (and on every other container that mounts it).
        config["raw.idmap"] = f"both {uid} {uid}"
    if request.restore is not None:  # set by the restore itself; the plan compares it
        config[state.RESTORED] = request.restore
    if snapshots in SCHEDULES:
        config["snapshots.schedule"], config["snapshots.expiry"] = SCHEDULES[snapshots]
    disk = request.disk or policy.defaults.disk
    devices: dict[str, dict[str, str]] = {
        ROOT_DEVICE: {
            "type": "disk",
            "path": "/",
            "pool": policy.lxd.pool,
            "size": f"{size_bytes(disk) // 2**20}MiB",
        },
        SSH_DEVICE: proxy_device(policy.ssh.listen, placement.ssh_port, 22),
    }
    for gpu in placement.gpus:
        name, device = gpu_device(gpu)
        devices[name] = device
    from_host = policy.gpu_userspace == "nvidia-runtime"
    if placement.gpus and from_host:
        config[NVIDIA_RUNTIME] = "true"
        config[NVIDIA_CAPABILITIES] = "compute,utility"
    for share in shares:
        devices[SHARE_PREFIX + share.id] = {
            "type": "disk",
            "source": share.source,
            "path": share.path,
            "readonly": "true" if share.readonly else "false",
        }
    if request.desktop and placement.rdp_port is not None:
        devices[RDP_DEVICE] = proxy_device(policy.ssh.listen, placement.rdp_port, 3389)
    return Spec(
        name=request.name,
        owner=request.owner,
        login=linux_user(request.owner),
        uid=uid,
        request_path=path,
        image=image_id,
        source=image_source(policy, image_id),
        config=config,
        devices=devices,
        profiles=tuple(policy.lxd.profiles),
        description=f"{request.owner}: {request.purpose}"[:200],
        keys=tuple(request.ssh_keys),
        gpus=placement.gpus,
        shares=shares,
        ssh_port=placement.ssh_port,
        rdp_port=placement.rdp_port if request.desktop else None,
        desktop=request.desktop,
        expires=request.expires,
        snapshots=snapshots,
        users=(
            placement.member_users.get(image_id, True)
            if member_image(image_id) is not None
            else policy.images[image_id].users
        ),
        member=placement.member,
        host=placement.host,
        admin_prefixes=() if from_host else (NVIDIA_PREFIX,),
    )


def account_spec(request: AccountRequest, path: str, policy: Policy) -> AccountSpec:
    return AccountSpec(
        name=request.name,
        owner=request.owner,
        server=request.server,
        instance=policy.shared_servers[request.server].instance,
        request_path=path,
        keys=tuple(request.ssh_keys),
        sudo=request.sudo,
        expires=request.expires,
    )
