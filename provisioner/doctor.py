"""`ssp doctor`'s checks as data: each says ok, problem, n/a or skipped, what it saw, and how to
fix a problem.

Pure: each check function takes what was observed and returns a `Check`;
`provisioner.commands.doctor` does the observing (LXD, NVML, /sys, /dev, /proc, the
subordinate-ID files) and calls them in order. A check that cannot run because an earlier one
failed (no LXD, no NVML) is `skipped`, not ok; a check about hardware this host does not have
is `n/a`. The host is healthy when every check is ok or n/a.

GPU checks are n/a when no NVIDIA display device is on the PCI bus (read from /sys, not from
NVML): a GPU host whose driver is broken still has its cards on the bus, so there the broken
driver is a problem, while a development machine without GPUs is simply not a GPU host.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from provisioner import idranges, subids
from provisioner.config import Config
from provisioner.errors import GpuError, LxdError
from provisioner.gpus import Gpu, compare_inventory
from provisioner.host import Pool, Profile, Project, ServerInfo, profile_changes, project_changes
from provisioner.idranges import IdMapUse, IdRange
from provisioner.models import ContainerRequest, GpuEntry
from provisioner.rules import Loaded, resources
from provisioner.state import ExecResult

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


def _ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def _problem(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.PROBLEM, detail, fix)


def _na(name: str, detail: str) -> Check:
    return Check(name, Status.NA, detail)


def skipped(name: str, why: str) -> Check:
    return Check(name, Status.SKIPPED, why)


HOST_INIT = "run `ssp host init` on the host (`--dry-run` first shows what it changes)"


def check_reachable(error: LxdError | None, where: str) -> Check:
    if error is None:
        return _ok("lxd.reachable", f"LXD answers at {where}")
    return _problem(
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
        return _problem(
            name,
            f"LXD {server.version or '(unknown version)'} is older than 5.0",
            "upgrade LXD to 5.0 LTS or newer (Debian 12: `apt install lxd`; snap: "
            "`snap refresh lxd --channel=5.0/stable`)",
        )
    if missing:
        needs = ", ".join(f"{e} ({REQUIRED_EXTENSIONS[e]})" for e in missing)
        return _problem(name, f"LXD {server.version} lacks API extensions: {needs}", "upgrade LXD")
    return _ok(
        name, f"LXD {server.version} has the {len(REQUIRED_EXTENSIONS)} API extensions ssp uses"
    )


def check_project(desired: Project, observed: Project | None) -> Check:
    name = "project.config"
    if observed is None:
        return _problem(name, f"LXD project {desired.name!r} does not exist", HOST_INIT)
    changes = project_changes(desired, observed)
    if changes:
        return _problem(
            name,
            f"{len(changes)} restrictions or limits differ from the policy: "
            + "; ".join(str(c) for c in changes),
            HOST_INIT,
        )
    return _ok(name, f"project {desired.name!r} is restricted and limited as the policy asks")


def check_profile(desired: Profile, observed: Profile | None, project: str) -> Check:
    name = "project.profile"
    changes = profile_changes(desired, observed)
    if changes:
        return _problem(
            name, "the default profile differs: " + "; ".join(str(c) for c in changes), HOST_INIT
        )
    return _ok(name, f"the default profile of project {project!r} is as the policy asks")


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


def human(n: int) -> str:
    """Bytes for a reader: 245123456789 → "228.3GiB" (sizes LXD reports are not round)."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f}{unit}".replace(".0" + unit, unit)
    return f"{n}B" if n else "0"


def _amount(resource: str, n: int) -> str:
    return human(n) if resource in ("memory", "disk") else str(n)


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
                f"{resource}: {_amount(resource, used)} of {_amount(resource, limit)} used"
                + (f", the requests not yet created need {_amount(resource, more)}" if more else "")
            )
    if short:
        return _problem(
            name,
            "; ".join(short),
            "retired containers keep their share until deleted: delete those no one needs "
            f"(`lxc delete --project {project} NAME`), or raise the host's figures in "
            "config/hosts.yaml and run `ssp host init`",
        )
    shown = [
        f"{r} {_amount(r, used)}/{_amount(r, limit)}"
        for r, (limit, used) in sorted(usage.items())
        if limit >= 0 and r in wanted
    ]
    pending = " (with room for the requests not yet created)" if need.containers else ""
    return _ok(name, "used of the project's limits: " + ", ".join(shown) + pending)


def check_network(network: str, exists: bool) -> Check:
    if exists:
        return _ok("lxd.network", f"network {network!r} exists")
    return _problem(
        "lxd.network",
        f"network {network!r} (lxd.network in config/policy.yaml) does not exist",
        f"create it (`lxc network create {network}`) or name an existing one in the policy",
    )


def check_pool(name: str, pool: Pool | None, need: Need, declared: int) -> Check:
    check = "pool.space"
    if pool is None:
        return _problem(
            check,
            f"storage pool {name!r} (lxd.pool in config/policy.yaml) does not exist",
            f"create it (`lxc storage create {name} zfs`) or name an existing one in the policy",
        )
    free, total = human(pool.free), human(pool.total)
    fix = (
        "free space (delete retired containers and old snapshots) or grow the pool "
        "(see the admin guide, 'Expand the storage pool')"
    )
    if pool.free < need.disk:
        return _problem(
            check,
            f"pool {name!r} has {free} free; the requests not yet created need {human(need.disk)}",
            fix,
        )
    if pool.total and pool.used >= POOL_FULL * pool.total:
        return _problem(
            check, f"pool {name!r} is {100 * pool.used // pool.total}% full ({free} free)", fix
        )
    return _ok(
        check,
        f"pool {name!r} ({pool.driver}): {free} free of {total}; root disks the requests "
        f"declare: {human(declared)}, of which not created yet: {human(need.disk)}",
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
        return _na(name, "the policy's images are all image aliases, nothing is cloned")
    missing = sorted(source for source, base in bases.items() if base is None)
    unsafe = {source: _unsafe(base) for source, base in bases.items() if base is not None}
    wrong = [f"{source} does not exist in the default project" for source in missing]
    wrong += [
        f"{source} has {', '.join(found)}" for source, found in sorted(unsafe.items()) if found
    ]
    if wrong:
        return _problem(
            name,
            "; ".join(wrong),
            "clean the base and take its snapshot again (`lxc config unset`, `lxc config device "
            "remove`, `lxc snapshot`): LXD 5.0 does not apply the project's restrictions to "
            "a copy, so a clone would inherit these until apply replaces them",
        )
    return _ok(name, f"{len(bases)} clone source(s) carry no privileged, raw or host-device keys")


# --- the host's files ---------------------------------------------------------------------------


def check_shares(sources: Sequence[str], is_dir: Callable[[str], bool]) -> Check:
    name = "shares.sources"
    if not sources:
        return _na(name, "the policy has no shares")
    missing = [s for s in sources if not is_dir(s)]
    if missing:
        return _problem(
            name,
            "share sources that are not directories on this host: " + ", ".join(missing),
            "create them (`mkdir -p DIR`, owned as the lab wants) or fix shares in "
            "config/policy.yaml; a container with a missing share does not start",
        )
    return _ok(name, f"{len(sources)} share source(s) exist: " + ", ".join(sources))


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
        return _problem(
            name,
            "; ".join(wrong),
            f"{HOST_INIT}, then restart LXD: containers sharing folders as these members "
            "fail to start until then",
        )
    return _ok(name, f"the members' {len(set(uids))} UIDs are delegated to root for LXD")


def check_idmaps(uses: Sequence[IdMapUse], spans: Sequence[IdRange]) -> Check:
    """No two instances on the host (any project) share host IDs, and isolated blocks lie
    inside root's subordinate IDs (outside them a container cannot start)."""
    name = "idmaps.overlap"
    wrong = [o.describe() for o in idranges.overlaps(uses)]
    for use in sorted(uses, key=lambda u: u.label):
        outside = [r for r in use.ranges() if use.isolated and not any(r.within(s) for s in spans)]
        wrong += [f"{use.label} maps host IDs {r} outside root's usable range" for r in outside]
    if wrong:
        return _problem(
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
    return _ok(name, f"{isolated} isolated instance(s), each with host IDs of its own")


# --- GPUs -----------------------------------------------------------------------------------------


def _no_cards(name: str, expected: Sequence[GpuEntry]) -> Check:
    detail = "no NVIDIA GPU on this host's PCI bus"
    if expected:
        detail += (
            f" (config/hosts.yaml lists {len(expected)}: if this is the GPU server, its cards "
            "are not visible; check `lspci -d 10de:`)"
        )
    return _na(name, detail)


def check_nvml(
    cards: Sequence[str], live: Sequence[Gpu] | GpuError, expected: Sequence[GpuEntry]
) -> Check:
    name = "gpu.nvml"
    if not cards:
        return _no_cards(name, expected)
    if isinstance(live, GpuError):
        return _problem(name, str(live), "fix the driver until `nvidia-smi` lists every card")
    if len(live) != len(cards):
        return _problem(
            name,
            f"NVML sees {len(live)} of the {len(cards)} NVIDIA cards on the PCI bus",
            "check `nvidia-smi` and the kernel log (`dmesg | grep -i nvrm`); a card that fell "
            "off the bus needs a reboot or a replacement",
        )
    return _ok(name, f"NVML sees {len(live)} GPU(s): " + ", ".join(sorted({g.model for g in live})))


def check_nodes(cards: Sequence[str], missing: Sequence[str]) -> Check:
    name = "gpu.nodes"
    if not cards:
        return _na(name, "no NVIDIA GPU on this host")
    if missing:
        return _problem(
            name,
            "missing: " + ", ".join(missing) + " (containers started now get no CUDA)",
            "run `nvidia-modprobe -u -c=0` and `nvidia-smi`, install the boot unit "
            "(`runner/install-gpu-unit.sh`), then restart the GPU containers",
        )
    return _ok(name, "/dev/nvidiactl and /dev/nvidia-uvm exist")


def check_inventory(
    cards: Sequence[str], live: Sequence[Gpu] | GpuError, expected: Sequence[GpuEntry]
) -> Check:
    name = "gpu.inventory"
    if not cards:
        return _na(name, "no NVIDIA GPU on this host")
    if isinstance(live, GpuError):
        return skipped(name, "NVML is not usable (see gpu.nvml)")
    diff = compare_inventory(live, expected)
    if not diff.ok:
        return _problem(
            name,
            "; ".join(diff.lines()),
            "if a card was replaced or moved on purpose, run `ssp gpus --write` and commit "
            "config/hosts.yaml; until then apply attaches no GPUs",
        )
    return _ok(name, f"the {len(expected)} GPUs match config/hosts.yaml by PCI address and UUID")


def check_lxd_gpus(
    cards: Sequence[str], seen: frozenset[str], expected: Sequence[GpuEntry]
) -> Check:
    name = "gpu.lxd"
    if not cards:
        return _na(name, "no NVIDIA GPU on this host")
    missing = sorted({g.pci for g in expected} - seen)
    if missing:
        return _problem(
            name,
            "LXD does not see GPUs at " + ", ".join(missing) + " (a gpu device there fails)",
            "compare `lxc info --resources` with `nvidia-smi`; restart LXD after a driver change",
        )
    return _ok(name, f"LXD sees the inventory's {len(expected)} GPUs by PCI address")


@dataclass(frozen=True)
class GpuContainer:
    """A running GPU container, the UUIDs it should see, and `nvidia-smi -L` inside it."""

    name: str
    expected: frozenset[str]
    result: ExecResult | LxdError


def _uuids(listing: str) -> set[str]:
    return {w.strip("()") for w in listing.split() if w.strip("()").startswith("GPU-")}


def check_gpu_containers(containers: Sequence[GpuContainer]) -> Check:
    name = "gpu.containers"
    if not containers:
        return _na(name, "no running container has a GPU")
    wrong = []
    for c in containers:
        if isinstance(c.result, LxdError):
            wrong.append(f"{c.name}: {c.result}")
        elif c.result.exit_code != 0:
            out = (c.result.stderr or c.result.stdout).strip().splitlines()
            wrong.append(
                f"{c.name}: nvidia-smi -L exit {c.result.exit_code}: {out[-1] if out else ''}"
            )
        elif _uuids(c.result.stdout) != c.expected:
            seen = sorted(_uuids(c.result.stdout))
            wrong.append(
                f"{c.name} sees {', '.join(seen) or 'no GPU'}, not {', '.join(sorted(c.expected))}"
            )
    if wrong:
        return _problem(
            name,
            "; ".join(wrong),
            "fix gpu.nodes first, then restart each container named (`lxc restart --project "
            "PROJECT NAME`); LXD passes through only the nodes present when it starts",
        )
    return _ok(name, f"{len(containers)} GPU container(s) see exactly their GPUs")


def check_ports(forwards: Sequence[tuple[str, int]], listening: frozenset[int]) -> Check:
    name = "ports.listening"
    if not forwards:
        return _na(name, "no running managed container or shared server forwards a port")
    down = [f"{inst}:{port}" for inst, port in forwards if port not in listening]
    if down:
        return _problem(
            name,
            "forwarded ports not listening on the host: " + ", ".join(down),
            "restart the container (`lxc restart --project PROJECT NAME`) and read "
            "`lxc info --show-log NAME`; another process may hold the port. A shared server's "
            "ssh_port needs a proxy device on it (`lxc config device add SERVER ssh proxy "
            "listen=tcp:0.0.0.0:PORT connect=tcp:127.0.0.1:22`)",
        )
    return _ok(name, f"{len(forwards)} forwarded port(s) listen")
