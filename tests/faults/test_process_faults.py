"""Faults of the apply process itself: killed (SIGKILL) between create and ready, two applies
at once, the host lock held by a live apply, and a lock file left by a dead one.

`ssp apply` runs as the runner runs it, in a process of its own, so that it can be killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from integration.helpers import eventually, lxc_query

from faults.helpers import (
    Estate,
    config_of,
    managed,
    ssp_apply,
    start_apply,
    status_of,
)
from provisioner.host.lock import host_lock

pytestmark = [pytest.mark.lxd, pytest.mark.slow]


def test_an_apply_killed_between_create_and_ready_is_finished_by_the_next(
    estate: Estate, lxd_socket: str, suffix: str, record: Callable[..., None]
) -> None:
    lab, project = estate.lab, estate.lab.project
    name = f"alice-k-{suffix}"
    lab.write(estate.request, lab.container(name, image="busybox"))

    proc = start_apply(lab, lxd_socket, "--jobs", "1")
    try:
        # Killed once LXD holds the instance with ssp's config (its port and host ID block
        # given), labelled `creating`, before it is `ready`.
        half_made = eventually(lambda: given(project, name), timeout_s=60, every_s=0.05)
        devices = lxc_query(f"/1.0/instances/{name}", project)["devices"]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert half_made, "the apply never got as far as creating the instance"
    assert config_of(project, name)["user.ssp.state"] == "creating"
    held = devices["ssh"]["listen"]

    converged = ssp_apply(lab, lxd_socket)

    assert converged.code == 0, converged.err
    assert converged.line(name).startswith("created"), converged.out
    assert "removing a half-made instance from an earlier run" in converged.err
    config = config_of(project, name)
    assert (config["user.ssp.state"], config["security.protection.delete"]) == ("ready", "true")
    assert status_of(project, name) == "Running"
    # Its port and host ID block are the ones the killed run had picked: nothing leaked.
    listen = lxc_query(f"/1.0/instances/{name}", project)["devices"]["ssh"]["listen"]
    assert held == listen
    others = {
        lxc_query(f"/1.0/instances/{n}", project)["devices"]["ssh"]["listen"]
        for n in (estate.keep, estate.old)
    }
    assert listen not in others
    assert config["security.idmap.base"] == half_made["security.idmap.base"]
    assert managed(project) == sorted([estate.keep, estate.old, name])
    estate.intact()
    again = ssp_apply(lab, lxd_socket)
    assert again.code == 0 and again.line(name).startswith("unchanged"), again.out
    record(
        fault="apply killed (SIGKILL) after create, before ready",
        seen=f"exit -9; the next apply logs: {name}: removing a half-made instance from an "
        f"earlier run; then `{converged.line(name)}`",
        exit=converged.code,
        converge_s=round(converged.seconds, 1),
    )


def given(project: str, name: str) -> dict[str, str] | None:
    """The instance's config once ssp has given it its port and host IDs, still `creating`."""
    found = lxc_query(f"/1.0/instances/{name}", project)
    config = dict(found["config"])
    done = "ssh" in found["devices"] and "security.idmap.base" in config
    return config if done and config.get("user.ssp.state") == "creating" else None


def test_two_applies_at_once_one_waits_for_the_other(
    estate: Estate, lxd_socket: str, suffix: str, record: Callable[..., None]
) -> None:
    lab, project = estate.lab, estate.lab.project
    name = f"alice-r-{suffix}"
    lab.write(estate.request, lab.container(name, image="busybox"))

    began = time.monotonic()
    procs = [start_apply(lab, lxd_socket) for _ in range(2)]
    done = [p.communicate(timeout=300) for p in procs]
    took = time.monotonic() - began

    assert [p.returncode for p in procs] == [0, 0], done
    lines = sorted(next(line for line in out.splitlines() if name in line) for out, _ in done)
    # One made it; the other waited for the lock, then found nothing left to do.
    assert [line.split()[0] for line in lines] == ["created", "unchanged"], lines
    assert managed(project) == sorted([estate.keep, estate.old, name])
    assert status_of(project, name) == "Running"
    estate.intact()
    record(
        fault="two applies at once",
        seen="both exit 0: one `created`, the other waits for the host lock, then `unchanged`",
        exit=0,
        converge_s=round(took, 1),
    )


def test_a_held_lock_times_out_clearly_and_a_dead_holders_lock_is_taken_over(
    estate: Estate, lxd_socket: str, suffix: str, tmp_path: Path, record: Callable[..., None]
) -> None:
    lab = estate.lab
    name = f"alice-l-{suffix}"
    lab.write(estate.request, lab.container(name, image="busybox"))
    lock = lab.root / "apply.lock"

    # A live apply (this test) holds the lock: the other gives up after --lock-wait, changes
    # nothing and names the holder.
    with host_lock(lock):
        refused = ssp_apply(lab, lxd_socket, "--lock-wait", "1")
    assert refused.code == 3, refused
    message = refused.err.strip()
    assert message.startswith(f"ssp apply: error: another apply holds {lock} (pid {os.getpid()}")
    assert message.endswith("try again when it ends")
    assert name not in managed(lab.project)

    # Held for two seconds more: an apply that may wait longer waits, then converges.
    released = threading.Event()

    def hold() -> None:
        with host_lock(lock):
            released.wait(2)

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.3)
    try:
        waited = ssp_apply(lab, lxd_socket, "--lock-wait", "60")
    finally:
        released.set()
        holder.join()
    assert waited.code == 0, waited.err
    assert waited.line(name).startswith("created")

    # A lock file from a run that died (its pid gone, no flock held): taken over at once.
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock.write_text(f"{dead.pid} {time.time() - 3600:.0f}\n")
    stale = ssp_apply(lab, lxd_socket, "--lock-wait", "0")
    assert stale.code == 0, stale.err
    assert stale.line(name).startswith("unchanged")
    assert lock.read_text().split()[0] != str(dead.pid)
    estate.intact()
    record(
        fault="host lock held by a live apply / left by a dead one",
        seen=message,
        exit=refused.code,
        converge_s=round(stale.seconds, 1),
    )
