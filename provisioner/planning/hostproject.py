"""The LXD project a GPU host should have, from the policy, and how LXD's differs from it.

Pure. The project is the second line of defence (SECURITY.md, "LXD"): whatever our own code
sends, LXD itself refuses privileged or nested containers, `raw.lxc`-style low-level keys,
host paths outside the share catalogue, host UIDs other than the members', unix/usb/pci
devices and unmanaged NICs. Facts it rests on were checked on LXD 5.0.2 (docs/design.md, "LXD"):

- a restricted project needs `features.profiles=true` and its own `default` profile;
- `restricted.devices.disk=allow` with an EMPTY `disk.paths` allows every host path, so with
  no shares in the catalogue disks are `managed` (pool volumes only) instead;
- `restricted.snapshots` defaults to `block`, which would break retiring (a snapshot) and
  `snapshots.schedule`, so it is allowed explicitly;
- project `limits.cpu`/`limits.memory`/`limits.processes`/`limits.disk` are refused while any
  instance lacks the key (or a root `size`), so the default profile carries defaults for them;
- `restricted.containers.privilege=isolated` refuses `security.idmap.isolated=false` but not
  an absent key, so the profile sets it to `true` as well;
- a project PATCH replaces its whole config, so updates send the whole config (PUT).

The observed-side types (`Project`, `Profile`, `Pool`, `ServerInfo`) and `HostApi`, what
`ssp host init` and `ssp doctor` need from LXD, live here; `provisioner.lxd.api` implements them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from provisioner.values.models import Inventory
from provisioner.values.policymodels import Policy
from provisioner.values.sizes import format_size, size_bytes
from provisioner.values.spec import PROCESSES_LIMIT
from provisioner.values.state import Profile, Project

DEFAULT_PROFILE = "default"
PROJECT_DESCRIPTION = "Super Server Platform: lab containers (managed by `ssp host init`)"
PROFILE_DESCRIPTION = "Defaults for every container of the project (managed by `ssp host init`)"
# Room for containers kept after retirement (retention_days) on top of the live quota.
RETIRED_ALLOWANCE = 2

# --- what the policy asks for -------------------------------------------------------------------


def id_ranges(ids: Iterable[int]) -> str:
    """1000, 1001, 1002, 1005 → "1000-1002,1005" (the form restricted.idmap.* takes)."""
    runs: list[list[int]] = []
    for n in sorted(set(ids)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _limits(policy: Policy, inventory: Inventory) -> dict[str, str]:
    hosts = list(inventory.hosts.values())
    live = sum(policy.quota_for(login)[1].containers for login in policy.users)
    instances = max(live * RETIRED_ALLOWANCE, 1)
    limits = {
        "limits.instances": str(instances),
        "limits.virtual-machines": "0",
        "limits.cpu": str(sum(h.cpu for h in hosts)),
        "limits.memory": format_size(sum(size_bytes(h.memory) for h in hosts)),
        "limits.processes": str(instances * int(PROCESSES_LIMIT)),
    }
    if all(h.disk for h in hosts):
        limits["limits.disk"] = format_size(sum(size_bytes(h.disk or "") for h in hosts))
    return limits


def forbids_low_level(project: Project | None) -> bool:
    """Whether LXD refuses low-level keys in the project (`security.idmap.base` among them):
    a restricted project blocks them unless an admin allowed them (never, under ssp)."""
    if project is None or project.config.get("restricted") != "true":
        return False
    return project.config.get("restricted.containers.lowlevel", "block") != "allow"


def desired_project(policy: Policy, inventory: Inventory) -> Project:
    """The project's config keys ssp owns; LXD's own and an admin's other keys are kept."""
    config = {
        "features.images": "false",  # share the default project's images
        "features.profiles": "true",  # a restricted project needs its own profiles
        "restricted": "true",
        "restricted.containers.privilege": "isolated",
        "restricted.containers.nesting": "block",
        "restricted.containers.lowlevel": "block",
        "restricted.containers.interception": "block",
        "restricted.virtual-machines.lowlevel": "block",
        "restricted.devices.gpu": "allow",
        "restricted.devices.proxy": "allow",
        "restricted.devices.nic": "managed",
        "restricted.devices.unix-char": "block",
        "restricted.devices.unix-block": "block",
        "restricted.devices.unix-hotplug": "block",
        "restricted.devices.usb": "block",
        "restricted.devices.pci": "block",
        "restricted.devices.infiniband": "block",
        "restricted.networks.access": policy.lxd.network,
        "restricted.snapshots": "allow",
    }
    sources = sorted({share.source for share in policy.shares.values()})
    if sources:
        config["restricted.devices.disk"] = "allow"
        config["restricted.devices.disk.paths"] = ",".join(sources)
    else:
        config["restricted.devices.disk"] = "managed"
    uids = id_ranges(user.uid for user in policy.users.values())
    if uids:  # empty would mean "no host id may be mapped", which is what absence means too
        config["restricted.idmap.uid"] = uids
        config["restricted.idmap.gid"] = uids
    config.update(_limits(policy, inventory))
    return Project(policy.lxd.project, PROJECT_DESCRIPTION, config)


def desired_profile(policy: Policy) -> Profile:
    """The project's `default` profile: root disk, eth0 and the per-instance limit defaults."""
    return Profile(
        DEFAULT_PROFILE,
        PROFILE_DESCRIPTION,
        {
            "limits.cpu": str(policy.defaults.cpu),
            "limits.memory": policy.defaults.memory,
            "limits.processes": PROCESSES_LIMIT,
            "security.idmap.isolated": "true",
        },
        {
            "root": {
                "type": "disk",
                "path": "/",
                "pool": policy.lxd.pool,
                "size": policy.defaults.disk,
            },
            "eth0": {"type": "nic", "name": "eth0", "network": policy.lxd.network},
        },
    )


# --- what differs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingChange:
    """One key (or device) of the project or profile: None on a side means absent."""

    where: str  # "project ssp", "profile default"
    key: str
    old: str | None
    new: str | None

    def __str__(self) -> str:
        if self.old is None:
            return f"{self.where}: set {self.key}={self.new}"
        if self.new is None:
            return f"{self.where}: remove {self.key} (was {self.old})"
        return f"{self.where}: {self.key}: {self.old} → {self.new}"


def project_changes(desired: Project, observed: Project | None) -> list[SettingChange]:
    """The keys ssp owns that LXD lacks or holds differently; other keys are not compared."""
    have = observed.config if observed else {}
    where = f"project {desired.name}"
    return [
        SettingChange(where, key, have.get(key), value)
        for key, value in sorted(desired.config.items())
        if have.get(key) != value
    ]


def _device_text(device: Mapping[str, str] | None) -> str | None:
    if device is None:
        return None
    return ", ".join(f"{k}={v}" for k, v in sorted(device.items()))


def profile_changes(desired: Profile, observed: Profile | None) -> list[SettingChange]:
    """The profile is wholly ssp's: every config key and device is compared, extras removed.

    A device added to the default profile would reach every container (a GPU device without
    a PCI address there would give each one every GPU), so nothing extra is left in it.
    """
    where = f"profile {desired.name}"
    have_config = observed.config if observed else {}
    have_devices = observed.devices if observed else {}
    out = [
        SettingChange(where, key, have_config.get(key), desired.config.get(key))
        for key in sorted(set(desired.config) | set(have_config))
        if have_config.get(key) != desired.config.get(key)
    ]
    for name in sorted(set(desired.devices) | set(have_devices)):
        want, have = desired.devices.get(name), have_devices.get(name)
        if (dict(want) if want else None) != (dict(have) if have else None):
            out.append(
                SettingChange(where, f"device {name}", _device_text(have), _device_text(want))
            )
    return out


@dataclass(frozen=True)
class HostPlan:
    """What `ssp host init` would do to LXD; empty changes mean nothing to do."""

    project: Project  # the whole project to send (observed extras kept)
    profile: Profile
    create_project: bool
    project_changes: tuple[SettingChange, ...]
    profile_changes: tuple[SettingChange, ...]

    @property
    def changes(self) -> tuple[SettingChange, ...]:
        return self.project_changes + self.profile_changes

    @property
    def empty(self) -> bool:
        return not self.changes


def plan_host(
    policy: Policy,
    inventory: Inventory,
    observed_project: Project | None,
    observed_profile: Profile | None,
) -> HostPlan:
    """Compare the desired project and profile with LXD's (None: not there yet)."""
    want = desired_project(policy, inventory)
    profile = desired_profile(policy)
    kept = dict(observed_project.config) if observed_project else {}
    merged = Project(
        want.name,
        observed_project.description if observed_project else want.description,
        {**kept, **want.config},
    )
    return HostPlan(
        project=merged,
        profile=profile,
        create_project=observed_project is None,
        project_changes=tuple(project_changes(want, observed_project)),
        profile_changes=tuple(profile_changes(profile, observed_profile)),
    )
