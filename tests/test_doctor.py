"""`ssp doctor`: each check's verdict and advice, and the command without a daemon.

The checks are pure functions of what was observed, tested table by table. The command runs
for real with LXD unreachable (LXD_DIR pointing at an empty folder: the shared daemon is never
stopped), and on a GPU host assembled from a temporary /sys and /dev plus the NVML stand-in.
Against the real daemon (healthy after `ssp host init`) see integration/test_host_init.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import ENV, run_cli, sample_repo
from nvml_standin import NvmlStandin, seed_server

from provisioner.doctor import baseusers
from provisioner.doctor import checks as doctor
from provisioner.doctor import gpus as doctorgpus
from provisioner.doctor.checks import Check, Need, Status
from provisioner.doctor.gpus import GpuContainer
from provisioner.flows.checkup import HostPaths, examine, forwards, nvidia_cards, shared_forwards
from provisioner.gpu.nvml import read_gpus
from provisioner.lxd.api import Lxd
from provisioner.planning.hostproject import desired_project
from provisioner.validation.config import Config, load_config
from provisioner.values.errors import GpuError, LxdError
from provisioner.values.idranges import IdMapUse, IdRange
from provisioner.values.models import GpuEntry
from provisioner.values.state import ExecResult, Instance, Pool, Profile, Project, ServerInfo

ROOT = Path(__file__).resolve().parents[1]
GiB = 2**30
# The seed server's cards as the NVML stand-in reports them, written as an inventory.
SEED_PCI = ("0000:1a:00.0", "0000:4b:00.0", "0000:b1:00.0", "0000:ca:00.0")


def config() -> Config:
    loaded, problems = load_config(
        (ROOT / "config" / "policy.yaml").read_bytes(),
        (ROOT / "config" / "hosts.yaml").read_bytes(),
    )
    assert loaded is not None, problems
    return loaded


def seed_inventory() -> list[GpuEntry]:
    return [
        GpuEntry(index=i, model=g.name, pci=SEED_PCI[i], uuid=g.uuid, memory="24564MiB")
        for i, g in enumerate(seed_server())
    ]


def status(check: Check) -> tuple[str, Status]:
    return check.name, check.status


# --- LXD and the project ------------------------------------------------------------------------

ALL = frozenset(doctor.REQUIRED_EXTENSIONS)


@pytest.mark.parametrize(
    ("server", "verdict", "says"),
    [
        (ServerInfo("5.0.2", ALL), Status.OK, "LXD 5.0.2 has the 13 API extensions"),
        (ServerInfo("5.21.1", ALL | {"newer"}), Status.OK, "LXD 5.21.1"),
        (ServerInfo("4.0.9", ALL), Status.PROBLEM, "older than 5.0"),
        (ServerInfo("5.0.2", ALL - {"projects_limits_disk"}), Status.PROBLEM, "limits.disk"),
    ],
)
def test_version_and_extensions(server: ServerInfo, verdict: Status, says: str) -> None:
    check = doctor.check_version(server)
    assert check.status is verdict
    assert says in check.detail


def test_a_missing_project_is_a_problem_fixed_by_host_init() -> None:
    want = desired_project(config().policy, config().inventory)
    check = doctor.check_project(want, None)
    assert check.status is Status.PROBLEM
    assert "'ssp' does not exist" in check.detail
    assert "ssp host init" in check.fix


def test_a_relaxed_restriction_is_named() -> None:
    want = desired_project(config().policy, config().inventory)
    relaxed = Project("ssp", "", {**want.config, "restricted.containers.privilege": "allow"})
    check = doctor.check_project(want, relaxed)
    assert check.status is Status.PROBLEM
    assert "restricted.containers.privilege: allow → isolated" in check.detail
    assert doctor.check_project(want, want).status is Status.OK


USAGE = {
    "instances": (18, 3),
    "cpu": (64, 24),
    "memory": (256 * GiB, 96 * GiB),
    "disk": (4096 * GiB, 300 * GiB),
    "processes": (180000, 30000),
    "networks": (-1, 0),
}


@pytest.mark.parametrize(
    ("usage", "need", "verdict", "says"),
    [
        (USAGE, Need(1, 8, 32 * GiB, 100 * GiB), Status.OK, "cpu 24/64"),
        ({**USAGE, "cpu": (64, 60)}, Need(1, 8, GiB, GiB), Status.PROBLEM, "cpu: 60 of 64 used"),
        ({**USAGE, "instances": (18, 18)}, Need(), Status.PROBLEM, "instances: 18 of 18"),
        ({**USAGE, "disk": (-1, 10**15)}, Need(1, 1, GiB, 10**15), Status.OK, "cpu 24/64"),
    ],
)
def test_project_headroom(
    usage: dict[str, tuple[int, int]], need: Need, verdict: Status, says: str
) -> None:
    check = doctor.check_headroom(usage, need, "ssp")
    assert check.status is verdict
    assert says in check.detail
    if verdict is Status.PROBLEM:
        assert "lxc delete --project ssp" in check.fix


@pytest.mark.parametrize(
    ("pool", "need", "verdict", "says"),
    [
        (None, Need(), Status.PROBLEM, "does not exist"),
        (
            Pool("default", "zfs", 1000 * GiB, 100 * GiB),
            Need(disk=50 * GiB),
            Status.OK,
            "900GiB free",
        ),
        (
            Pool("default", "zfs", 1000 * GiB, 960 * GiB),
            Need(disk=50 * GiB),
            Status.PROBLEM,
            "need 50GiB",
        ),
        (Pool("default", "dir", 1000 * GiB, 950 * GiB), Need(), Status.PROBLEM, "95% full"),
    ],
)
def test_pool_space(pool: Pool | None, need: Need, verdict: Status, says: str) -> None:
    check = doctor.check_pool("default", pool, need, 300 * GiB)
    assert check.status is verdict
    assert says in check.detail


def test_lxd_unreachable_says_how_to_start_it() -> None:
    check = doctor.check_reachable(LxdError("cannot reach LXD at /x/unix.socket"), "/x")
    assert status(check) == ("lxd.reachable", Status.PROBLEM)
    assert "systemctl start lxd.service" in check.fix


# --- the host's files ---------------------------------------------------------------------------


def test_subids_missing_a_member_or_the_map_range() -> None:
    texts = {"/etc/subuid": "root:100000:65536\nroot:1000:2\n", "/etc/subgid": "root:1000:4\n"}
    check = doctor.check_subids(texts, [1000, 1001, 1002, 1003])
    assert check.status is Status.PROBLEM
    assert "/etc/subuid does not delegate UIDs 1002, 1003" in check.detail
    assert "/etc/subgid has no range of 65536+ IDs for root" in check.detail
    assert "restart LXD" in check.fix
    good = {"/etc/subuid": "root:100000:65536\nroot:1000:100\n"}
    assert doctor.check_subids(good, [1000, 1003]).status is Status.OK


def test_share_sources_must_exist(tmp_path: Path) -> None:
    (tmp_path / "share").mkdir()
    sources = [str(tmp_path / "share"), str(tmp_path / "gone")]
    check = doctor.check_shares(sources, lambda p: Path(p).is_dir())
    assert check.status is Status.PROBLEM
    assert check.detail.endswith(str(tmp_path / "gone"))
    assert doctor.check_shares([], lambda p: Path(p).is_dir()).status is Status.NA


# --- GPUs -----------------------------------------------------------------------------------------


def fake_sys(root: Path, devices: dict[str, tuple[str, str]]) -> Path:
    """A /sys with PCI devices: address -> (vendor, class)."""
    for address, (vendor, klass) in devices.items():
        dev = root / "sys" / "bus" / "pci" / "devices" / address
        dev.mkdir(parents=True)
        (dev / "vendor").write_text(vendor + "\n", encoding="ascii")
        (dev / "class").write_text(klass + "\n", encoding="ascii")
    return root / "sys"


def test_nvidia_cards_are_display_devices_of_vendor_10de(tmp_path: Path) -> None:
    sys_root = fake_sys(
        tmp_path,
        {
            "0000:4b:00.0": ("0x10de", "0x030000"),  # a GeForce (VGA)
            "0000:4b:00.1": ("0x10de", "0x040300"),  # its HDMI audio function
            "0000:ca:00.0": ("0x10de", "0x030200"),  # a data-centre GPU (3D controller)
            "0000:00:02.0": ("0x8086", "0x030000"),  # the board's Intel graphics
            "0000:05:00.0": ("0x10de", "0x068000"),  # an NVSwitch bridge
        },
    )
    assert nvidia_cards(sys_root) == ["0000:4b:00.0", "0000:ca:00.0"]
    assert nvidia_cards(tmp_path / "nothing") == []


def test_without_nvidia_cards_every_gpu_check_is_not_applicable() -> None:
    expected = seed_inventory()
    checks = [
        doctorgpus.check_nvml([], [], expected),
        doctorgpus.check_nodes([], []),
        doctorgpus.check_inventory([], [], expected),
        doctorgpus.check_lxd_gpus([], frozenset(), expected),
        doctorgpus.check_gpu_containers([]),
    ]
    assert {c.status for c in checks} == {Status.NA}
    assert "config/hosts.yaml lists 4" in checks[0].detail


def test_cards_without_a_working_driver_are_a_problem() -> None:
    error = GpuError("NVIDIA kernel driver is not loaded: NVML: Driver Not Loaded")
    check = doctorgpus.check_nvml(list(SEED_PCI), error, seed_inventory())
    assert status(check) == ("gpu.nvml", Status.PROBLEM)
    assert "Driver Not Loaded" in check.detail
    assert (
        doctorgpus.check_inventory(list(SEED_PCI), error, seed_inventory()).status is Status.SKIPPED
    )


def test_nvml_against_the_bus_and_the_inventory(monkeypatch: pytest.MonkeyPatch) -> None:
    NvmlStandin(seed_server()).install(monkeypatch)
    live = read_gpus()
    expected = seed_inventory()
    assert doctorgpus.check_nvml(list(SEED_PCI), live, expected).status is Status.OK
    assert doctorgpus.check_inventory(list(SEED_PCI), live, expected).status is Status.OK
    fell_off = doctorgpus.check_nvml([*SEED_PCI, "0000:de:00.0"], live, expected)
    assert "NVML sees 4 of the 5 NVIDIA cards" in fell_off.detail
    # a replaced card: same slot, another UUID
    replaced = [expected[0].model_copy(update={"uuid": "GPU-00000000-0000-4000-8000-000000000000"})]
    check = doctorgpus.check_inventory(list(SEED_PCI), live, replaced + expected[1:])
    assert check.status is Status.PROBLEM
    assert "0000:1a:00.0: UUID" in check.detail
    assert "ssp gpus --write" in check.fix


def test_missing_device_nodes_name_the_boot_unit() -> None:
    check = doctorgpus.check_nodes(list(SEED_PCI), ["/dev/nvidia-uvm"])
    assert check.status is Status.PROBLEM
    assert "install-gpu-unit.sh" in check.fix


def test_lxd_must_see_the_inventory_gpus() -> None:
    expected = seed_inventory()
    check = doctorgpus.check_lxd_gpus(list(SEED_PCI), frozenset(SEED_PCI[:3]), expected)
    assert check.status is Status.PROBLEM
    assert "0000:ca:00.0" in check.detail
    assert (
        doctorgpus.check_lxd_gpus(list(SEED_PCI), frozenset(SEED_PCI), expected).status is Status.OK
    )


LISTING = (
    "GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-5b7a3b1e-2c4d-4e8f-9a0b-1c2d3e4f5a60)\n"
    "GPU 1: NVIDIA GeForce RTX 4090 (UUID: GPU-6c8b4c2f-3d5e-4f90-8b1c-2d3e4f5a6b71)\n"
)
TWO = frozenset(
    {"GPU-5b7a3b1e-2c4d-4e8f-9a0b-1c2d3e4f5a60", "GPU-6c8b4c2f-3d5e-4f90-8b1c-2d3e4f5a6b71"}
)


@pytest.mark.parametrize(
    ("result", "verdict", "says"),
    [
        (ExecResult(0, LISTING, ""), Status.OK, "1 GPU container(s) see exactly their GPUs"),
        (ExecResult(0, LISTING.splitlines()[0], ""), Status.PROBLEM, "alice-box sees GPU-5b7a"),
        (
            ExecResult(9, "", "Failed to initialize NVML: Unknown Error\n"),
            Status.PROBLEM,
            "exit 9: Failed to initialize NVML",
        ),
        (LxdError("command not found in alice-box: nvidia-smi"), Status.PROBLEM, "not found"),
    ],
)
def test_gpu_containers_see_their_gpus(
    result: ExecResult | LxdError, verdict: Status, says: str
) -> None:
    check = doctorgpus.check_gpu_containers([GpuContainer("alice-box", TWO, result)])
    assert check.status is verdict
    assert says in check.detail


def test_forwarded_ports_of_running_managed_containers() -> None:
    proxy = {"type": "proxy", "listen": "tcp:0.0.0.0:22001", "connect": "tcp:127.0.0.1:22"}
    managed = {"user.ssp.managed": "true"}
    instances = [
        Instance("a", "Running", managed, {"ssh": proxy}),
        Instance("b", "Stopped", managed, {"ssh": {**proxy, "listen": "tcp:0.0.0.0:22002"}}),
        Instance("c", "Running", {}, {"ssh": {**proxy, "listen": "tcp:0.0.0.0:22003"}}),
    ]
    assert forwards(instances) == [("a", 22001)]
    assert doctor.check_ports([("a", 22001)], frozenset({22, 22001})).status is Status.OK
    down = doctor.check_ports([("a", 22001)], frozenset({22}))
    assert status(down) == ("ports.listening", Status.PROBLEM)
    assert "a:22001" in down.detail
    assert doctor.check_ports([], frozenset()).status is Status.NA


def test_a_shared_servers_ssh_port_is_checked_and_the_fix_says_how_to_forward_it() -> None:
    policy = config().policy  # the sample forwards port 22000 to Common-Server's SSH
    assert shared_forwards(policy) == [("Common-Server", 22000)]
    unforwarded = policy.shared_servers["common"].model_copy(update={"ssh_port": None})
    assert shared_forwards(policy.model_copy(update={"shared_servers": {"c": unforwarded}})) == []
    down = doctor.check_ports(shared_forwards(policy), frozenset({22}))
    assert status(down) == ("ports.listening", Status.PROBLEM)
    assert "Common-Server:22000" in down.detail
    assert "lxc config device add SERVER ssh proxy" in down.fix


# --- the command, without a daemon -------------------------------------------------------------


def test_doctor_with_lxd_down_names_it_and_fails(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "repo")
    empty = tmp_path / "no-lxd"
    empty.mkdir()
    result = run_cli("doctor", "--repo", str(repo), env={**ENV, "LXD_DIR": str(empty)})
    assert result.code == 1
    first = result.out.splitlines()[0]
    assert first.startswith("PROBLEM  lxd.reachable")
    assert f"cannot reach LXD at {empty}/unix.socket" in first
    assert "skipped  project.config" in result.out
    assert "Traceback" not in result.both


def test_doctor_json_with_lxd_down(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "repo")
    env = {**ENV, "LXD_DIR": str(tmp_path)}
    result = run_cli("doctor", "--repo", str(repo), "--format", "json", env=env)
    document = json.loads(result.out)
    assert result.code == 1
    assert document["healthy"] is False
    by_name = {c["name"]: c for c in document["checks"]}
    assert by_name["lxd.reachable"]["status"] == "problem"
    assert by_name["pool.space"]["status"] == "skipped"


def test_on_a_gpu_host_with_lxd_down_the_gpu_checks_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    NvmlStandin(seed_server()).install(monkeypatch)
    sys_root = fake_sys(tmp_path, dict.fromkeys(SEED_PCI, ("0x10de", "0x030000")))
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidiactl").touch()  # /dev/nvidia-uvm missing: the power-cut symptom
    hosts = yaml.safe_load((ROOT / "config" / "hosts.yaml").read_text(encoding="utf-8"))
    hosts["hosts"]["super-server"]["gpus"] = [g.model_dump() for g in seed_inventory()]
    loaded, problems = load_config(
        (ROOT / "config" / "policy.yaml").read_bytes(), yaml.safe_dump(hosts).encode()
    )
    assert loaded is not None, problems
    lxd = Lxd("ssp", lxd_dir=str(tmp_path / "no-lxd"), require_project=False)
    paths = HostPaths(tmp_path / "subuid", tmp_path / "subgid", sys_root, tmp_path, tmp_path)
    checks = {c.name: c for c in examine(loaded, [], lxd, lxd.socket, paths)}
    assert checks["gpu.nvml"].status is Status.OK
    assert checks["gpu.inventory"].status is Status.OK
    assert checks["gpu.nodes"].status is Status.PROBLEM
    assert "/dev/nvidia-uvm" in checks["gpu.nodes"].detail
    assert checks["gpu.lxd"].status is Status.SKIPPED
    assert not doctor.healthy(list(checks.values()))


def test_clone_sources_must_not_carry_what_the_project_forbids() -> None:
    clean = Profile("Common-Server/golden", "", {"image.os": "debian"}, {})
    dirty = Profile(
        "Old-Base/golden",
        "",
        {"security.privileged": "true", "raw.lxc": "lxc.apparmor.profile=unconfined"},
        {
            "share": {"type": "disk", "source": "/home/user/share", "path": "/share"},
            "data": {"type": "disk", "pool": "default", "source": "vol1", "path": "/data"},
            "gpu": {"type": "gpu"},
        },
    )
    check = doctor.check_clone_sources({clean.name: clean, dirty.name: dirty, "Gone": None})
    assert check.status is Status.PROBLEM
    assert "Gone does not exist in the default project" in check.detail
    assert (
        "Old-Base/golden has raw.lxc=lxc.apparmor.profile=unconfined, security.privileged=true, "
        "device gpu (gpu), device share (disk /home/user/share)"
    ) in check.detail
    assert "Common-Server/golden" not in check.detail
    assert doctor.check_clone_sources({clean.name: clean}).status is Status.OK
    assert doctor.check_clone_sources({}).status is Status.NA


def test_instances_sharing_host_ids_are_a_problem_with_the_fix() -> None:
    def isolated(project: str, name: str, base: int) -> IdMapUse:
        return IdMapUse(project, name, True, IdRange(base), IdRange(base))

    span = (IdRange(165536, 100 * 65536),)
    common = IdMapUse("default", "Common-Server", False, IdRange(100000), IdRange(100000))
    fine = [common, isolated("ssp", "a", 165536), isolated("lab2", "b", 231072)]
    ok = doctor.check_idmaps(fine, span)
    assert ok.status is Status.OK
    assert ok.detail == "2 isolated instance(s), each with host IDs of its own"
    clash = [*fine, isolated("ssp", "c", 231072), isolated("ssp", "far", 90_000_000)]
    check = doctor.check_idmaps(clash, span)
    assert check.status is Status.PROBLEM
    assert "lab2/b and ssp/c share host IDs (around 231072-296607)" in check.detail
    assert "ssp/far maps host IDs 90000000-90065535 outside root's usable range" in check.detail
    assert "`ssp apply` moves the later" in check.fix and "security.idmap.base" in check.fix
    assert "lxc copy --project P NAME NAME-new" in check.fix  # the restricted project


# --- the members' UIDs against the bases' users -------------------------------------------------

BASE_PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "sshd:x:101:65534::/run/sshd:/usr/sbin/nologin\n"
    "user:x:1000:1000:The base's own user:/home/user:/bin/bash\n"
)


def test_a_members_uid_that_the_bases_own_user_has_is_a_problem_naming_both() -> None:
    """The old sample gave lab-admin 1000, the base's `user`: useradd then failed."""
    users = {"lab-admin": 1000, "alice": 1001}
    found = baseusers.check_base_uids({"Common-Server": BASE_PASSWD}, users)
    assert status(found) == ("images.uids", Status.PROBLEM)
    assert "lab-admin's UID 1000 is user 'user' in Common-Server" in found.detail
    assert "alice" not in found.detail
    assert "config/policy.yaml `users:`" in found.fix
    # A base that could not be read is said so; one that has the member's own login is fine.
    fine = baseusers.check_base_uids(
        {"Common-Server": BASE_PASSWD + "alice:x:1001:1001::/home/alice:/bin/sh\n", "Gone": None},
        users | {"lab-admin": 1004},
    )
    assert fine.status is Status.OK
    assert "could not read /etc/passwd of Gone" in fine.detail


def test_the_sample_policys_uids_avoid_the_bases_user() -> None:
    users = {login: u.uid for login, u in config().policy.users.items()}
    assert 1000 not in users.values()
    checked = baseusers.check_base_uids({"Common-Server": BASE_PASSWD}, users)
    assert checked.status is Status.OK, checked.detail
