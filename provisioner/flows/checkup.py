"""`ssp doctor`'s observing: it reads the host (LXD through the adapter, NVML through
`provisioner.gpu.nvml`, /sys, /dev, /proc and the subordinate-ID files) and hands each
observation to a pure check in `provisioner.doctor.checks` or `provisioner.doctor.gpus`, in order.

LXD-dependent checks are skipped, not failed, when LXD does not answer, so the first problem
is the one to fix. The paths it reads come in `HostPaths`, so tests point them at copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from provisioner.doctor import baseusers
from provisioner.doctor import checks as doctor
from provisioner.doctor import cluster as doctorcluster
from provisioner.doctor import gpus as doctorgpus
from provisioner.doctor.checks import Check, Need
from provisioner.doctor.gpus import DRIVER_QUERY, DriverInside, GpuContainer
from provisioner.gpu.nvml import driver_version, missing_device_nodes, read_gpus
from provisioner.host import subidfiles
from provisioner.host.ports import listening_ports
from provisioner.planning.hostproject import DEFAULT_PROFILE, desired_profile, desired_project
from provisioner.validation.config import Config
from provisioner.values import spec, subids
from provisioner.values.errors import GpuError, LxdError
from provisioner.values.gpuinventory import Gpu
from provisioner.values.idranges import IdMapUse
from provisioner.values.loaded import Loaded, resources
from provisioner.values.models import ContainerRequest, GpuEntry
from provisioner.values.policymodels import CloneImage, Policy
from provisioner.values.state import (
    ExecResult,
    HostApi,
    Instance,
    Pool,
    Profile,
    ServerInfo,
)

NVIDIA_VENDOR = "0x10de"
DISPLAY_CLASS = "0x03"  # PCI class 03: VGA (0300) and 3D controllers (0302, data-centre GPUs)
# Checked through LXD after lxd.reachable, in the order they are printed.
LXD_CHECKS = (
    "lxd.version",
    "project.config",
    "project.profile",
    "project.headroom",
    "lxd.network",
    "pool.space",
    "images.clones",
    "images.uids",
    "cluster.members",
    "pool.members",
)


class DoctorLxd(HostApi, Protocol):
    def project_usage(self) -> dict[str, tuple[int, int]]: ...

    def gpu_pci_addresses(self) -> frozenset[str]: ...

    def instances(self) -> list[Instance]: ...

    def execute(self, name: str, argv: Sequence[str], stdin: str | None = None) -> ExecResult: ...

    def source_config(self, source: str, project: str = "default") -> Profile | None: ...

    def id_maps(self) -> list[IdMapUse]: ...

    def member_name(self) -> str: ...
    def read_file(self, name: str, path: str, project: str = "default") -> bytes | None: ...


@dataclass(frozen=True)
class HostPaths:
    """Where the host's files are; tests point these at temporary copies."""

    subuid: Path = subids.SUBUID
    subgid: Path = subids.SUBGID
    sys: Path = Path("/sys")
    root: Path = Path("/")  # /dev/nvidia* and the share sources are looked up under it
    proc: Path = Path("/proc")


def nvidia_cards(sys_root: Path) -> list[str]:
    """PCI addresses (LXD's form, from /sys) of NVIDIA display devices on the bus."""
    out = []
    for dev in sorted((sys_root / "bus" / "pci" / "devices").glob("*")):
        try:
            vendor = (dev / "vendor").read_text(encoding="ascii").strip()
            klass = (dev / "class").read_text(encoding="ascii").strip()
        except OSError:
            continue
        if vendor == NVIDIA_VENDOR and klass.startswith(DISPLAY_CLASS):
            out.append(dev.name)
    return out


def gpu_containers(
    instances: Sequence[Instance], expected: Sequence[GpuEntry], lxd: DoctorLxd
) -> list[GpuContainer]:
    """`nvidia-smi -L` in each running managed container that has GPU devices."""
    uuid_by_pci = {g.pci: g.uuid for g in expected}
    out = []
    for inst in instances:
        pcis = [d.get("pci", "") for d in inst.devices.values() if d.get("type") == "gpu"]
        if not (inst.managed and inst.running and pcis):
            continue
        want = frozenset(uuid_by_pci.get(p, f"(no inventory GPU at {p})") for p in pcis)
        result: ExecResult | LxdError
        try:
            result = lxd.execute(inst.name, ["nvidia-smi", "-L"])
        except LxdError as e:
            result = e
        out.append(GpuContainer(inst.name, want, result))
    return out


def driver_inside(instances: Sequence[Instance], lxd: DoctorLxd) -> list[DriverInside]:
    """DRIVER_QUERY in each running managed container that has GPU devices."""
    out = []
    for inst in instances:
        gpus = [d for d in inst.devices.values() if d.get("type") == "gpu"]
        if not (inst.managed and inst.running and gpus):
            continue
        result: ExecResult | LxdError
        try:
            result = lxd.execute(inst.name, list(DRIVER_QUERY))
        except LxdError as e:
            result = e
        out.append(DriverInside(inst.name, result))
    return out


def _driver_check(
    cards: Sequence[str], instances: Sequence[Instance], lxd: DoctorLxd, policy: Policy
) -> Check:
    """The host's driver version (NVML) against the userspace in each running GPU container."""
    host: str | GpuError = GpuError("not read")
    if cards:
        try:
            host = driver_version()
        except GpuError as e:
            host = e
    inside = driver_inside(instances, lxd) if cards else []
    return doctorgpus.check_driver_versions(
        cards, host, inside, policy.gpu_userspace, policy.lxd.project
    )


def forwards(instances: Sequence[Instance]) -> list[tuple[str, int]]:
    """(instance, host port) of every proxy device on running managed containers."""
    return [
        (inst.name, port)
        for inst in instances
        if inst.managed and inst.running
        for device in inst.devices.values()
        if (port := spec.listen_port(device)) is not None
    ]


def shared_forwards(policy: Policy) -> list[tuple[str, int]]:
    """(instance, host port) of each shared server's SSH port: the admin forwards it by hand
    (the server is not ssp's), and every account's login goes through it."""
    return [(s.instance, s.ssh_port) for s in policy.shared_servers.values() if s.ssh_port]


def _lxd_checks(
    config: Config, valid: Sequence[Loaded], lxd: DoctorLxd, server: ServerInfo
) -> tuple[list[Check], list[Instance] | None]:
    policy = config.policy
    checks = [doctor.check_version(server)]
    project = lxd.read_project()
    checks.append(doctor.check_project(desired_project(policy, config.inventory), project))
    instances = None
    need = Need()
    if project is None:
        why = f"no project {policy.lxd.project!r} (see project.config)"
        checks += [doctor.skipped("project.profile", why), doctor.skipped("project.headroom", why)]
    else:
        profile = lxd.read_profile(DEFAULT_PROFILE)
        checks.append(doctor.check_profile(desired_profile(policy), profile, project.name))
        instances = lxd.instances()
        need = doctor.pending_need(config, valid, {i.name for i in instances})
        checks.append(doctor.check_headroom(lxd.project_usage(), need, project.name))
    checks.append(doctor.check_network(policy.lxd.network, lxd.network_exists(policy.lxd.network)))
    declared = sum(
        resources(i.request, policy, config.inventory).disk
        for i in valid
        if isinstance(i.request, ContainerRequest)
    )
    pool = lxd.storage_pool(policy.lxd.pool)
    checks.append(doctor.check_pool(policy.lxd.pool, pool, need, declared))
    clones = {i.clone for i in policy.images.values() if isinstance(i, CloneImage)}
    checks.append(doctor.check_clone_sources({c: lxd.source_config(c) for c in sorted(clones)}))
    checks.append(base_uids(policy, clones, lxd))
    members = lxd.members()
    online = [m for m, status in sorted(members.items()) if status == doctorcluster.ONLINE]
    pools: dict[str, Pool | None] = {}
    silent: dict[str, str] = {}
    for member in online:
        # A member that is going away is still listed Online for a while (about 20 s on
        # 5.0.2) while requests for it fail: that is this check's finding, not an error.
        try:
            pools[member] = lxd.storage_pool(policy.lxd.pool, member=member)
        except LxdError as e:
            silent[member] = str(e)
    checks.append(doctorcluster.check_members(members, config.inventory, silent))
    checks.append(doctorcluster.check_member_pools(policy.lxd.pool, pools))
    return checks, instances


def _lxd_part(
    config: Config, valid: Sequence[Loaded], lxd: DoctorLxd, where: str
) -> tuple[ServerInfo | None, list[Instance] | None, list[Check]]:
    """The server (None: LXD does not answer), the project's instances and the LXD checks."""
    server: ServerInfo | None = None
    instances: list[Instance] | None = None
    try:
        server = lxd.server()
    except LxdError as e:
        checks = [doctor.check_reachable(e, where)]
        down = "LXD does not answer (see lxd.reachable)"
        checks += [doctor.skipped(name, down) for name in LXD_CHECKS]
    else:
        try:
            found, instances = _lxd_checks(config, valid, lxd, server)
            checks = [doctor.check_reachable(None, where), *found]
        except LxdError as e:
            # LXD answered, then a request failed: in a cluster, a member going away.
            server, instances = None, None
            checks = [doctor.check_reachable(LxdError(f"{e} (it answered at first)"), where)]
            down = "LXD stopped answering (see lxd.reachable)"
            checks += [doctor.skipped(name, down) for name in LXD_CHECKS]
    return server, instances, checks


def base_uids(policy: Policy, clones: set[str], lxd: DoctorLxd) -> Check:
    """The bases' and shared servers' /etc/passwd against the members' UIDs (the file of a
    clone base's instance: its snapshot is taken from it and the files API reads instances)."""
    bases = {(c.partition("/")[0], "default") for c in clones}
    bases |= {(s.instance, s.project) for s in policy.shared_servers.values()}
    passwds: dict[str, str | None] = {}
    for name, project in sorted(bases):
        raw = lxd.read_file(name, "/etc/passwd", project)
        label = name if project == "default" else f"{name} (project {project})"
        passwds[label] = None if raw is None else raw.decode("utf-8", "replace")
    return baseusers.check_base_uids(passwds, {k: u.uid for k, u in policy.users.items()})


def examine(
    config: Config,
    valid: Sequence[Loaded],
    lxd: DoctorLxd,
    where: str,
    paths: HostPaths = HostPaths(),
) -> list[Check]:
    """Every check, in order; LXD-dependent ones are skipped when LXD does not answer."""
    policy = config.policy
    server, instances, checks = _lxd_part(config, valid, lxd, where)
    # This server's GPUs are held against its own entry: in a cluster, the member's.
    here = lxd.member_name() if server is not None else ""
    hosts = [config.inventory.hosts[here]] if here in config.inventory.hosts else None
    expected = [g for host in hosts or config.inventory.hosts.values() for g in host.gpus]
    sources = sorted({s.source for s in policy.shares.values()})
    checks.append(doctor.check_shares(sources, lambda p: (paths.root / p.lstrip("/")).is_dir()))
    texts = {str(p): subidfiles.read(p) for p in (paths.subuid, paths.subgid)}
    checks.append(doctor.check_subids(texts, [u.uid for u in policy.users.values()]))
    if server is None:
        checks.append(doctor.skipped("idmaps.overlap", "LXD does not answer (see lxd.reachable)"))
    else:
        spans = subids.id_spans(texts[str(paths.subuid)], texts[str(paths.subgid)])
        checks.append(doctor.check_idmaps(lxd.id_maps(), spans))

    cards = nvidia_cards(paths.sys)
    live: list[Gpu] | GpuError = []
    if cards:
        try:
            live = read_gpus()
        except GpuError as e:
            live = e
    checks.append(doctorgpus.check_nvml(cards, live, expected))
    checks.append(doctorgpus.check_nodes(cards, missing_device_nodes(paths.root) if cards else []))
    checks.append(doctorgpus.check_inventory(cards, live, expected))
    if cards and server is None:
        checks.append(doctor.skipped("gpu.lxd", "LXD does not answer (see lxd.reachable)"))
    else:
        seen = lxd.gpu_pci_addresses() if cards else frozenset()
        checks.append(doctorgpus.check_lxd_gpus(cards, seen, expected))
    if instances is None:
        why = "LXD does not answer" if server is None else "no project (see project.config)"
        checks += [doctor.skipped(n, why) for n in ("gpu.containers", "gpu.driver")]
        checks.append(doctor.skipped("ports.listening", why))
    else:
        checks.append(doctorgpus.check_gpu_containers(gpu_containers(instances, expected, lxd)))
        checks.append(_driver_check(cards, instances, lxd, policy))
        ports = forwards(instances) + shared_forwards(policy)
        checks.append(doctor.check_ports(ports, listening_ports(paths.proc)))
    return checks
