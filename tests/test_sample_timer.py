"""The sampler's timer: runner/systemd/ssp-sample.{service,timer} and the installer that sets
them up. The installer runs for real into a temporary root (`--root`); the units are checked
by `systemd-analyze verify` where systemd's tools are installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_gpu_unit import unit_settings

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "runner" / "systemd" / "ssp-sample.service"
TIMER = ROOT / "runner" / "systemd" / "ssp-sample.timer"
INSTALL = ROOT / "runner" / "install-sample-timer.sh"
BASH = shutil.which("bash") or "/bin/bash"
POLICY_DEFAULT_MINUTES = 5


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, str(INSTALL), *map(str, args)], capture_output=True, text=True, check=False
    )


def test_the_timer_runs_the_sampler_at_the_policys_default_interval() -> None:
    timer = unit_settings(TIMER.read_text(encoding="utf-8"))
    assert timer["Timer.OnCalendar"] == [f"*:0/{POLICY_DEFAULT_MINUTES}"]
    assert timer["Timer.Unit"] == ["ssp-sample.service"]
    assert timer["Install.WantedBy"] == ["timers.target"]
    service = unit_settings(SERVICE.read_text(encoding="utf-8"))
    assert service["Service.Type"] == ["oneshot"]
    assert service["Service.ExecStart"] == ["@SSP@", "--repo", "@REPO@", "sample"]
    assert service["Service.StateDirectory"] == ["ssp"]  # /var/lib/ssp, the default database


def test_install_into_a_root_writes_the_command_and_is_idempotent(tmp_path: Path) -> None:
    first = run("--root", tmp_path, "--ssp", "/srv/ssp/bin/ssp", "--repo", "/srv/ssp/repo")
    assert first.returncode == 0, first.stderr
    units = tmp_path / "etc/systemd/system"
    installed = unit_settings((units / "ssp-sample.service").read_text(encoding="utf-8"))
    assert installed["Service.ExecStart"] == [
        "/srv/ssp/bin/ssp",
        "--repo",
        "/srv/ssp/repo",
        "sample",
    ]
    assert (units / "timers.target.wants" / "ssp-sample.timer").is_symlink()
    again = run("--root", tmp_path, "--ssp", "/srv/ssp/bin/ssp", "--repo", "/srv/ssp/repo")
    assert again.returncode == 0
    assert "unchanged" in again.stdout and "already enabled" in again.stdout
    assert "running:" not in again.stdout


@pytest.mark.parametrize("bad", ["relative/ssp", "/opt/ssp bin", "/opt/$(id)", "/x|y"])
def test_install_refuses_a_path_systemd_would_read_otherwise(tmp_path: Path, bad: str) -> None:
    done = run("--root", tmp_path, "--ssp", bad)
    assert done.returncode == 1 and "absolute path" in done.stderr
    assert not (tmp_path / "etc").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    text = SERVICE.read_text(encoding="utf-8").replace("@SSP@", "/bin/true")
    (tmp_path / "ssp-sample.service").write_text(text.replace("@REPO@", "/tmp"), encoding="utf-8")
    shutil.copy(TIMER, tmp_path / "ssp-sample.timer")
    done = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            *(str(tmp_path / n) for n in ("ssp-sample.timer", "ssp-sample.service")),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
