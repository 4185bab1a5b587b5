"""Faults on the LXD side: a forwarded port taken by another program, the storage pool full,
the clone source or its snapshot gone, a request LXD refuses, a member's UID that LXD may not
map, and the shared server down for an account.

Each case: the fault, an apply that reports it (the other requests still applied), the fault
mended as an operator would, a plain apply that converges, and the estate intact.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from integration.conftest import purge_instances
from integration.helpers import UIDS, Adapters, LabRepo, in_instance, lxc, lxc_query

from faults.conftest import FAULTS_PORTS
from faults.helpers import (
    Estate,
    config_of,
    converge,
    managed,
    ssp_apply,
    status_of,
    survived,
)
from provisioner.host import subidfiles
from provisioner.values import subids

pytestmark = [pytest.mark.lxd, pytest.mark.slow]


def listen_on(port: int, timeout_s: float = 15) -> socket.socket:
    """A socket listening on 127.0.0.1:port, once LXD's proxy for a stopped container lets
    go of it (its helper process may outlive the stop by a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen()
            return sock
        except OSError:
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def ssh_listen(project: str, name: str) -> str:
    return str(lxc_query(f"/1.0/instances/{name}", project)["devices"]["ssh"]["listen"])


# --- a forwarded port taken -----------------------------------------------------------------


def test_a_taken_port_fails_only_its_container_until_the_program_lets_go(
    estate: Estate, lxd_socket: str, suffix: str, record: Callable[..., None]
) -> None:
    lab, project = estate.lab, estate.lab.project
    keep_port = int(ssh_listen(project, estate.keep).rsplit(":", 1)[-1])
    new = f"alice-p-{suffix}"
    lab.write(estate.request, lab.container(new, image="busybox"))
    # The admin stopped alice's container; meanwhile another program took its port.
    lxc("stop", "--project", project, estate.keep)
    squatter = listen_on(keep_port)
    try:
        faulty = ssp_apply(lab, lxd_socket)
    finally:
        squatter.close()

    assert faulty.code == 1, faulty
    seen = faulty.line(estate.keep)
    assert seen.startswith("failed"), faulty.out
    assert f"port {keep_port} is already taken on the host by another program" in seen
    # The new container was given a free port (the host is looked at first) and made.
    assert faulty.line(new).startswith("created"), faulty.out
    assert ssh_listen(project, new) != ssh_listen(project, estate.keep)

    converged = converge(lab, lxd_socket)
    assert status_of(project, estate.keep) == "Running"
    assert ssh_listen(project, estate.keep) == f"tcp:127.0.0.1:{keep_port}"  # not moved
    survived(
        estate,
        record,
        converged,
        fault="a container's forwarded port taken by another program",
        seen=f"exit {faulty.code}; {seen[:160]}…",
        exit=faulty.code,
    )


# --- the storage pool full ------------------------------------------------------------------


@pytest.fixture
def small_pool(lxd_project: str, lxd_socket: str, suffix: str) -> Iterator[tuple[str, Path]]:
    """A 48 MiB `dir` pool on a tmpfs of its own, the project's default root disk on it.

    Removed at the end whatever happens: the project's instances first, then the pool, then
    the tmpfs. The machine's own pool and disk are never touched.
    """
    mount = Path(tempfile.mkdtemp(prefix="ssp-small-pool-"))
    name = f"ssp-full-{suffix}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], check=True)
    try:
        (mount / "pool").mkdir()
        lxc("storage", "create", name, "dir", f"source={mount}/pool")
        try:
            lxc(
                "profile",
                "device",
                "set",
                "default",
                "root",
                f"pool={name}",
                "--project",
                lxd_project,
            )
            yield name, mount
        finally:
            failures = purge_instances(lxd_socket, lxd_project)
            lxc(
                "profile",
                "device",
                "set",
                "default",
                "root",
                "pool=default",
                "--project",
                lxd_project,
            )
            lxc("storage", "delete", name)
            assert not failures, failures
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
        mount.rmdir()


def fill(mount: Path, leave_bytes: int) -> Path:
    """A file that leaves `leave_bytes` free on the filesystem at `mount`."""
    filler = mount / "filler"
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with filler.open("wb") as out:
        out.truncate(0)
        chunk = b"\0" * (1 << 20)
        left = max(0, free - leave_bytes)
        while left > 0:
            out.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
    return filler


def test_a_full_pool_fails_the_new_container_and_keeps_the_rest(
    tmp_path: Path,
    lxd_project: str,
    lxd_socket: str,
    suffix: str,
    small_pool: tuple[str, Path],
    record: Callable[..., None],
) -> None:
    from faults.helpers import make_estate  # noqa: PLC0415

    pool, mount = small_pool
    lab = LabRepo.make(tmp_path, lxd_project, suffix, window=FAULTS_PORTS)
    lab.pool = pool
    estate = make_estate(lab, Adapters.make(lxd_project, lxd_socket), suffix)
    new = f"alice-f-{suffix}"
    lab.write(estate.request, lab.container(new, image="busybox"))
    filler = fill(mount, leave_bytes=256 * 1024)

    faulty = ssp_apply(lab, lxd_socket)

    assert faulty.code == 1, faulty
    seen = faulty.line(new)
    assert seen.startswith("failed") and "run out of disk space" in seen, faulty.out
    assert faulty.line(estate.keep).startswith("unchanged")
    estate.intact()

    filler.unlink()  # the admin frees space
    converged = converge(lab, lxd_socket)
    assert converged.line(new).startswith("created")
    assert status_of(lxd_project, new) == "Running"
    assert managed(lxd_project) == sorted([estate.keep, estate.old, new])
    survived(
        estate,
        record,
        converged,
        fault="storage pool full",
        seen=f"exit {faulty.code}; {seen[:200]}…",
        exit=faulty.code,
    )


# --- the clone source gone ------------------------------------------------------------------


@pytest.fixture
def test_base(suffix: str) -> Iterator[str]:
    """A busybox base of this test's own in the default project (never Common-Server)."""
    name = f"base-{suffix}"
    lxc("init", "ssp-busybox", name, "--project", "default")
    try:
        lxc("snapshot", "--project", "default", name, "golden")
        yield name
    finally:
        lxc("delete", "--force", "--project", "default", name, check=False)


def test_a_missing_clone_source_or_snapshot_is_reported_and_nothing_half_made(
    estate: Estate, lxd_socket: str, suffix: str, test_base: str, record: Callable[..., None]
) -> None:
    lab, project = estate.lab, estate.lab.project
    lab.images = {"testbase": {"clone": f"{test_base}/golden", "description": "t", "users": False}}
    made = f"alice-c-{suffix}"
    lab.write(estate.request, lab.container(made, image="testbase"))
    first = ssp_apply(lab, lxd_socket)
    assert first.code == 0 and first.line(made).startswith("created"), first.out + first.err

    # The snapshot deleted: the next new clone fails, the one made from it is untouched.
    lxc("delete", "--project", "default", f"{test_base}/golden")
    new = f"bob-c-{suffix}"
    lab.write(
        estate.request,
        lab.container(made, image="testbase"),
        lab.container(new, owner="bob", image="testbase"),
    )
    no_snapshot = ssp_apply(lab, lxd_socket)
    assert no_snapshot.code == 1, no_snapshot
    seen_snapshot = no_snapshot.line(new)
    assert seen_snapshot.startswith("failed"), no_snapshot.out
    gone = (
        f"image testbase is cloned from {test_base}/golden (LXD project default), which does "
        "not exist; restore that snapshot or correct images.testbase in config/policy.yaml"
    )
    assert gone in seen_snapshot, seen_snapshot
    assert no_snapshot.line(made).startswith("unchanged")
    assert new not in managed(project)

    # The base itself gone.
    lxc("delete", "--force", "--project", "default", test_base)
    no_base = ssp_apply(lab, lxd_socket)
    assert no_base.code == 1
    seen_base = no_base.line(new)
    assert seen_base.startswith("failed") and gone in seen_base, seen_base
    assert status_of(project, made) == "Running"

    # The admin makes the base again: converges.
    lxc("init", "ssp-busybox", test_base, "--project", "default")
    lxc("snapshot", "--project", "default", test_base, "golden")
    converged = converge(lab, lxd_socket)
    assert converged.line(new).startswith("created")
    assert status_of(project, new) == "Running"
    survived(
        estate,
        record,
        converged,
        fault="clone source's snapshot deleted / base missing",
        seen=f"exit 1; {seen_snapshot[:160]}… / {seen_base[:160]}…",
        exit=no_snapshot.code,
    )


# --- a request LXD refuses ------------------------------------------------------------------


def test_a_request_lxd_refuses_fails_alone(
    estate: Estate, lxd_socket: str, suffix: str, record: Callable[..., None]
) -> None:
    lab, project = estate.lab, estate.lab.project
    # The project may hold one more instance (the estate has two): one new one fits.
    lxc("project", "set", project, "limits.instances=3")
    first, second = f"alice-x-{suffix}", f"bob-x-{suffix}"
    lab.write(
        estate.request,
        lab.container(first, image="busybox"),
        lab.container(second, owner="bob", image="busybox"),
    )
    faulty = ssp_apply(lab, lxd_socket, "--jobs", "1")

    assert faulty.code == 1, faulty
    assert faulty.line(first).startswith("created"), faulty.out
    seen = faulty.line(second)
    assert seen.startswith("failed"), faulty.out
    assert "maximum number of instances" in seen.lower(), seen
    assert second not in managed(project)
    assert status_of(project, first) == "Running"

    lxc("project", "set", project, "limits.instances=10")  # the admin raises the limit
    converged = converge(lab, lxd_socket)
    assert converged.line(second).startswith("created")
    survived(
        estate,
        record,
        converged,
        fault="a request LXD refuses (project limit reached)",
        seen=f"exit {faulty.code}; {seen[:200]}…",
        exit=faulty.code,
    )


# --- a member's UID missing from /etc/subuid ------------------------------------------------


def test_a_member_uid_lxd_may_not_map_is_named_with_the_fix(
    estate: Estate, lxd_socket: str, suffix: str, record: Callable[..., None]
) -> None:
    lab, project = estate.lab, estate.lab.project
    undelegated = 1100  # just past the 1000-1099 that runner/dev-lxd.sh delegates to root
    # (the machine's own /etc/subuid is only read, never changed)
    assert subids.undelegated(subids.parse(subidfiles.read(subids.SUBUID)), [undelegated])
    name = f"carol-u-{suffix}"
    requests = (
        estate.request,
        lab.container(name, owner="carol", image="busybox", shares=["share"]),
    )
    lab.write(*requests)
    policy_file = lab.root / "config" / "policy.yaml"
    policy = yaml.safe_load(policy_file.read_text())
    policy["users"]["carol"]["uid"] = undelegated
    policy_file.write_text(yaml.safe_dump(policy, sort_keys=False))

    faulty = ssp_apply(lab, lxd_socket)

    assert faulty.code == 1, faulty
    seen = faulty.line(name)
    assert seen.startswith("failed"), faulty.out
    assert f"UID {undelegated}" in seen and "/etc/subuid" in seen, seen
    assert faulty.line(estate.keep).startswith("unchanged")

    lab.write(*requests)  # the admin puts carol's real (delegated) UID back
    converged = converge(lab, lxd_socket)
    assert converged.line(name).startswith("created")
    assert config_of(project, name)["raw.idmap"] == f"both {UIDS['carol']} {UIDS['carol']}"
    survived(
        estate,
        record,
        converged,
        fault="a member's UID not delegated in /etc/subuid",
        seen=f"exit {faulty.code}; {seen[:240]}…",
        exit=faulty.code,
    )


# --- the shared server down -----------------------------------------------------------------


def test_an_account_waits_for_the_shared_server_and_keeps_homes(
    tmp_path: Path, lxd_project: str, lxd_socket: str, suffix: str, record: Callable[..., None]
) -> None:
    from integration.test_ssh_login import make_shared_server  # noqa: PLC0415

    lab = LabRepo.make(tmp_path, lxd_project, suffix, shared_ssh=True, window=FAULTS_PORTS)
    make_shared_server(lab)
    server, project = lab.shared_server, lxd_project
    first = lab.account("bob-nb")
    lab.write(first)
    done = ssp_apply(lab, lxd_socket)
    assert done.code == 0, done.out + done.err
    in_instance(project, server, "sh", "-c", "echo draft > /home/bob-nb/thesis.tex")

    # The shared server stopped: a new account fails clearly; the existing one is left be.
    lxc("stop", "--project", project, server)
    second = lab.account("carol-nb", owner="carol")
    lab.write(first, second)
    stopped = ssp_apply(lab, lxd_socket)
    assert stopped.code == 1, stopped
    seen_stopped = stopped.line("carol-nb")
    assert seen_stopped.startswith("failed"), stopped.out
    assert (
        f"the shared server {server} (common, LXD project {project}) is stopped, so account "
        f"carol-nb cannot be made; start it (`lxc start {server} --project {project}`) and "
        "the next apply makes it"
    ) in seen_stopped, seen_stopped

    # ... and missing altogether (renamed away by the admin).
    lxc("rename", "--project", project, server, f"{server}-away")
    missing = ssp_apply(lab, lxd_socket)
    assert missing.code == 1, missing
    seen_missing = missing.line("carol-nb")
    assert seen_missing.startswith("failed"), missing.out
    assert (
        f"the shared server {server} (common, LXD project {project}) does not exist, so "
        "account carol-nb cannot be made; restore it, or correct shared_servers.common in "
        "config/policy.yaml"
    ) in seen_missing, seen_missing

    lxc("rename", "--project", project, f"{server}-away", server)
    lxc("start", "--project", project, server)
    converged = converge(lab, lxd_socket)
    assert converged.line("carol-nb").startswith("created")
    home = in_instance(project, server, "cat", "/home/bob-nb/thesis.tex").stdout
    assert home == "draft\n"
    passwd = in_instance(project, server, "getent", "passwd", "carol-nb").stdout
    assert passwd.startswith("carol-nb:")
    record(
        fault="Common-Server stopped / missing for an account",
        seen=f"exit 1; {seen_stopped[:200]}… / {seen_missing[:200]}…",
        exit=stopped.code,
        converge_s=round(converged.seconds, 1),
    )
