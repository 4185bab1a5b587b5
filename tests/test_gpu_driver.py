"""After an NVIDIA driver upgrade: `ssp doctor`'s gpu.driver names each container to restart.

The containers are made by real reconcile passes on the in-memory LXD (`FakeLxd`), which
models LXD's NVIDIA runtime: a container started with `nvidia.runtime=true` gets the host
driver's userspace injected and keeps that version until its next start, and `nvidia-smi`
inside refuses to run against a kernel module of another version, as the real one does. The
host's version comes from NVML through `provisioner.gpu.nvml`, here the NVML stand-in.
"""

from __future__ import annotations

import shutil

import pytest
from fakelxd import NOW, FakeLxd, Lab
from nvml_standin import NvmlStandin, seed_server

from provisioner.doctor.checks import Status
from provisioner.doctor.gpus import DriverInside, check_driver_versions
from provisioner.flows.checkup import driver_inside
from provisioner.flows.reconcile import run_pass
from provisioner.gpu.nvml import driver_version
from provisioner.validation.validate import blocking
from provisioner.values.errors import GpuError, LxdError
from provisioner.values.state import ExecResult

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

PCI = ("0000:18:00.0", "0000:3b:00.0", "0000:86:00.0", "0000:af:00.0")  # config/hosts.yaml
CARDS = list(PCI)
OLD, NEW = "550.54.14", "550.90.07"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("keys"))


def apply(lab: Lab, fake: FakeLxd, *requests: tuple[str, bytes]) -> None:
    v = lab.validate(*requests)
    assert not blocking(v), v.problems
    done = run_pass(v, fake, fake.servers, now=NOW, sha="")
    assert done.result.ok, done.result.outcomes


def doctor_says(fake: FakeLxd, userspace: str = "nvidia-runtime") -> tuple[Status, str, str]:
    check = check_driver_versions(
        CARDS, driver_version(), driver_inside(fake.instances(), fake), userspace, "ssp"
    )
    return check.status, check.detail, check.fix


def test_after_a_driver_upgrade_doctor_names_each_gpu_container_to_restart(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml = NvmlStandin(seed_server(), driver=OLD).install(monkeypatch)
    fake = FakeLxd.seeded(present_gpus=PCI)
    gpu_a, gpu_b = lab.container("alice-x", gpus=1), lab.container("bob-y", owner="bob", gpus=1)
    apply(lab, fake, gpu_a, gpu_b, lab.container("alice-cpu"))
    status, detail, _ = doctor_says(fake)
    assert (status, detail) == (Status.OK, f"driver {OLD} in the host and its 2 GPU container(s)")

    # The driver is upgraded and its module reloaded; the containers run on.
    fake.daemon.nvidia_driver = nvml.driver = NEW
    status, detail, fix = doctor_says(fake)
    assert status is Status.PROBLEM
    assert detail == (
        f"the host runs driver {NEW}; not these containers: "
        "alice-x (nvidia-smi exit 18: Failed to initialize NVML: Driver/library version "
        "mismatch); bob-y (nvidia-smi exit 18: Failed to initialize NVML: Driver/library "
        "version mismatch)"
    )
    assert fix == (
        f"restart them so the runtime injects driver {NEW}: lxc restart --project ssp alice-x bob-y"
    )
    assert "alice-cpu" not in detail  # no GPU, nothing to check

    # Restarted as told: the runtime injects the new userspace.
    for name in ("alice-x", "bob-y"):
        fake.stop(name)
        fake.start(name)
    assert doctor_says(fake)[0] is Status.OK


def test_with_the_userspace_in_the_image_the_fix_is_to_rebuild_it(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    NvmlStandin(seed_server(), driver=NEW).install(monkeypatch)
    image = lab.edited("gpu_userspace: nvidia-runtime", "gpu_userspace: image")
    fake = FakeLxd.seeded(present_gpus=PCI)
    fake.daemon.nvidia_driver = NEW
    apply(image, fake, image.container("alice-x", gpus=1))
    rec = fake.record("alice-x")
    assert not [k for k in rec.config if k.startswith("nvidia.")]
    assert doctor_says(fake, "image")[1].endswith(
        "alice-x (command not found in alice-x: nvidia-smi)"
    )
    rec.inside.nvidia_userspace = OLD  # the image's CUDA stack, built for the old driver
    status, detail, fix = doctor_says(fake, "image")
    assert status is Status.PROBLEM and "alice-x (nvidia-smi exit 18" in detail
    assert fix.startswith(f"rebuild the image with the NVIDIA userspace of driver {NEW}")
    assert fix.endswith("lxc restart --project ssp alice-x")


def inside(result: ExecResult | LxdError) -> list[DriverInside]:
    return [DriverInside("a", result)]


@pytest.mark.parametrize(
    ("cards", "host", "found", "status", "says"),
    [
        ([], OLD, [], Status.NA, "no NVIDIA GPU on this host"),
        (CARDS, GpuError("NVML: Driver Not Loaded"), [], Status.SKIPPED, "see gpu.nvml"),
        (CARDS, OLD, [], Status.NA, f"driver {OLD}; no running container has a GPU"),
        (CARDS, OLD, inside(ExecResult(0, f"{OLD}\n{OLD}\n", "")), Status.OK, "1 GPU"),
        (CARDS, OLD, inside(ExecResult(0, f"{NEW}\n", "")), Status.PROBLEM, f"a ({NEW})"),
        (CARDS, OLD, inside(LxdError("Instance is not running")), Status.PROBLEM, "a (Instance"),
    ],
)
def test_driver_check_verdicts(
    cards: list[str], host: str | GpuError, found: list[DriverInside], status: Status, says: str
) -> None:
    check = check_driver_versions(cards, host, found, "nvidia-runtime", "ssp")
    assert check.status is status
    assert says in check.detail
