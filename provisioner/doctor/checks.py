"""`ssp doctor`'s checks as data: each says ok, problem, n/a or skipped, what it saw, and how to
fix a problem.

Pure: each check function takes what was observed and returns a `Check`;
`provisioner.flows.checkup` does the observing (LXD, NVML, /sys, /dev, /proc, the subordinate-ID
files) and calls them in order; the GPU checks are in `provisioner.doctor.gpus`. A check that
cannot run because an earlier one failed (no LXD, no NVML) is `skipped`, not ok; a check
about hardware this host does not have is `n/a`. The host is healthy when every check is ok
or n/a.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from provisioner.planning.hostproject import profile_changes, project_changes
from provisioner.validation.config import Config
from provisioner.values import idranges, subids
from provisioner.values.errors import LxdError
from provisioner.values.idranges import IdMapUse, IdRange
from provisioner.values.loaded import Loaded, resources
from provisioner.values.models import ContainerRequest
from provisioner.values.sizes import amount, human_size
from provisioner.values.state import Pool, Profile, Project, ServerInfo

MIN_VERSION = (5, 0)
# API extensions whose keys or endpoints ssp relies on (all present in LXD 5.0).
REQUIRED_EXTENSIONS = {
    "projects": "the ssp project",
    "projects_restrictions": "restricted projects",
    "projects_limits": "project limits",
    "projects_limits_instances": "limits.instances",
    "projects_limits_disk": "limits.disk",
    "projects_restricted_backups_and_snapshots": "restricted.snapshots",
    "projects_restricted_intercept": "restricted.containers.interception",
    "projects_networks_restricted_access": "restricted.networks.access",
    "container_copy_project": "clones of the base in the default project",
    "gpu_devices": "gpu devices",
    "resources_gpu": "the GPUs LXD sees",
    "snapshot_scheduling": "snapshots.schedule",
    "snapshot_expiry": "snapshots.expiry",
}
POOL_FULL = 0.9  # a pool this full fails containers' writes soon; say so before it does


class Status(StrEnum):
    OK = "ok"
    PROBLEM = "problem"
    NA = "n/a"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def healthy(checks: Sequence[Check]) -> bool:
    return all(c.status in (Status.OK, Status.NA) for c in checks)


def passed(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def problem_found(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.PROBLEM, detail, fix)


def not_applicable(name: str, detail: str) -> Check:
    return Check(name, Status.NA, detail)


def skipped(name: str, why: str) -> Check:
    return Check(name, Status.SKIPPED, why)


HOST_INIT = "run `ssp host init` on the host (`--dry-run` first shows what it changes)"


def check_reachable(error: LxdError | None, where: str) -> Check:
    if error is None:
        return passed("lxd.reachable", f"LXD answers at {where}")
    return problem_found(
        "lxd.reachable",
        str(error),
        "start LXD (`systemctl start lxd.service`; snap: `snap start lxd`); after a power cut "
        "see the admin guide, 'Recover after a power cut'",
    )


# --- LXD and its project ----------------------------------------------------------------------


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def check_version(server: ServerInfo) -> Check:
    name = "lxd.version"
    missing = sorted(set(REQUIRED_EXTENSIONS) - server.api_extensions)
    if _version(server.version) < MIN_VERSION:
        return problem_found(
            name,
            f"LXD {server.version or '(unknown version)'} is older than 5.0",
            "upgrade LXD to 5.0 LTS or newer (Debian 12: `apt install lxd`; snap: "
            "`snap refresh lxd --channel=5.0/stable`)",
        )
    if missing:
        needs = ", ".join(f"{e} ({REQUIRED_EXTENSIONS[e]})" for e in missing)
        return problem_found(
            name, f"LXD {server.version} lacks API extensions: {needs}", "upgrade LXD"
        )
    return passed(
        name, f"LXD {server.version} has the {len(REQUIRED_EXTENSIONS)} API extensions ssp uses"
    )


def check_project(desired: Project, observed: Project | None) -> Check:
    name = "project.config"
    if observed is None:
        return problem_found(name, f"LXD project {desired.name!r} does not exist", HOST_INIT)
    changes = project_changes(desired, observed)
    if changes:
        return problem_found(
            name,
            f"{len(changes)} restrictions or limits differ from the policy: "
            + "; ".join(str(c) for c in changes),
            HOST_INIT,
        )
    return passed(name, f"project {desired.name!r} is restricted and limited as the policy asks")


def check_profile(desired: Profile, observed: Profile | None, project: str) -> Check:
    name = "project.profile"
    changes = profile_changes(desired, observed)
    if changes:
        return problem_found(
            name, "the default profile differs: " + "; ".join(str(c) for c in changes), HOST_INIT
        )
    return passed(name, f"the default profile of project {project!r} is as the policy asks")


@dataclass(frozen=True)
class Need:
    """What the requests not yet created will take from the project and the pool."""

    containers: int = 0
    cpu: int = 0
    memory: int = 0
    disk: int = 0


def pending_need(config: Config, valid: Sequence[Loaded], existing: set[str]) -> Need:
    need = Need()
    for item in valid:
        req = item.request
        if isinstance(req, ContainerRequest) and req.name not in existing:
            res = resources(req, config.policy, config.inventory)
            need = Need(
                need.containers + 1,
                need.cpu + res.cpu,
                need.memory + res.memory,
                need.disk + res.disk,
            )
    return need


def check_headroom(usage: Mapping[str, tuple[int, int]], need: Need, project: str) -> Check:
    """Stopped and retired containers count against project limits until they are deleted."""
    name = "project.headroom"
    wanted = {"instances": need.containers, "cpu": need.cpu, "memory": need.memory}
    wanted["disk"] = need.disk
    short = []
    for resource, more in wanted.items():
        limit, used = usage.get(resource, (-1, 0))
        if limit >= 0 and (used >= limit or used + more > limit):
            short.append(
                f"{resource}: {amount(resource, used)} of {amount(resource, limit)} used"
                + (f", the requests not yet created need {amount(resource, more)}" if more else "")
            )
    if short:
        return problem_found(
            name,
            "; ".join(short),
            "retired containers keep their share until deleted: delete those no one needs "
            f"(`lxc delete --project {project} NAME`), or raise the host's figures in "
            "config/hosts.yaml and run `ssp host init`",
        )
    shown = [
        f"{r} {amount(r, used)}/{amount(r, limit)}"
        for r, (limit, used) in sorted(usage.items())
        if limit >= 0 and r in wanted
    ]
    pending = " (with room for the requests not yet created)" if need.containers else ""
    return passed(name, "used of the project's limits: " + ", ".join(shown) + pending)


def check_network(network: str, exists: bool) -> Check:
    if exists:
        return passed("lxd.network", f"network {network!r} exists")
    return problem_found(
        "lxd.network",
        f"network {network!r} (lxd.network in config/policy.yaml) does not exist",
        f"create it (`lxc network create {network}`) or name an existing one in the policy",
    )


def check_pool(name: str, pool: Pool | None, need: Need, declared: int) -> Check:
    check = "pool.space"
    if pool is None:
        return problem_found(
            check,
            f"storage pool {name!r} (lxd.pool in config/policy.yaml) does not exist",
            f"create it (`lxc storage create {name} zfs`) or name an existing one in the policy",
        )
    free, total = human_size(pool.free), human_size(pool.total)
    fix = (
        "free space (delete retired containers and old snapshots) or grow the pool "
        "(see the admin guide, 'Expand the storage pool')"
    )
    if pool.free < need.disk:
        return problem_found(
            check,
            f"pool {name!r} has {free} free; the requests not yet created need "
            f"{human_size(need.disk)}",
            fix,
        )
    if pool.total and pool.used >= POOL_FULL * pool.total:
        return problem_found(
            check, f"pool {name!r} is {100 * pool.used // pool.total}% full ({free} free)", fix
        )
    return passed(
        check,
        f"pool {name!r} ({pool.driver}): {free} free of {total}; root disks the requests "
        f"declare: {human_size(declared)}, of which not created yet: {human_size(need.disk)}",
    )


# LXD 5.0.2 does not apply project restrictions to a copy: a clone of a privileged base with
# raw.lxc and an /etc disk was created in a restricted project and started (seen here). apply
# replaces what a clone inherits before its first start, but the base itself must be clean.
CLONE_DEVICES = ("unix-char", "unix-block", "unix-hotplug", "usb", "pci", "gpu", "infiniband")


def _unsafe(base: Profile) -> list[str]:
    found = [
        f"{key}={value}"
        for key, value in sorted(base.config.items())
        if key.startswith("raw.")
        or (key in ("security.privileged", "security.nesting") and value == "true")
    ]
    for name, device in sorted(base.devices.items()):
        kind = device.get("type", "")
        if kind in CLONE_DEVICES or (
            kind == "disk" and device.get("source") and not device.get("pool")
        ):
            found.append(
                f"device {name} ({kind}{' ' + device['source'] if 'source' in device else ''})"
            )
    return found


def check_clone_sources(bases: Mapping[str, Profile | None]) -> Check:
    """The instances or snapshots the policy's images clone (in the default project)."""
    name = "images.clones"
    if not bases:
        return not_applicable(name, "the policy's images are all image aliases, nothing is cloned")
    missing = sorted(source for source, base in bases.items() if base is None)
    unsafe = {source: _unsafe(base) for source, base in bases.items() if base is not None}
    wrong = [f"{source} does not exist in the default project" for source in missing]
    wrong += [
        f"{source} has {', '.join(found)}" for source, found in sorted(unsafe.items()) if found
    ]
    if wrong:
        return problem_found(
            name,
            "; ".join(wrong),
            "clean the base and take its snapshot again (`lxc config unset`, `lxc config device "
            "remove`, `lxc snapshot`): LXD 5.0 does not apply the project's restrictions to "
            "a copy, so a clone would inherit these until apply replaces them",
        )
    return passed(
        name, f"{len(bases)} clone source(s) carry no privileged, raw or host-device keys"
    )


# --- the host's files ---------------------------------------------------------------------------


def check_shares(sources: Sequence[str], is_dir: Callable[[str], bool]) -> Check:
    name = "shares.sources"
    if not sources:
        return not_applicable(name, "the policy has no shares")
    missing = [s for s in sources if not is_dir(s)]
    if missing:
        return problem_found(
            name,
            "share sources that are not directories on this host: " + ", ".join(missing),
            "create them (`mkdir -p DIR`, owned as the lab wants) or fix shares in "
            "config/policy.yaml; a container with a missing share does not start",
        )
    return passed(name, f"{len(sources)} share source(s) exist: " + ", ".join(sources))


def check_subids(texts: Mapping[str, str], uids: Sequence[int]) -> Check:
    name = "subids.delegated"
    wrong = []
    for path, text in texts.items():
        ranges = subids.parse(text)
        if not subids.has_map_range(ranges):
            wrong.append(f"{path} has no range of {subids.MAP_MIN}+ IDs for root")
        missing = subids.undelegated(ranges, uids)
        if missing:
            wrong.append(f"{path} does not delegate UIDs {', '.join(map(str, missing))} to root")
    if wrong:
        return problem_found(
            name,
            "; ".join(wrong),
            f"{HOST_INIT}, then restart LXD: containers sharing folders as these members "
            "fail to start until then",
        )
    return passed(name, f"the members' {len(set(uids))} UIDs are delegated to root for LXD")


def check_idmaps(uses: Sequence[IdMapUse], spans: Sequence[IdRange]) -> Check:
    """No two instances on the host (any project) share host IDs, and isolated blocks lie
    inside root's subordinate IDs (outside them a container cannot start)."""
    name = "idmaps.overlap"
    wrong = [o.describe() for o in idranges.overlaps(uses)]
    for use in sorted(uses, key=lambda u: u.label):
        outside = [r for r in use.ranges() if use.isolated and not any(r.within(s) for s in spans)]
        wrong += [f"{use.label} maps host IDs {r} outside root's usable range" for r in outside]
    if wrong:
        return problem_found(
            name,
            "; ".join(wrong),
            "where the project allows low-level keys, `ssp apply` moves the later of its own "
            "containers to a free block and restarts it, and for others `lxc config set "
            "[--project P] NAME security.idmap.base=<a free base>` and a restart does it (files "
            "are re-owned on start); in ssp's restricted project, stop the later container, "
            "`lxc copy --project P NAME NAME-new` (LXD gives the copy a free block), then "
            "delete NAME and `lxc move --project P NAME-new NAME`",
        )
    isolated = sum(u.isolated for u in uses)
    return passed(name, f"{isolated} isolated instance(s), each with host IDs of its own")


def check_ports(forwards: Sequence[tuple[str, int]], listening: frozenset[int]) -> Check:
    name = "ports.listening"
    if not forwards:
        return not_applicable(name, "no running managed container or shared server forwards a port")
    down = [f"{inst}:{port}" for inst, port in forwards if port not in listening]
    if down:
        return problem_found(
            name,
            "forwarded ports not listening on the host: " + ", ".join(down),
            "restart the container (`lxc restart --project PROJECT NAME`) and read "
            "`lxc info --show-log NAME`; another process may hold the port. A shared server's "
            "ssh_port needs a proxy device on it (`lxc config device add SERVER ssh proxy "
            "listen=tcp:0.0.0.0:PORT connect=tcp:127.0.0.1:22`)",
        )
    return passed(name, f"{len(forwards)} forwarded port(s) listen")
