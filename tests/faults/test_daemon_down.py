"""The LXD daemon stopped in the middle of an apply, then started again.

The daemon is shared with every other test on this machine, so the outage is kept short
(stopped, a few seconds, started again the way runner/dev-lxd.sh starts it) and the daemon
is ALWAYS started again, whatever the test does (the `daemon` fixture checks at the end).
It is stopped with SIGTERM, which makes LXD exit and leave its containers running, as a
daemon upgrade or crash does; `lxd shutdown` would also stop every container on the host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial

import pytest
from integration.helpers import ROOT, eventually, lxc

from faults.helpers import (
    Estate,
    config_of,
    managed,
    ssp_apply,
    start_apply,
    status_of,
    wait_for_line,
)

# Every other test's LXD requests would fail while it is down: it holds the daemon alone.
pytestmark = [pytest.mark.lxd, pytest.mark.slow, pytest.mark.daemon_wide]


def answers() -> bool:
    return (
        subprocess.run(
            ["lxd", "waitready", "--timeout", "1"], capture_output=True, check=False
        ).returncode
        == 0
    )


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def start_daemon(stopped: list[int]) -> None:
    """runner/dev-lxd.sh start: starts LXD detached, returns once it answers (or fails).
    First the stopped daemon must have exited: it stops answering at once but shuts down
    before it exits, which on this shared, loaded machine once took over the 60 s that
    `start` waits (it said "LXD daemon is shutting down" and the daemon stayed down)."""
    for pid in stopped:
        assert eventually(partial(gone, pid), timeout_s=600, every_s=0.5), f"LXD {pid} still up"
    subprocess.run(["bash", str(ROOT / "runner" / "dev-lxd.sh"), "start"], check=True, timeout=120)


@pytest.fixture
def stopped() -> list[int]:
    """The daemons' process ids the test stopped."""
    return []


@pytest.fixture
def daemon(lxd_socket: str, stopped: list[int]) -> Iterator[Callable[[], int]]:
    """stop() sends the daemon SIGTERM and returns once it no longer answers; the daemon is
    started again at the end in any case."""

    def stop() -> int:
        pid = int(lxc("query", "/1.0").stdout.split('"server_pid":')[1].split(",")[0])
        os.kill(pid, signal.SIGTERM)
        stopped.append(pid)
        assert eventually(lambda: not answers(), timeout_s=30, every_s=0.2)
        return pid

    try:
        yield stop
    finally:
        if stopped and not answers():
            start_daemon(stopped)
        assert answers(), "LXD did not come back: run `bash runner/dev-lxd.sh start`"


def test_lxd_stopped_mid_apply_fails_clearly_and_the_next_apply_converges(
    estate: Estate,
    lxd_socket: str,
    suffix: str,
    daemon: Callable[[], int],
    stopped: list[int],
    record: Callable[..., None],
) -> None:
    lab, project = estate.lab, estate.lab.project
    name = f"alice-d-{suffix}"
    lab.write(estate.request, lab.container(name, image="busybox"))

    proc = start_apply(lab, lxd_socket, "--jobs", "1")
    try:
        wait_for_line(proc, f"{name}: creating from")
        down_at = time.monotonic()
        daemon()
        time.sleep(2)  # the apply meets a daemon that is not there
        start_daemon(stopped)
        outage = time.monotonic() - down_at
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in err, err
    assert proc.returncode in (1, 3), (proc.returncode, out, err)
    faulty = (out + err).strip().splitlines()

    # The containers that were running before still run: SIGTERM leaves them be.
    assert status_of(project, estate.keep) == "Running"

    converged = ssp_apply(lab, lxd_socket)
    assert converged.code == 0, converged.out + converged.err
    assert converged.line(name).split()[0] in ("created", "unchanged"), converged.out
    assert config_of(project, name)["user.ssp.state"] == "ready"
    assert status_of(project, name) == "Running"
    assert managed(project) == sorted([estate.keep, estate.old, name])
    estate.intact()
    record(
        fault="LXD daemon stopped mid-apply (SIGTERM), started again",
        seen=f"exit {proc.returncode}; "
        + " / ".join(line for line in faulty if name in line or "error" in line)[:400],
        exit=proc.returncode,
        outage_s=round(outage, 1),
        converge_s=round(converged.seconds, 1),
    )
