"""Smoke tests of the development LXD that runner/dev-lxd.sh brings up.

They check what the rest of the integration suite relies on: the daemon answers, the named
pool, bridge, images and Common-Server/golden exist, a busybox container gets an address,
a clone of the golden snapshot runs sshd with its own host keys, and host UIDs 1000-1099 can
be mapped with ``raw.idmap``. Real LXD only; skipped where no daemon answers.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "runner" / "dev-lxd.sh"
PROJECT = "default"

T = TypeVar("T")


def _lxd_answers() -> bool:
    if shutil.which("lxc") is None:
        return False
    done = subprocess.run(["lxc", "query", "/1.0"], capture_output=True, check=False, timeout=10)
    return done.returncode == 0


pytestmark = [
    pytest.mark.lxd,
    pytest.mark.skipif(not _lxd_answers(), reason="no LXD daemon answers (runner/dev-lxd.sh up)"),
]


def lxc(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        ["lxc", *args], capture_output=True, text=True, check=False, timeout=timeout
    )
    assert done.returncode == 0, f"lxc {' '.join(args)} failed: {done.stderr.strip()}"
    return done.stdout


def query(path: str) -> Any:
    return json.loads(lxc("query", path))


def exists(path: str) -> bool:
    done = subprocess.run(["lxc", "query", path], capture_output=True, check=False, timeout=30)
    return done.returncode == 0


def wait_for(what: str, probe: Callable[[], T | None], seconds: float) -> T:
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not within {seconds} s"
        time.sleep(0.25)


def ipv4_of(name: str) -> str | None:
    state = query(f"/1.0/instances/{name}/state?project={PROJECT}")
    eth0 = (state.get("network") or {}).get("eth0") or {}
    for address in eth0.get("addresses", []):
        if address["family"] == "inet" and address["scope"] == "global":
            return str(address["address"])
    return None


@pytest.fixture
def instances() -> Iterator[Callable[[str], str]]:
    """Hands out unique instance names and deletes those instances afterwards."""
    made: list[str] = []

    def name(prefix: str) -> str:
        made.append(f"{prefix}-{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield name
    leaked = {}
    for instance in made:
        # Right after a failed start LXD may still hold the instance busy for a moment.
        for _ in range(10):
            done = subprocess.run(
                ["lxc", "delete", "--force", "--project", PROJECT, instance],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            if done.returncode == 0 or not exists(f"/1.0/instances/{instance}?project={PROJECT}"):
                break
            time.sleep(1)
        else:
            leaked[instance] = done.stderr.strip()
    assert not leaked, f"could not delete test instances: {leaked}"


def test_status_reports_the_server_version() -> None:
    done = subprocess.run([SCRIPT, "status"], capture_output=True, text=True, check=False)

    assert done.returncode == 0
    assert done.stdout.startswith("LXD 5.") or done.stdout.startswith("LXD 6.")


def test_unknown_subcommand_prints_usage() -> None:
    done = subprocess.run([SCRIPT, "frobnicate"], capture_output=True, text=True, check=False)

    assert done.returncode == 2
    assert done.stderr.startswith("usage: dev-lxd.sh {install|")


@pytest.mark.daemon_wide  # `up` restarts the daemon or rebuilds an image where it must
@pytest.mark.skipif(os.geteuid() != 0, reason="dev-lxd.sh up needs root")
def test_up_a_second_time_changes_nothing() -> None:
    subprocess.run([SCRIPT, "up"], capture_output=True, check=True, timeout=900)

    again = subprocess.run([SCRIPT, "up"], capture_output=True, text=True, check=True, timeout=120)

    assert "(nothing changed)" in again.stdout, again.stderr


@pytest.mark.daemon_wide  # deletes ssp-busybox, which most tests start from, for a moment
@pytest.mark.skipif(os.geteuid() != 0, reason="dev-lxd.sh images needs root")
def test_an_image_built_from_an_older_recipe_is_replaced() -> None:
    # As if ssp-busybox had been built before runner/images/busybox last changed.
    recipe = lxc("image", "get-property", "ssp-busybox", "ssp.recipe").strip()
    assert len(recipe) == 16
    lxc("image", "set-property", "ssp-busybox", "ssp.recipe", "0ld0ld0ld0ld0ld0")

    done = subprocess.run(
        [SCRIPT, "images"], capture_output=True, text=True, check=True, timeout=600
    )

    assert (
        f"deleted image ssp-busybox: built from recipe 0ld0ld0ld0ld0ld0, now {recipe}"
        in done.stderr
    ), done.stderr
    assert "image ssp-busybox (" in done.stderr  # imported again
    assert lxc("image", "get-property", "ssp-busybox", "ssp.recipe").strip() == recipe
    assert "skip: image ssp-debian already imported" in done.stderr


def test_the_names_other_tests_rely_on_exist() -> None:
    assert exists("/1.0/storage-pools/default")
    bridge = query("/1.0/networks/lxdbr0")
    assert bridge["managed"] is True
    assert bridge["config"]["ipv4.address"]
    for alias in ("ssp-busybox", "ssp-debian"):
        assert exists(f"/1.0/images/aliases/{alias}?project={PROJECT}"), alias
    base = query(f"/1.0/instances/Common-Server?project={PROJECT}")
    assert base["status"] == "Stopped"
    assert exists(f"/1.0/instances/Common-Server/snapshots/golden?project={PROJECT}")


def test_busybox_container_gets_an_address_from_the_bridge(
    instances: Callable[[str], str],
) -> None:
    name = instances("smoke-bb")
    lxc("launch", "--quiet", "--project", PROJECT, "ssp-busybox", name)

    address = wait_for("an IPv4 address", lambda: ipv4_of(name), 15)

    bridge = ipaddress.ip_interface(query("/1.0/networks/lxdbr0")["config"]["ipv4.address"])
    assert ipaddress.ip_address(address) in bridge.network


def test_delegated_host_uids_map_into_a_container(
    instances: Callable[[str], str], tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    name = instances("smoke-idmap")
    lxc("init", "--quiet", "--project", PROJECT, "ssp-busybox", name)
    lxc("config", "set", "--project", PROJECT, name, "raw.idmap", "both 1000 1000\nboth 1099 1099")
    lxc(
        "config",
        "device",
        "add",
        "--project",
        PROJECT,
        name,
        "shared",
        "disk",
        f"source={shared}",
        "path=/shared",
    )
    os.chown(shared, 1000, 1000)
    (shared / "far").mkdir()
    os.chown(shared / "far", 1099, 1099)
    lxc("start", "--project", PROJECT, name)

    lxc(
        "exec",
        "--project",
        PROJECT,
        "--user",
        "1000",
        "--group",
        "1000",
        name,
        "--",
        "touch",
        "/shared/by-1000",
    )
    lxc(
        "exec",
        "--project",
        PROJECT,
        "--user",
        "1099",
        "--group",
        "1099",
        name,
        "--",
        "touch",
        "/shared/far/by-1099",
    )

    assert (shared / "by-1000").stat().st_uid == 1000
    assert (shared / "far" / "by-1099").stat().st_uid == 1099


def _sshd_listens(name: str) -> bool:
    done = subprocess.run(
        ["lxc", "exec", "--project", PROJECT, name, "--", "ss", "-Hltn", "sport = :22"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return "LISTEN" in done.stdout


@pytest.mark.slow
def test_clones_of_golden_run_sshd_with_their_own_identity(
    instances: Callable[[str], str],
) -> None:
    clones = [instances("smoke-clone"), instances("smoke-clone")]
    for name in clones:
        lxc("copy", "--quiet", "--project", PROJECT, "Common-Server/golden", name)
        lxc("start", "--project", PROJECT, name)

    identities = []
    for name in clones:
        wait_for(f"sshd in {name}", functools.partial(_sshd_listens, name), 60)
        identity = lxc(
            "exec",
            "--project",
            PROJECT,
            name,
            "--",
            "sh",
            "-c",
            "hostname; cat /etc/machine-id /etc/ssh/ssh_host_ed25519_key.pub",
        )
        hostname, machine_id, host_key = identity.splitlines()
        assert hostname == name
        identities.append((machine_id, host_key))
        sshd = lxc("exec", "--project", PROJECT, name, "--", "sshd", "-T")
        assert "passwordauthentication no" in sshd.splitlines()

    assert identities[0][0] != identities[1][0], "clones share a machine-id"
    assert identities[0][1] != identities[1][1], "clones share an SSH host key"
