"""Reconcile passes on a real LXD: what a request becomes, what a second pass does, retiring,
a GPU that is not there, and a half-made instance from an earlier failure.

Each test has its own LXD project (`lxd_project`) and a lab checkout pointing at it
(`helpers.LabRepo`). Passes run through `run_pass` with the real `Lxd` adapters, whose
request logs show what changed; what the containers hold is read back with `lxc`. Debian
clones of `Common-Server/golden` take seconds each on the dir pool, so one test walks one
container through its whole life; the busybox policy image carries the failure cases.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator

import pytest

from integration.helpers import (
    NOW,
    SHA,
    UIDS,
    Adapters,
    LabRepo,
    apply_pass,
    in_instance,
    lxc,
    lxc_query,
    outcomes,
)
from provisioner.flows.checkout import load_main
from provisioner.flows.reconcile import Pass, run_pass
from provisioner.host.ports import listening_ports
from provisioner.validation.validate import blocking
from provisioner.values.plandata import Create, Ready
from provisioner.values.spec import IMAGE

pytestmark = pytest.mark.lxd

BASE, GOLDEN = "Common-Server", "golden"
RETIRED_SNAPSHOT = f"retired-{NOW:%Y%m%d}"  # noon UTC is the same day in Asia/Shanghai
GPU0 = ("0000:18:00.0", "NVIDIA GeForce RTX 4090")  # GPU 0 of the sample config/hosts.yaml


def instance(project: str, name: str) -> dict[str, object]:
    found = lxc_query(f"/1.0/instances/{name}?recursion=1", project)
    assert isinstance(found, dict)
    return found


def config_of(project: str, name: str) -> dict[str, str]:
    config = instance(project, name)["config"]
    assert isinstance(config, dict)
    return config


def inside(project: str, name: str, *argv: str, uid: int = 0) -> str:
    return in_instance(project, name, *argv, uid=uid).stdout


def memory_limit(project: str, name: str) -> int:
    """The memory cgroup limit the container's processes run under (cgroup v1 or v2)."""
    text = inside(
        project,
        name,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    )
    return int(text.strip())


# --- a container's whole life ----------------------------------------------------------------


@pytest.mark.slow
def test_a_request_becomes_a_protected_unprivileged_container_then_retires(
    lab: LabRepo, adapters: Adapters, lxd_project: str, lxd_socket: str, suffix: str
) -> None:
    project = lxd_project
    a, b = f"alice-a-{suffix}", f"alice-b-{suffix}"
    req_a = lab.container(a, shares=["share"], snapshots="daily")
    req_b = lab.container(b)

    first = apply_pass(lab, adapters, req_a, req_b)

    assert outcomes(first) == {a: ("created", True, ""), b: ("created", True, "")}
    for name in (a, b):
        inst = instance(project, name)
        config = config_of(project, name)
        assert inst["status"] == "Running"
        # Unprivileged: nothing of a privileged base survives, and root inside is a high,
        # unprivileged UID on the host.
        assert config.get("security.privileged", "false") == "false"
        assert not [k for k in config if k.startswith("raw.") and k != "raw.idmap"]
        uid_map = inside(project, name, "cat", "/proc/self/uid_map").split("\n")[0].split()
        assert uid_map[0] == "0" and int(uid_map[1]) >= 65536, uid_map
        # Protected, labelled, limited.
        assert config["security.protection.delete"] == "true"
        assert config["security.idmap.isolated"] == "true"
        assert (config["limits.cpu"], config["limits.memory"]) == ("2", "1GiB")
        assert memory_limit(project, name) == 2**30
        assert config["user.ssp.managed"] == "true"
        assert config["user.ssp.owner"] == "alice"
        assert config["user.ssp.request"] == f"requests/alice/{name}.yaml"
        assert (config["user.ssp.state"], config["user.ssp.sha"]) == ("ready", SHA)
        assert config[IMAGE] == "common-server"
        assert inst["description"] == f"alice: Integration test {name}"
        # An address of its own from the bridge, reported in the outcome.
        (o,) = [o for o in first.result.outcomes if o.name == name]
        assert o.ipv4 and all(re.fullmatch(r"10\.\d+\.\d+\.\d+", ip) for ip in o.ipv4)
    (oa,) = [o for o in first.result.outcomes if o.name == a]
    (ob,) = [o for o in first.result.outcomes if o.name == b]
    assert not set(oa.ipv4) & set(ob.ipv4)
    # Both were made at once (apply's jobs), yet each has a host ID range of its own, the
    # one ssp chose (LXD 5.0.2's own choice could give both the same).
    bases = sorted(int(config_of(project, n)["volatile.idmap.base"]) for n in (a, b))
    assert bases[1] - bases[0] >= 65536, bases
    assert bases == sorted(int(config_of(project, n)["security.idmap.base"]) for n in (a, b))
    assert config_of(project, a)["snapshots.schedule"] == "@daily"
    devices = instance(project, a)["devices"]
    assert isinstance(devices, dict)
    assert devices["ssh"] == {
        "type": "proxy",
        "bind": "host",
        "listen": f"tcp:127.0.0.1:{oa.ssh_port}",
        "connect": "tcp:127.0.0.1:22",
    }
    assert devices["share-share"]["source"] == str(lab.share)

    # The share: raw.idmap maps alice's UID to itself, so she writes into a folder only her
    # host UID may enter, and the host sees her file as hers.
    assert config_of(project, a)["raw.idmap"] == f"both {UIDS['alice']} {UIDS['alice']}"
    assert f"{UIDS['alice']} {UIDS['alice']} 1" in " ".join(
        inside(project, a, "cat", "/proc/self/uid_map").split()
    )
    assert inside(project, a, "id", "-un", uid=UIDS["alice"]).strip() == "alice"
    in_instance(project, a, "sh", "-c", "echo hi > /home/user/share/note", uid=UIDS["alice"])
    note = lab.share / "note"
    assert (note.stat().st_uid, note.stat().st_gid) == (UIDS["alice"], UIDS["alice"])
    assert note.read_text() == "hi\n"
    # Root inside is no host root: what it writes there belongs to an unprivileged host UID.
    in_instance(project, a, "touch", "/home/user/share/by-root")
    assert (lab.share / "by-root").stat().st_uid >= 65536

    # Its own identity: machine-id and SSH host key differ from the base's and each other's.
    base_id = lxc("file", "pull", "--project", "default", f"{BASE}/etc/machine-id", "-").stdout
    ids = {name: inside(project, name, "cat", "/etc/machine-id").strip() for name in (a, b)}
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids.values()), ids
    assert len({*ids.values(), base_id.strip()}) == 3
    host_keys = {
        name: inside(project, name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub") for name in (a, b)
    }
    assert host_keys[a].split()[1] != host_keys[b].split()[1]
    assert host_keys[a].strip().endswith(f"root@{a}")

    # A second pass changes nothing, and reads LXD in two requests, as `ssp apply` does with
    # fresh adapters: connecting (`GET /1.0`, the project), then one listing of every
    # project's instances with their state (the project's, the shared server, every host ID
    # block) and one of ssp's images. The project's restrictions (may ssp choose host ID
    # blocks?) come from connecting; the shared server's project is not connected to.
    fresh = Adapters.make(project, lxd_socket)
    second = apply_pass(lab, fresh, req_a, req_b)
    assert fresh.main.requests == [
        ("GET", f"/1.0?project={project}"),
        ("GET", f"/1.0/projects/{project}?project={project}"),
        ("GET", "/1.0/instances?all-projects=true&recursion=2"),
        ("GET", f"/1.0/images?recursion=1&project={project}"),
    ]
    assert fresh.shared.requests == []
    assert second.plan.changes == ()
    assert outcomes(second) == {a: ("unchanged", True, ""), b: ("unchanged", True, "")}
    assert {o.name: o.ipv4 for o in second.result.outcomes} == {a: oa.ipv4, b: ob.ipv4}

    # LXD refuses to delete it (`lxc delete --force` stops it first, then is refused).
    refused = lxc("delete", "--force", "--project", project, b, check=False)
    assert refused.returncode != 0 and "protected" in refused.stderr
    assert instance(project, b)["status"] == "Stopped"

    # Its request removed: retired, i.e. stopped, snapshotted, labelled, kept, protected.
    third = apply_pass(lab, adapters, req_a)
    assert outcomes(third)[a] == ("unchanged", True, "")
    action, ok, message = outcomes(third)[b]
    assert (action, ok) == ("retired", True)
    assert RETIRED_SNAPSHOT in message
    retired = instance(project, b)
    config = config_of(project, b)
    assert retired["status"] == "Stopped"
    snapshots = lxc_query(f"/1.0/instances/{b}/snapshots?recursion=1", project)
    assert [s["name"] for s in snapshots] == [RETIRED_SNAPSHOT]
    assert config["user.ssp.retired"] == NOW.date().isoformat()
    assert config["security.protection.delete"] == "true"
    assert config["boot.autostart"] == "false"
    refused = lxc("delete", "--project", project, b, check=False)
    assert refused.returncode != 0 and "protected" in refused.stderr
    assert instance(project, a)["status"] == "Running"

    # And then nothing more happens to it.
    mutations = len(adapters.mutations())
    fourth = apply_pass(lab, adapters, req_a)
    assert adapters.mutations()[mutations:] == []
    assert outcomes(fourth) == {a: ("unchanged", True, "")}


# --- a GPU that is not on this host ------------------------------------------------------------


def test_a_missing_gpu_fails_its_request_clearly_and_a_refusal_changes_nothing(
    lab: LabRepo, adapters: Adapters, lxd_project: str, suffix: str
) -> None:
    project = lxd_project
    gpu, other = f"carol-gpu-{suffix}", f"carol-cpu-{suffix}"
    req_gpu = lab.container(gpu, owner="carol", image="busybox", gpus=[0])
    req_other = lab.container(other, owner="carol", image="busybox")

    first = apply_pass(lab, adapters, req_gpu, req_other)

    # The GPU device is stored as the inventory says: by PCI address, never by LXD's `id`.
    devices = instance(project, gpu)["devices"]
    assert isinstance(devices, dict)
    assert [d for d in devices.values() if d["type"] == "gpu"] == [
        {"type": "gpu", "gputype": "physical", "pci": GPU0[0]}
    ]
    action, ok, message = outcomes(first)[gpu]
    assert (action, ok) == ("failed", False)
    assert message.startswith(f"GPU 0 ({GPU0[1]}, PCI {GPU0[0]}) is not present on the host")
    assert "Invalid PCI address" in message
    assert instance(project, gpu)["status"] == "Stopped"
    assert config_of(project, gpu)["user.ssp.state"] == "creating"
    # ... while the other request of the same pass is made and runs.
    assert outcomes(first)[other][:2] == ("created", True)
    assert instance(project, other)["status"] == "Running"
    assert not first.result.ok

    # GPUs refused (say the device nodes are gone): GPU requests are refused before any
    # change, the half-made one is left as it is and a new one is not made at all.
    gpu2 = f"carol-gpu2-{suffix}"
    req_gpu2 = lab.container(gpu2, owner="carol", image="busybox", gpus=[1])
    mutations = len(adapters.mutations())
    refused = apply_pass(
        lab, adapters, req_gpu, req_other, req_gpu2, gpu_refusal="/dev/nvidia-uvm is missing"
    )
    assert adapters.mutations()[mutations:] == []
    for name in (gpu, gpu2):
        action, ok, message = outcomes(refused)[name]
        assert (action, ok) == ("refused", False)
        assert message == "GPUs cannot be attached now: /dev/nvidia-uvm is missing"
    assert outcomes(refused)[other] == ("unchanged", True, "")
    assert config_of(project, gpu)["user.ssp.state"] == "creating"
    missing = lxc("info", "--project", project, gpu2, check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr.lower()


# --- GPUs never move under a container ----------------------------------------------------------


def test_a_later_pin_waits_and_the_count_container_keeps_its_gpu_config(
    lab: LabRepo, adapters: Adapters, lxd_project: str, suffix: str
) -> None:
    # No GPU here, so a container with a gpu device cannot start: alice's container is made
    # without one, stopped, and given GPU 0 by hand, as a pass on a GPU host leaves a count
    # request (`gpus: 1`) that was given GPU 0. Then carol pins GPU 0.
    project = lxd_project
    alice, carol = f"alice-cnt-{suffix}", f"carol-pin-{suffix}"
    first = apply_pass(lab, adapters, lab.container(alice, image="busybox"))
    assert outcomes(first)[alice][:2] == ("created", True)
    lxc("stop", "--force", "--project", project, alice)
    device = "gpu-" + re.sub(r"[:.]", "-", GPU0[0])
    lxc("config", "device", "add", "--project", project, alice, device, "gpu",
        "gputype=physical", f"pci={GPU0[0]}")  # fmt: skip
    held = instance(project, alice)
    req_alice = lab.container(alice, image="busybox", gpus=1)
    req_carol = lab.container(carol, owner="carol", image="busybox", gpus=[0])

    mutations = len(adapters.mutations())
    done = apply_pass(lab, adapters, req_alice, req_carol)

    action, ok, message = outcomes(done)[carol]
    assert (action, ok) == ("waiting", True)  # in line for GPU 0, not refused
    assert message.startswith(f"GPU 0 ({GPU0[0]}) is held by container '{alice}'")
    missing = lxc("info", "--project", project, carol, check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr.lower()
    # alice's stored config and devices are as they were: nothing was written to her
    # container (only her start was tried, and fails here for want of a real GPU 0)
    after = instance(project, alice)
    assert after["devices"] == held["devices"] and after["config"] == held["config"]
    paths = [(m, p.split("?")[0]) for m, p in adapters.mutations()[mutations:]]
    written = [(m, p) for m, p in paths if p == f"/1.0/instances/{alice}" or "/devices" in p]
    assert written == [], written
    assert outcomes(done)[alice][0] != "updated"


# --- a half-made instance ---------------------------------------------------------------------


@pytest.fixture
def squatter(lab: LabRepo) -> Iterator[int]:
    """Another program listening on the first port of the lab's range."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", lab.ports[0]))
        sock.listen()
        yield lab.ports[0]


def test_a_half_made_instance_is_replaced_on_the_next_pass(
    lab: LabRepo, adapters: Adapters, lxd_project: str, suffix: str, squatter: int
) -> None:
    project = lxd_project
    name = f"alice-h-{suffix}"
    req = lab.container(name, image="busybox")

    # The port is taken after the host was looked at (busy_ports empty): start fails late.
    first = apply_pass(lab, adapters, req, busy_ports=frozenset())
    action, ok, message = outcomes(first)[name]
    assert (action, ok) == ("failed", False)
    assert message.startswith(f"port {squatter} is already taken on the host")
    config = config_of(project, name)
    assert config["user.ssp.state"] == "creating"
    assert config["security.protection.delete"] == "false"
    half_made_uuid = config["volatile.uuid"]

    second = apply_pass(lab, adapters, req)
    (create,) = second.plan.actions
    assert isinstance(create, Create) and create.replace_half_made
    assert outcomes(second)[name][:2] == ("created", True), outcomes(second)[name]
    config = config_of(project, name)
    assert config["volatile.uuid"] != half_made_uuid  # made again, not patched up
    assert (config["user.ssp.state"], config["security.protection.delete"]) == ("ready", "true")
    assert instance(project, name)["status"] == "Running"
    devices = instance(project, name)["devices"]
    assert isinstance(devices, dict)
    assert devices["ssh"]["listen"] == f"tcp:127.0.0.1:{squatter + 1}"

    third = apply_pass(lab, adapters, req)
    assert [type(a) for a in third.plan.actions] == [Ready]


# --- requests that no longer fit together on main ---------------------------------------------


def commit_main(lab: LabRepo, *requests: tuple[str, bytes], message: str) -> None:
    """Write exactly these requests into the lab's checkout and commit them on `main`."""
    lab.write(*requests)
    git = ["git", "-C", str(lab.root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    if not (lab.root / ".git").exists():
        subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A", "--", "requests", "config"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", message], check=True, capture_output=True)


def test_a_capacity_conflict_on_main_refuses_the_newest_and_applies_the_rest(
    lab: LabRepo, adapters: Adapters, lxd_project: str, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A host of 4 cores. alice's and then carol's 2-core containers fill it; a later merge
    # adds carol's third (whose name sorts before her first) and changes alice's purpose.
    project = lxd_project
    hosts = lab.hosts().replace("    cpu: 64\n", "    cpu: 4\n")
    monkeypatch.setattr(lab, "hosts", lambda: hosts)
    a, c, b = f"alice-a-{suffix}", f"carol-c-{suffix}", f"carol-b-{suffix}"
    req_a = lab.container(a, image="busybox")
    req_c = lab.container(c, owner="carol", image="busybox")
    req_b = lab.container(b, owner="carol", image="busybox")
    commit_main(lab, req_a, message="alice's container")
    commit_main(lab, req_a, req_c, message="carol's first")
    first = run(lab, adapters)
    assert outcomes(first) == {a: ("created", True, ""), c: ("created", True, "")}

    changed_a = lab.container(a, image="busybox", purpose="A new purpose")
    commit_main(lab, changed_a, req_c, req_b, message="carol's second, alice's new purpose")
    second = run(lab, adapters)

    # Nothing stopped the pass: the newest request that does not fit is refused, alone.
    assert outcomes(second) == {
        a: ("updated", True, "description changed"),
        c: ("unchanged", True, ""),
    }
    (skipped,) = second.skipped
    assert (skipped.path, skipped.rule) == (f"requests/carol/{b}.yaml", "capacity.cpu")
    assert "would need 6, the host has 4" in skipped.message
    assert instance(project, a)["description"] == "alice: A new purpose"
    assert instance(project, c)["status"] == "Running"
    missing = lxc("info", "--project", project, b, check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr.lower()


def run(lab: LabRepo, adapters: Adapters) -> Pass:
    """One pass over the lab's committed `main`, validated as `ssp apply` does (with ages)."""
    validation, sha = load_main(lab.root, NOW)
    assert not blocking(validation)
    return run_pass(
        validation,
        adapters.main,
        lambda _instance: adapters.shared,
        now=NOW,
        sha=sha,
        busy_ports=listening_ports(),
        ipv4_timeout_s=30,
    )
