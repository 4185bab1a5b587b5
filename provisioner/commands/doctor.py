"""`ssp doctor`: one command an admin runs on the GPU host when something is off.

It observes (LXD through the adapter, NVML through `provisioner.gpus`, /sys, /dev, /proc and
the subordinate-ID files) and hands each observation to a pure check in `provisioner.doctor`,
then prints one line per check: ok, problem (with how to fix it), n/a (hardware this host does
not have) or skipped (an earlier check failed). LXD-dependent checks are skipped, not failed,
when LXD does not answer, so the first problem is the one to fix.

Exit statuses: 0 healthy (every check ok or n/a), 1 a problem or a skipped check, or an
invalid config/ in the checkout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from provisioner import doctor, repocheck, spec, subids
from provisioner.commands import add_repo_arg, clock, examples, load_main
from provisioner.config import Config
from provisioner.doctor import Check, GpuContainer, Need, Status
from provisioner.errors import GithubError, GpuError, LxdError, UsageError
from provisioner.escape import log_line
from provisioner.gpus import Gpu, missing_device_nodes, read_gpus
from provisioner.host import (
    DEFAULT_PROFILE,
    HostApi,
    Profile,
    ServerInfo,
    desired_profile,
    desired_project,
)
from provisioner.hostports import listening_ports
from provisioner.idranges import IdMapUse
from provisioner.models import CloneImage, ContainerRequest, GpuEntry, Policy
from provisioner.rules import Loaded, resources
from provisioner.state import ExecResult, Instance

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
)
MARK = {Status.OK: "ok", Status.PROBLEM: "PROBLEM", Status.NA: "n/a", Status.SKIPPED: "skipped"}


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "doctor",
        help="check the GPU host: LXD, the project, pool, GPUs, ports, subordinate UIDs",
        description="Check the host this runs on against the checkout's policy and inventory; "
        "every problem comes with how to fix it.",
        **examples(
            "sudo ssp doctor  # check this host",
            "ssp doctor --format json  # the same, for scripts",
            "ssp doctor --github  # also check the GitHub token, repository and labels",
            status="Exit status: 0 healthy, 1 a problem (or a check that could not run).",
        ),
    )
    add_repo_arg(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--github",
        action="store_true",
        help="check the GitHub repository's settings instead of the host (GITHUB_TOKEN with "
        "administration read access, GITHUB_REPOSITORY, GITHUB_API_URL)",
    )
    parser.set_defaults(func=run)


class DoctorLxd(HostApi, Protocol):
    def project_usage(self) -> dict[str, tuple[int, int]]: ...

    def gpu_pci_addresses(self) -> frozenset[str]: ...

    def instances(self) -> list[Instance]: ...

    def execute(self, name: str, argv: Sequence[str], stdin: str | None = None) -> ExecResult: ...

    def source_config(self, source: str, project: str = "default") -> Profile | None: ...

    def id_maps(self) -> list[IdMapUse]: ...


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
    return checks, instances


def examine(
    config: Config,
    valid: Sequence[Loaded],
    lxd: DoctorLxd,
    where: str,
    paths: HostPaths = HostPaths(),
) -> list[Check]:
    """Every check, in order; LXD-dependent ones are skipped when LXD does not answer."""
    policy = config.policy
    expected = [g for host in config.inventory.hosts.values() for g in host.gpus]
    server = None
    instances: list[Instance] | None = None
    try:
        server = lxd.server()
    except LxdError as e:
        checks = [doctor.check_reachable(e, where)]
        down = "LXD does not answer (see lxd.reachable)"
        checks += [doctor.skipped(name, down) for name in LXD_CHECKS]
    else:
        checks = [doctor.check_reachable(None, where)]
        found, instances = _lxd_checks(config, valid, lxd, server)
        checks += found

    sources = sorted({s.source for s in policy.shares.values()})
    checks.append(doctor.check_shares(sources, lambda p: (paths.root / p.lstrip("/")).is_dir()))
    texts = {str(p): subids.read(p) for p in (paths.subuid, paths.subgid)}
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
    checks.append(doctor.check_nvml(cards, live, expected))
    checks.append(doctor.check_nodes(cards, missing_device_nodes(paths.root) if cards else []))
    checks.append(doctor.check_inventory(cards, live, expected))
    if cards and server is None:
        checks.append(doctor.skipped("gpu.lxd", "LXD does not answer (see lxd.reachable)"))
    else:
        seen = lxd.gpu_pci_addresses() if cards else frozenset()
        checks.append(doctor.check_lxd_gpus(cards, seen, expected))
    if instances is None:
        why = "LXD does not answer" if server is None else "no project (see project.config)"
        checks += [doctor.skipped("gpu.containers", why), doctor.skipped("ports.listening", why)]
    else:
        checks.append(doctor.check_gpu_containers(gpu_containers(instances, expected, lxd)))
        ports = forwards(instances) + shared_forwards(policy)
        checks.append(doctor.check_ports(ports, listening_ports(paths.proc)))
    return checks


def open_lxd(project: str, env: Mapping[str, str]) -> Any:
    from provisioner.lxd import Lxd  # noqa: PLC0415  (pylxd loads only for commands using LXD)

    return Lxd(project, lxd_dir=env.get("LXD_DIR"), require_project=False)


def github_checks(repo: Path, env: Mapping[str, str]) -> list[Check]:
    """The repository's settings, read through GitHub's API, against the trust model."""
    token = env.get("GITHUB_TOKEN", "").strip()
    repository = env.get("GITHUB_REPOSITORY", "").strip()
    if not (token and repository):
        raise UsageError("--github needs GITHUB_TOKEN and GITHUB_REPOSITORY (owner/name)")
    from provisioner.github import GitHubClient  # noqa: PLC0415  (PyGithub loads only here)

    client = GitHubClient(
        repository=repository,
        token=token,
        api_url=env.get("GITHUB_API_URL") or "https://api.github.com",
    )
    try:
        settings = client.repository_settings(repocheck.MAIN, repocheck.PROBE_BRANCH)
    except GithubError as e:
        raise UsageError(f"cannot read the repository's settings: {e}") from e
    owners = repo / ".github" / "CODEOWNERS"
    text = owners.read_text(encoding="utf-8") if owners.is_file() else None
    return repocheck.examine(settings, text)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.github:
        return show(github_checks(args.repo, env), args.format)
    validation, _sha = load_main(args.repo, clock(env))
    config = validation.config
    if config is None:
        print("ssp doctor: config/ is not valid, so the host cannot be checked against it:")
        for problem in validation.errors:
            print(log_line(problem))
        return 1
    lxd = open_lxd(config.policy.lxd.project, env)
    return show(examine(config, validation.valid, lxd, lxd.socket), args.format)


def show(checks: Sequence[Check], fmt: str) -> int:
    """One line per check (and its fix), or JSON; 0 when every check is ok or n/a."""
    ok = doctor.healthy(checks)
    if fmt == "json":
        document = {"healthy": ok, "checks": [asdict(c) for c in checks]}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return 0 if ok else 1
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(log_line(f"{MARK[c.status]:<8} {c.name:<{width}}  {c.detail}"))
        if c.fix:
            print(log_line(f"{'':<8} {'':<{width}}  fix: {c.fix}"))
    problems = sum(c.status is Status.PROBLEM for c in checks)
    skipped = sum(c.status is Status.SKIPPED for c in checks)
    if ok:
        print("ssp doctor: healthy")
    else:
        print(f"ssp doctor: {problems} problem(s), {skipped} check(s) could not run")
    return 0 if ok else 1
