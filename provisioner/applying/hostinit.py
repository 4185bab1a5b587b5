"""`ssp host init`'s effects: what the host lacks for the policy's project, and the change.

`provisioner.planning.hostproject` computes the project and profile the policy asks for and how
LXD's differ (pure); this module checks the host has what they point at and sends the change.
"""

from __future__ import annotations

from provisioner.planning.hostproject import DEFAULT_PROFILE, HostPlan
from provisioner.values.models import Inventory
from provisioner.values.policymodels import Policy
from provisioner.values.state import HostApi


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
