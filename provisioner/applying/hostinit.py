"""`ssp host init`'s effects: what the host lacks for the policy's project, and the change.

`provisioner.planning.hostproject` computes the project and profile the policy asks for and how
LXD's differ (pure); this module checks the host has what they point at and sends the change.
"""

from __future__ import annotations

from provisioner.planning.hostproject import DEFAULT_PROFILE, HostPlan
from provisioner.values.models import Inventory
from provisioner.values.policymodels import Policy
from provisioner.values.state import HostApi, Pool


def pool_advice(pool: Pool | None) -> str:
    """What a `dir` pool costs each new container, and the better choice ("": none to give).

    Measured in bench/README.md ("Clone cost at a lab's scale"): on dir a clone is a full copy
    of the base, seconds per GB; on btrfs or ZFS it is a snapshot, a fraction of a second."""
    if pool is None or pool.driver != "dir":
        return ""
    return (
        f"storage pool {pool.name!r} is a dir pool: every new container is a full copy of the "
        "base (seconds per GB of it); a btrfs or zfs pool copies in a fraction of a second "
        "(`lxc storage create <name> btrfs source=<disk>`, then lxd.pool in config/policy.yaml; "
        "see the admin guide, 'Storage pool')"
    )


def missing_prerequisites(lxd: HostApi, policy: Policy, project_exists: bool) -> list[str]:
    """What the project's profile points at but the host lacks; each says what to do."""
    out = []
    settings = policy.lxd
    if lxd.storage_pool(settings.pool) is None:
        out.append(
            f"storage pool {settings.pool!r} does not exist: create it (`lxc storage create "
            f"{settings.pool} zfs` or `dir`) or name an existing one in lxd.pool of "
            "config/policy.yaml"
        )
    if not lxd.network_exists(settings.network):
        out.append(
            f"network {settings.network!r} does not exist: create it (`lxc network create "
            f"{settings.network}`) or name an existing one in lxd.network of config/policy.yaml"
        )
    if project_exists:
        for name in settings.profiles:
            if name != DEFAULT_PROFILE and lxd.read_profile(name) is None:
                out.append(
                    f"profile {name!r} (lxd.profiles in config/policy.yaml) does not exist in "
                    f"project {settings.project!r}: create it (`lxc profile create {name} "
                    f"--project {settings.project}`) or remove it from the policy"
                )
    return out


NVIDIA_TOOLS_HOW = (
    "install NVIDIA's container toolkit (`apt-get install nvidia-container-toolkit` from "
    "NVIDIA's apt repository; see the admin guide, GPU userspace), or set "
    "`gpu_userspace: image` in config/policy.yaml and put the NVIDIA userspace in the images"
)


def gpu_userspace_lines(
    policy: Policy, inventory: Inventory, driver_loaded: bool, cli: str | None
) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the policy's `gpu_userspace` on this host.

    With nvidia-runtime LXD needs nvidia-container-cli to store `nvidia.runtime=true` at all,
    so on a host whose NVIDIA driver is loaded its absence stops `ssp host init`: every GPU
    container would fail. Where no driver is loaded (a machine that is not the GPU host yet)
    it is a warning. LXD 5.0.2 has no project restriction on nvidia.* keys (it refuses
    `restricted.containers.nvidia` as unknown), so the restricted project allows the runtime.
    """
    if policy.gpu_userspace != "nvidia-runtime" or not any(
        h.gpus for h in inventory.hosts.values()
    ):
        return [], []
    if cli is not None:
        return [], []
    line = (
        "gpu_userspace is nvidia-runtime but nvidia-container-cli is not on this host, and "
        "LXD refuses nvidia.runtime without it: " + NVIDIA_TOOLS_HOW
    )
    if driver_loaded:
        return [line], []
    return [], [f"{line} (no NVIDIA driver is loaded here either: GPU containers need both)"]


def apply_host_plan(lxd: HostApi, plan: HostPlan) -> None:
    """Create or update the project and profile. Order matters: a new project must exist
    before its profile, and an existing one's profile must carry the limit defaults before
    the project's limits are raised over instances that lack them."""
    if plan.create_project:
        lxd.create_project(plan.project)
        if plan.profile_changes:
            lxd.update_profile(plan.profile)
        return
    if plan.profile_changes:
        lxd.update_profile(plan.profile)
    if plan.project_changes:
        lxd.update_project(plan.project)


def cluster_lines(members: dict[str, str], inventory: Inventory) -> list[str]:
    """What to tell the admin about an LXD cluster: its members and their state, which of
    them config/hosts.yaml lacks (or lists without a member), and that /etc/subuid and
    /etc/subgid are each server's own. Empty on a single server."""
    if not members:
        return []
    states = ", ".join(f"{m} ({status})" for m, status in sorted(members.items()))
    out = [
        f"cluster: {len(members)} members: {states}; the project and its profile serve them "
        "all, but /etc/subuid and /etc/subgid are this server's: run `ssp host init` on "
        "every member"
    ]
    unlisted = sorted(set(members) - set(inventory.hosts))
    if unlisted:
        out.append(
            f"warning: member(s) {', '.join(unlisted)} not in config/hosts.yaml: apply places "
            "nothing there"
        )
    absent = sorted(set(inventory.hosts) - set(members))
    if absent:
        out.append(
            f"warning: config/hosts.yaml lists {', '.join(absent)}, which the cluster does "
            "not have: requests with that host: are refused"
        )
    return out
