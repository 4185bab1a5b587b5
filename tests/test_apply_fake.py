"""Apply against the in-memory LXD: what a request becomes, and that a second run does nothing.

Each test runs whole reconcile passes (`run_pass`: observe → plan → apply) on a `FakeLxd`
seeded like the lab's host: a running Common-Server with the seed's bad habits (a GPU device
without a PCI address, `security.privileged`, `raw.lxc`) and its `golden` snapshot. The fake
counts every call, so "nothing changed" is asserted as zero mutating calls.
"""

from __future__ import annotations

import shutil
import threading

import pytest
from fakelxd import BASE, BASE_MACHINE_ID, NOW, OLD_KEYS, FakeLxd, File, Lab, User

from provisioner.applying.warm import refill
from provisioner.flows.reconcile import Pass, run_pass
from provisioner.validation.validate import blocking
from provisioner.values.errors import LxdError
from provisioner.values.idranges import IdRange
from provisioner.values.outcomes import GpuInfo
from provisioner.values.state import (
    ACCOUNT,
    IDLE_LEASE,
    MANAGED,
    OWNER,
    RELEASED,
    REQUEST,
    RESTORED,
    RETIRED,
    SHA,
    STATE,
    WARM,
)

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

COMMIT = "c0ffee" * 6 + "abcd"
PCI = {0: "0000:18:00.0", 1: "0000:3b:00.0", 2: "0000:86:00.0", 3: "0000:af:00.0"}
MODEL = "NVIDIA GeForce RTX 4090"


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def fake() -> FakeLxd:
    return FakeLxd.seeded(present_gpus=list(PCI.values()))


def apply(lab: Lab, fake: FakeLxd, *requests: tuple[str, bytes], **options: object) -> Pass:
    v = lab.validate(*requests)
    assert not blocking(v), v.problems
    return run_pass(v, fake, fake.servers, now=NOW, sha=COMMIT, **options)  # type: ignore[arg-type]


def outcomes(done: Pass) -> dict[str, tuple[str, bool, str]]:
    return {o.name: (o.action, o.ok, o.message) for o in done.result.outcomes}


# --- a new container ----------------------------------------------------------------------------


def test_a_request_becomes_a_running_unprivileged_container(lab: Lab, fake: FakeLxd) -> None:
    req = lab.container("alice-x", gpus=1, shares=["share"], snapshots="daily", cpu=4)
    done = apply(lab, fake, req)
    assert outcomes(done) == {"alice-x": ("created", True, "")}
    (o,) = done.result.outcomes
    rec = fake.record("alice-x")
    assert rec.status == "Running"
    c = rec.config
    # nothing of the base's security settings survives the clone
    assert "security.privileged" not in c
    assert [k for k in c if k.startswith("raw.")] == ["raw.idmap"]
    assert "user.lab.note" not in c
    assert c["raw.idmap"] == "both 1001 1001"  # alice's UID: the share is writable as her
    assert c["security.idmap.isolated"] == "true"
    assert c["security.protection.delete"] == "true"
    assert (c["limits.cpu"], c["limits.memory"], c["limits.processes"]) == ("4", "32GiB", "10000")
    assert (c["snapshots.schedule"], c["snapshots.expiry"]) == ("@daily", "2w")
    assert (c[MANAGED], c[OWNER], c[REQUEST]) == ("true", "alice", "requests/alice/alice-x.yaml")
    assert (c[STATE], c[SHA]) == ("ready", COMMIT)
    # only our devices: no inherited every-GPU device, no hand-made share mount
    assert sorted(rec.devices) == ["gpu-0000-18-00-0", "root", "share-share", "ssh"]
    assert rec.devices["gpu-0000-18-00-0"] == {"type": "gpu", "gputype": "physical", "pci": PCI[0]}
    assert rec.devices["ssh"] == {
        "type": "proxy",
        "bind": "host",
        "listen": "tcp:0.0.0.0:22001",
        "connect": "tcp:127.0.0.1:22",
    }
    assert rec.devices["share-share"]["path"] == "/home/user/share"
    assert rec.devices["root"]["size"] == "102400MiB"
    # its own identity: a new machine-id and host key, the base's keys gone
    files = rec.inside.files
    assert files["/etc/machine-id"].data != BASE_MACHINE_ID
    assert len(files["/etc/machine-id"].data.strip()) == 32
    assert not [k for k in OLD_KEYS if k in files and b"base host key" in files[k].data]
    assert files["/etc/ssh/ssh_host_ed25519_key.pub"].data.endswith(b" root@alice-x\n")
    assert files["/etc/ssh/ssh_host_ed25519_key"].mode == 0o600
    # the owner, with the policy's UID, and her key
    alice = rec.inside.users["alice"]
    assert (alice.uid, alice.gid, alice.home) == (1001, 1001, "/home/alice")
    keys = files["/home/alice/.ssh/authorized_keys"]
    assert keys.data == (lab.keys["alice"][0] + "\n").encode()
    assert (keys.mode, keys.uid, keys.gid) == (0o600, 1001, 1001)
    assert rec.inside.dirs["/home/alice/.ssh"] == (0o700, 1001, 1001)
    # created stopped, configured, given its identity, verified, and only then started
    steps = [method for method, name in fake.calls if name == "alice-x"]
    assert steps[:3] == ["create", "replace", "push_file"]
    assert steps.index("start") > max(i for i, m in enumerate(steps) if m == "instance")
    assert steps.index("start") > steps.index("push_file")
    # what the PR comment is made of
    assert o.ipv4 and o.ipv4 != fake.view("default").instance(BASE).ipv4
    assert (o.ssh_port, o.login, o.snapshots) == (22001, "alice", "daily")
    assert o.gpus == (GpuInfo(0, MODEL, PCI[0]),)
    assert [s.id for s in o.shares] == ["share"]


def test_clones_get_addresses_of_their_own(lab: Lab, fake: FakeLxd) -> None:
    done = apply(lab, fake, lab.container("alice-x"), lab.container("alice-y"))
    addresses = {o.ipv4 for o in done.result.outcomes} | {fake.view("default").instance(BASE).ipv4}
    assert len(addresses) == 3


def test_a_container_from_an_image_alias(lab: Lab, fake: FakeLxd) -> None:
    done = apply(lab, fake, lab.container("alice-x", image="ubuntu-24.04"))
    assert outcomes(done)["alice-x"][:2] == ("created", True)
    assert fake.record("alice-x").config["image.os"] == "Ubuntu"


def test_a_desktop_gets_xrdp_and_a_second_forward(lab: Lab, fake: FakeLxd) -> None:
    apply(lab, fake, lab.container("alice-x", desktop=True))
    rec = fake.record("alice-x")
    assert rec.devices["rdp"]["listen"] == "tcp:0.0.0.0:22002"
    assert rec.devices["rdp"]["connect"] == "tcp:127.0.0.1:3389"
    assert {"xrdp", "xfce4"} <= rec.inside.packages


def test_no_address_yet_is_said_and_the_owner_is_still_set_up(lab: Lab, fake: FakeLxd) -> None:
    fake.daemon.no_dhcp.add("alice-x")
    done = apply(lab, fake, lab.container("alice-x"))
    assert outcomes(done) == {"alice-x": ("created", True, "no IPv4 address yet")}
    rec = fake.record("alice-x")
    assert "/home/alice/.ssh/authorized_keys" in rec.inside.files
    assert rec.config[STATE] == "ready"


def test_a_desktop_without_an_address_fails_clearly_and_is_made_again(
    lab: Lab, fake: FakeLxd
) -> None:
    fake.daemon.no_dhcp.add("alice-x")
    req = lab.container("alice-x", desktop=True)
    action, ok, message = outcomes(apply(lab, fake, req))["alice-x"]
    assert (action, ok) == ("failed", False)
    assert message == (
        "alice-x got no IPv4 address within 60 s, so the desktop (xrdp, xfce) could not be "
        "installed; the next apply makes it again"
    )
    assert fake.record("alice-x").config[STATE] == "creating"
    fake.daemon.no_dhcp.clear()
    assert outcomes(apply(lab, fake, req))["alice-x"][:2] == ("created", True)
    assert {"xrdp", "xfce4"} <= fake.record("alice-x").inside.packages


# --- idempotence ---------------------------------------------------------------------------------


def test_a_second_pass_makes_no_mutating_call(lab: Lab, fake: FakeLxd) -> None:
    requests = (
        lab.container("alice-x", gpus=2, shares=["share"], desktop=True),
        lab.container("carol-y", owner="carol", gpus=[3]),
        lab.container("bob-x", owner="bob", snapshots="none"),
        lab.account("bob-nb", sudo=True),
    )
    first = apply(lab, fake, *requests)
    assert all(o.ok for o in first.result.outcomes), outcomes(first)
    calls, mutations = len(fake.calls), len(fake.mutations)
    second = apply(lab, fake, *requests)
    assert fake.mutations[mutations:] == []
    assert second.plan.changes == ()
    # every request is reported, the account too, so a re-run can write its comment again
    assert [(o.name, o.action) for o in second.result.outcomes] == [
        ("alice-x", "unchanged"),
        ("bob-x", "unchanged"),
        ("carol-y", "unchanged"),
        ("bob-nb", "unchanged"),
    ]
    # the result still carries everything the comment shows
    assert {o.name: o.ipv4 for o in second.result.outcomes} == {
        o.name: o.ipv4 for o in first.result.outcomes
    }
    (account,) = [o for o in second.result.outcomes if o.kind == "account"]
    assert (account.login, account.server, account.sudo, account.ssh_port) == (
        "bob-nb",
        "common",
        True,
        22000,  # the sample's shared server forwards its SSH: the comment gives that port
    )
    # one listing of every project's instances (the project's, the shared server, every
    # host ID block) and one of ssp's images
    assert fake.calls[calls:] == [("all_instances", ""), ("images", "")]
    assert account.ipv4 == fake.view("default").instance(BASE).ipv4


# --- one request's failure -------------------------------------------------------------------


def test_a_missing_gpu_fails_that_request_clearly_and_the_others_apply(lab: Lab) -> None:
    fake = FakeLxd.seeded(present_gpus=[PCI[1], PCI[2], PCI[3]])  # GPU 0 fell off the bus
    done = apply(
        lab, fake, lab.container("alice-x", gpus=[0]), lab.container("carol-y", owner="carol")
    )
    action, ok, message = outcomes(done)["alice-x"]
    assert (action, ok) == ("failed", False)
    assert message.startswith(
        f"GPU 0 ({MODEL}, PCI {PCI[0]}) is not present on the host, so alice-x cannot start"
    )
    assert "Invalid PCI address (no device found): 0000:18:00.0" in message
    assert outcomes(done)["carol-y"][:2] == ("created", True)
    assert fake.record("carol-y").status == "Running"
    assert not done.result.ok


def test_a_port_taken_on_the_host_fails_clearly_then_moves(lab: Lab, fake: FakeLxd) -> None:
    fake.daemon.busy_host_ports.add(22001)  # a program the plan was not told about
    done = apply(lab, fake, lab.container("alice-x"))
    _action, ok, message = outcomes(done)["alice-x"]
    assert not ok
    assert message.startswith("port 22001 is already taken on the host by another program")
    # The next run sees the port busy (as /proc/net shows it) and remakes the half-made one.
    done = apply(lab, fake, lab.container("alice-x"), busy_ports=frozenset({22001}))
    assert outcomes(done)["alice-x"][:2] == ("created", True)
    assert fake.record("alice-x").devices["ssh"]["listen"] == "tcp:0.0.0.0:22002"


@pytest.mark.parametrize(
    "method", ["create", "replace", "push_file", "start", "execute", "set_config"]
)
def test_a_failure_leaves_the_others_applied_and_is_finished_next_time(
    lab: Lab, fake: FakeLxd, method: str
) -> None:
    requests = (
        lab.container("alice-x"),
        lab.container("bob-x", owner="bob"),
        lab.container("carol-y", owner="carol"),
    )
    fake.fail_on(method, "bob-x", "boom", times=1)
    first = apply(lab, fake, *requests)
    assert outcomes(first)["bob-x"] == ("failed", False, "boom")
    assert outcomes(first)["alice-x"][:2] == outcomes(first)["carol-y"][:2] == ("created", True)
    second_calls = len(fake.mutations)
    second = apply(lab, fake, *requests)
    assert outcomes(second)["bob-x"][:2] == ("created", True)
    assert {name for _m, name in fake.mutations[second_calls:]} == {"bob-x"}
    rec = fake.record("bob-x")
    assert (rec.status, rec.config[STATE]) == ("Running", "ready")
    assert rec.config["security.protection.delete"] == "true"
    assert "bob" in rec.inside.users
    third = len(fake.mutations)
    apply(lab, fake, *requests)
    assert fake.mutations[third:] == []


def test_new_containers_are_made_several_at_a_time(lab: Lab, fake: FakeLxd) -> None:
    # Each create waits until three are in flight: made one after another, it would break.
    fake.daemon.create_gate = threading.Barrier(3, timeout=10)
    requests = [lab.container(f"{who}-x", owner=who) for who in ("carol", "alice", "bob")]
    done = apply(lab, fake, *requests, jobs=3)
    assert [(o.name, o.action, o.ok) for o in done.result.outcomes] == [
        ("alice-x", "created", True),  # the plan's order, whichever finished first
        ("bob-x", "created", True),
        ("carol-x", "created", True),
    ]
    assert len({o.ipv4 for o in done.result.outcomes}) == 3
    assert {o.ssh_port for o in done.result.outcomes} == {22001, 22002, 22003}
    for who in ("alice", "bob", "carol"):
        rec = fake.record(f"{who}-x")
        assert (rec.status, rec.config[STATE]) == ("Running", "ready")
        assert who in rec.inside.users


def test_one_at_a_time_when_asked(lab: Lab, fake: FakeLxd) -> None:
    apply(lab, fake, lab.container("alice-x"), lab.container("bob-x", owner="bob"), jobs=1)
    made = [name for method, name in fake.calls if method in ("create", "set_config")]
    # alice-x is finished (marked ready) before bob-x is begun
    assert made == ["alice-x", "alice-x", "bob-x", "bob-x"]


def test_existing_instances_are_changed_before_new_ones_are_made(lab: Lab, fake: FakeLxd) -> None:
    apply(lab, fake, lab.container("alice-old"), lab.container("bob-x", owner="bob"))
    fake.stop("bob-x")
    done = apply(lab, fake, lab.container("alice-new"), lab.container("bob-x", owner="bob"))
    # reported in the plan's order
    assert [(o.name, o.action) for o in done.result.outcomes] == [
        ("alice-new", "created"),
        ("bob-x", "started"),
        ("alice-old", "retired"),
    ]
    # but carried out changes first, so a retirement is stopped before anything new starts
    calls = [(m, n) for m, n in fake.calls if m in ("stop", "start", "create")][-4:]
    assert calls == [
        ("start", "bob-x"),
        ("stop", "alice-old"),
        ("create", "alice-new"),
        ("start", "alice-new"),
    ]


# --- retire --------------------------------------------------------------------------------------


def test_a_removed_request_is_retired_and_kept(lab: Lab, fake: FakeLxd) -> None:
    apply(lab, fake, lab.container("alice-x"), lab.container("alice-y"))
    done = apply(lab, fake, lab.container("alice-x"))
    action, ok, message = outcomes(done)["alice-y"]
    assert (action, ok) == ("retired", True)
    assert "kept as snapshot retired-20270110 for 30 days" in message
    rec = fake.record("alice-y")
    assert rec.status == "Stopped"
    assert "retired-20270110" in rec.snapshots
    assert rec.config[RETIRED] == "2027-01-10"
    assert rec.config["boot.autostart"] == "false"
    assert rec.config["security.protection.delete"] == "true"
    with pytest.raises(LxdError, match="Container is protected"):
        fake.delete("alice-y")
    assert fake.record("alice-x").status == "Running"
    before = len(fake.mutations)
    again = apply(lab, fake, lab.container("alice-x"))
    assert fake.mutations[before:] == []
    assert [o.name for o in again.result.outcomes] == ["alice-x"]


def test_a_retired_container_comes_back_when_asked_for_again(lab: Lab, fake: FakeLxd) -> None:
    apply(lab, fake, lab.container("alice-x"))
    apply(lab, fake)
    assert fake.record("alice-x").status == "Stopped"
    # asked for again, with a new key: started first, then the key goes in
    done = apply(lab, fake, lab.container("alice-x", ssh_keys=lab.keys["alice"]))
    assert outcomes(done)["alice-x"][:2] == ("updated", True)
    rec = fake.record("alice-x")
    assert rec.status == "Running"
    assert RETIRED not in rec.config
    assert rec.config["boot.autostart"] == "true"
    keys = rec.inside.files["/home/alice/.ssh/authorized_keys"].data.decode().splitlines()
    assert keys == lab.keys["alice"]
    before = len(fake.mutations)
    apply(lab, fake, lab.container("alice-x", ssh_keys=lab.keys["alice"]))
    assert fake.mutations[before:] == []


def test_an_ended_lease_is_kept_as_expired_and_a_renewal_restarts_it(
    lab: Lab, fake: FakeLxd
) -> None:
    apply(lab, fake, lab.container("alice-x"), lab.container("alice-y"))
    fake.record("alice-x").inside.files["/root/thesis"] = File(b"data", 0o644, 0, 0)
    done = apply(
        lab, fake, lab.container("alice-x", expires="2027-01-09"), lab.container("alice-y")
    )
    action, ok, message = outcomes(done)["alice-x"]
    assert (action, ok) == ("retired", True)
    assert message.startswith("its lease expired: stopped and kept as snapshot retired-20270110")
    assert "a renewal" in message
    rec = fake.record("alice-x")
    assert (rec.status, rec.config[STATE], rec.config[RETIRED]) == (
        "Stopped",
        "expired",
        "2027-01-10",
    )
    apply(lab, fake, lab.container("alice-x"))  # alice-y's request removed: given back
    assert fake.record("alice-y").config[STATE] == "retired"

    renewed = apply(lab, fake, lab.container("alice-x", expires="2027-03-01"))
    assert outcomes(renewed)["alice-x"][:2] == ("updated", True)
    rec = fake.record("alice-x")
    assert (rec.status, rec.config[STATE]) == ("Running", "ready")
    assert RETIRED not in rec.config
    assert rec.inside.files["/root/thesis"].data == b"data"


def test_a_restore_rolls_back_once_and_puts_the_spec_back(lab: Lab, fake: FakeLxd) -> None:
    apply(lab, fake, lab.container("alice-x"))
    rec = fake.record("alice-x")
    rec.inside.files["/root/f"] = File(b"before", 0o644, 0, 0)
    fake.snapshot("alice-x", "before")
    rec.inside.files["/root/f"] = File(b"after", 0o644, 0, 0)
    renewed = lab.container("alice-x", restore="before", expires="2027-05-01", cpu=2)
    done = apply(lab, fake, renewed)
    assert outcomes(done)["alice-x"] == (
        "restored",
        True,
        "rolled back to snapshot before; files written since then are gone",
    )
    rec = fake.record("alice-x")
    assert rec.status == "Running" and rec.inside.files["/root/f"].data == b"before"
    # the snapshot's config came back with it; what the request asks now is put back
    assert (rec.config["limits.cpu"], rec.config[RESTORED]) == ("2", "before")
    before = len(fake.mutations)
    again = apply(lab, fake, renewed)
    assert outcomes(again)["alice-x"][0] == "unchanged"
    assert fake.mutations[before:] == []
    missing = apply(lab, fake, lab.container("alice-x", restore="gone", cpu=2))
    assert outcomes(missing)["alice-x"][:2] == ("refused", False)
    assert fake.mutations[before:] == []


# --- updates and hand edits ---------------------------------------------------------------------


def test_a_share_added_later_restarts_the_container_with_the_idmap(lab: Lab, fake: FakeLxd) -> None:
    apply(lab, fake, lab.container("alice-x"))
    before = len(fake.calls)
    done = apply(lab, fake, lab.container("alice-x", shares=["share"]))
    assert outcomes(done)["alice-x"][:2] == ("updated", True)
    assert ("stop", "alice-x") in fake.calls[before:]
    assert ("start", "alice-x") in fake.calls[before:]
    rec = fake.record("alice-x")
    assert rec.status == "Running"
    assert rec.config["raw.idmap"] == "both 1001 1001"


def test_the_first_gpu_restarts_into_the_nvidia_runtime_and_more_are_hot_plugged(
    lab: Lab, fake: FakeLxd
) -> None:
    apply(lab, fake, lab.container("alice-x"))
    assert not [k for k in fake.record("alice-x").config if k.startswith("nvidia.")]
    before = len(fake.calls)
    apply(lab, fake, lab.container("alice-x", gpus=1))
    # the runtime injects the host driver's libraries at start: without a restart CUDA would
    # see the card and find no libcuda
    config = fake.record("alice-x").config
    assert (config["nvidia.runtime"], config["nvidia.driver.capabilities"]) == (
        "true",
        "compute,utility",
    )
    assert ("stop", "alice-x") in fake.calls[before:]
    assert fake.record("alice-x").status == "Running"
    before = len(fake.calls)
    apply(lab, fake, lab.container("alice-x", gpus=2))
    assert ("stop", "alice-x") not in fake.calls[before:]
    assert "gpu-0000-3b-00-0" in fake.record("alice-x").devices


def test_without_the_nvidia_container_tools_a_gpu_request_fails_saying_what_to_install(
    lab: Lab, fake: FakeLxd
) -> None:
    fake.daemon.nvidia_driver = None  # what LXD finds without nvidia-container-cli
    done = apply(lab, fake, lab.container("alice-x", gpus=1), lab.container("alice-y"))
    action, ok, message = outcomes(done)["alice-x"]
    assert (action, ok) == ("failed", False)
    assert message.startswith(
        "alice-x cannot start with its GPUs: the policy's gpu_userspace is nvidia-runtime and "
        "this host lacks nvidia-container-cli"
    )
    assert "The NVIDIA container tools couldn't be found" in message
    assert outcomes(done)["alice-y"][:2] == ("created", True)


def test_with_the_userspace_in_the_image_gpus_hot_plug_and_nvidia_keys_are_the_admins(
    lab: Lab, fake: FakeLxd
) -> None:
    image = lab.edited("gpu_userspace: nvidia-runtime", "gpu_userspace: image")
    apply(image, fake, image.container("alice-x"))
    before = len(fake.calls)
    apply(image, fake, image.container("alice-x", gpus=1))
    assert ("stop", "alice-x") not in fake.calls[before:]
    rec = fake.record("alice-x")
    assert "gpu-0000-18-00-0" in rec.devices
    assert not [k for k in rec.config if k.startswith("nvidia.")]
    # an admin turns the runtime on by hand for this one: ssp neither reverts nor restarts it
    fake.set_config("alice-x", {"nvidia.runtime": "true"})
    before = len(fake.mutations)
    done = apply(image, fake, image.container("alice-x", gpus=1))
    assert fake.mutations[before:] == []
    assert outcomes(done)["alice-x"] == ("unchanged", True, "")
    assert rec.config["nvidia.runtime"] == "true"


def test_a_later_pin_never_takes_the_gpu_from_a_running_count_container(
    lab: Lab, fake: FakeLxd
) -> None:
    apply(lab, fake, lab.container("alice-x", gpus=1))  # her count became GPU 0
    held = {k: dict(v) for k, v in fake.record("alice-x").devices.items()}
    assert held["gpu-0000-18-00-0"]["pci"] == PCI[0]
    before = len(fake.calls)
    done = apply(
        lab,
        fake,
        lab.container("alice-x", gpus=1),
        lab.container("carol-y", owner="carol", gpus=[0]),
        lab.container("carol-z", owner="carol", gpus=[1]),
    )
    action, ok, message = outcomes(done)["carol-y"]
    assert (action, ok) == ("waiting", True)  # in line for GPU 0, not refused
    assert f"GPU 0 ({PCI[0]}) is held by container 'alice-x'" in message
    assert "GPUs never move under a container" in message
    # alice's container is untouched: same devices, never stopped or restarted, still running
    rec = fake.record("alice-x")
    assert rec.devices == held and rec.status == "Running"
    assert [m for m, name in fake.mutations[before:] if name == "alice-x"] == []
    assert ("stop", "alice-x") not in fake.calls[before:]
    # carol-y was never made; the pin on a free GPU was, beside it
    assert "carol-y" not in {i.name for i in fake.instances()}
    assert outcomes(done)["carol-z"][:2] == ("created", True)
    assert fake.record("carol-z").devices["gpu-0000-3b-00-0"]["pci"] == PCI[1]


def test_hand_edits_of_ours_are_reverted_and_others_reported(lab: Lab, fake: FakeLxd) -> None:
    apply(lab, fake, lab.container("alice-x"))
    fake.set_config("alice-x", {"security.privileged": "true", "environment.HTTP_PROXY": "p:1"})
    rec = fake.record("alice-x")
    rec.devices["everything"] = {"type": "gpu"}
    done = apply(lab, fake, lab.container("alice-x"))
    assert outcomes(done)["alice-x"][:2] == ("updated", True)
    assert "security.privileged" not in rec.config
    assert "everything" not in rec.devices
    assert rec.config["environment.HTTP_PROXY"] == "p:1"  # not ours: left, and reported
    assert [d.message for d in done.result.drift] == [
        "config environment.HTTP_PROXY='p:1' was set by hand (left as it is)"
    ]
    before = len(fake.mutations)
    again = apply(lab, fake, lab.container("alice-x"))
    assert fake.mutations[before:] == []
    assert len(again.result.drift) == 1


def test_a_stopped_container_is_started(lab: Lab, fake: FakeLxd) -> None:
    apply(lab, fake, lab.container("alice-x"))
    fake.stop("alice-x")
    done = apply(lab, fake, lab.container("alice-x"))
    assert outcomes(done)["alice-x"][:2] == ("started", True)
    assert fake.record("alice-x").status == "Running"


# --- dry run -------------------------------------------------------------------------------------


def test_a_dry_run_changes_nothing(lab: Lab, fake: FakeLxd) -> None:
    apply(lab, fake, lab.container("alice-y"))
    before = len(fake.mutations)
    done = apply(lab, fake, lab.container("alice-x", gpus=1), lab.account("bob-nb"), dry_run=True)
    assert fake.mutations[before:] == []
    assert outcomes(done) == {
        "alice-x": ("would create", True, ""),
        "alice-y": ("would retire", True, ""),
        "bob-nb": ("would change account", True, ""),
    }
    assert done.result.dry_run


# --- accounts on the shared server -------------------------------------------------------------


def test_an_exec_whose_output_was_lost_is_read_again(lab: Lab, fake: FakeLxd) -> None:
    fake.daemon.lost_output[(BASE, "id")] = 2  # `id -u` comes back empty twice, then right
    (o,) = apply(lab, fake, lab.account("bob-nb")).result.outcomes
    assert (o.action, o.ok) == ("created", True)
    user = fake.view("default").record(BASE).inside.users["bob-nb"]
    keys = fake.view("default").record(BASE).inside.files["/home/bob-nb/.ssh/authorized_keys"]
    assert (keys.uid, keys.gid) == (user.uid, user.gid)


def test_an_exec_that_never_prints_its_number_fails_the_account_clearly(
    lab: Lab, fake: FakeLxd
) -> None:
    fake.daemon.lost_output[(BASE, "id")] = 3
    (o,) = apply(lab, fake, lab.account("bob-nb")).result.outcomes
    assert (o.action, o.ok) == ("failed", False)
    assert o.message == f"`id -u` in {BASE} printed '', not a number"


def test_an_account_is_made_on_the_shared_server_then_locked(lab: Lab, fake: FakeLxd) -> None:
    base = fake.view("default")
    done = apply(lab, fake, lab.account("bob-nb"))
    (o,) = done.result.outcomes
    assert (o.kind, o.action, o.ok, o.login, o.server) == (
        "account",
        "created",
        True,
        "bob-nb",
        "common",
    )
    assert o.ipv4 == base.instance(BASE).ipv4
    shared = base.record(BASE)
    user = shared.inside.users["bob-nb"]
    assert not user.locked
    keys = shared.inside.files["/home/bob-nb/.ssh/authorized_keys"]
    assert keys.data == (lab.keys["bob"][0] + "\n").encode()
    assert (keys.uid, keys.gid) == (user.uid, user.gid)
    assert "bob-nb" not in shared.inside.groups["sudo"][1]
    assert '"state":"active"' in shared.config[ACCOUNT + "bob-nb"]
    before = len(fake.mutations)
    apply(lab, fake, lab.account("bob-nb"))
    assert fake.mutations[before:] == []
    # sudo, then removed: locked, keys gone, home kept
    apply(lab, fake, lab.account("bob-nb", sudo=True))
    assert "bob-nb" in shared.inside.groups["sudo"][1]
    done = apply(lab, fake)
    (o,) = done.result.outcomes
    assert (o.action, o.owner, o.request_path) == ("locked", "bob", "requests/bob/bob-nb.yaml")
    assert user.locked and user.expired
    assert "/home/bob-nb/.ssh/authorized_keys" not in shared.inside.files
    assert "/home/bob-nb" in shared.inside.dirs
    assert '"state":"locked"' in shared.config[ACCOUNT + "bob-nb"]
    before = len(fake.mutations)
    apply(lab, fake)
    assert fake.mutations[before:] == []
    # asked for again: unlocked with its keys
    apply(lab, fake, lab.account("bob-nb"))
    assert not user.locked and not user.expired
    assert "/home/bob-nb/.ssh/authorized_keys" in shared.inside.files
    assert "bob-nb" not in shared.inside.groups["sudo"][1]


@pytest.mark.parametrize("made_by_hand", ["user", "group"])
def test_an_existing_user_or_group_ssp_did_not_make_is_not_taken_over(
    lab: Lab, fake: FakeLxd, made_by_hand: str
) -> None:
    # Someone (a package, an admin) already made bob-nb on the shared server: its files and
    # rights must not go to the member who asks for that name.
    shared = fake.view("default").record(BASE)
    if made_by_hand == "user":
        shared.inside.users["bob-nb"] = User(1500, 1500, "/home/bob-nb", "/bin/sh")
    else:
        shared.inside.groups["bob-nb"] = (1500, {"user"})
    done = apply(lab, fake, lab.account("bob-nb"), lab.account("carol-nb", owner="carol"))
    outcomes = {o.name: o for o in done.result.outcomes}
    bob = outcomes["bob-nb"]
    assert (bob.action, bob.ok) == ("refused", False)
    assert bob.message.startswith(
        f"a {made_by_hand} named 'bob-nb' already exists on {BASE} and was not made by ssp, "
        "so it is not taken over"
    )
    assert ACCOUNT + "bob-nb" not in shared.config
    assert "/home/bob-nb/.ssh/authorized_keys" not in shared.inside.files
    if made_by_hand == "user":
        assert shared.inside.users["bob-nb"] == User(1500, 1500, "/home/bob-nb", "/bin/sh")
    # the other account of the same pass is made as usual
    assert (outcomes["carol-nb"].action, outcomes["carol-nb"].ok) == ("created", True)
    # and asked again, it is refused again: nothing was recorded as ours
    again = apply(lab, fake, lab.account("bob-nb"), lab.account("carol-nb", owner="carol"))
    assert [(o.name, o.action) for o in again.result.outcomes] == [
        ("bob-nb", "refused"),
        ("carol-nb", "unchanged"),
    ]


def test_a_user_ssp_began_to_make_is_its_own_on_the_next_run(lab: Lab, fake: FakeLxd) -> None:
    # A run that stopped right after useradd leaves the user and a record still 'creating'
    # (written before the user was made): the next run finishes it instead of refusing it.
    shared = fake.view("default").record(BASE)
    apply(lab, fake, lab.account("bob-nb"))
    label = shared.config[ACCOUNT + "bob-nb"]
    shared.config[ACCOUNT + "bob-nb"] = label.replace('"state":"active"', '"state":"creating"')
    del shared.inside.files["/home/bob-nb/.ssh/authorized_keys"]
    again = apply(lab, fake, lab.account("bob-nb"))
    assert [(o.action, o.ok) for o in again.result.outcomes] == [("updated", True)]
    assert shared.config[ACCOUNT + "bob-nb"] == label
    assert "/home/bob-nb/.ssh/authorized_keys" in shared.inside.files


# --- the fake keeps the LXD rules the tests above rely on ------------------------------------


def test_the_fake_keeps_lxds_rules() -> None:
    lxd = FakeLxd.seeded(present_gpus=[PCI[1]])
    golden = {"type": "copy", "source": f"{BASE}/golden", "project": "default"}
    lxd.create(
        "x",
        golden,
        {"limits.cpu": "2"},
        {"ssh": {"type": "proxy", "listen": "tcp:0.0.0.0:22001", "connect": "tcp:127.0.0.1:22"}},
        ["default"],
        "d",
    )
    made = lxd.record("x")
    # a copy merges the base's local config and devices with the ones given, and is stopped
    assert made.status == "Stopped"
    assert made.config["security.privileged"] == "true" and made.config["limits.cpu"] == "2"
    assert sorted(made.devices) == ["gpu", "sharedfolder", "ssh"]
    with pytest.raises(LxdError, match='"instances" entry already exists'):
        lxd.create("x", golden, {}, {}, ["default"], "")
    with pytest.raises(LxdError, match="No root device could be found"):
        lxd.create("y", golden, {}, {}, [], "")
    # replace keeps LXD's own keys and drops everything else not sent
    lxd.replace("x", {"limits.cpu": "1"}, {"g": {"type": "gpu", "pci": PCI[0]}}, ["default"], "")
    assert "volatile.uuid" in made.config and "security.privileged" not in made.config
    with pytest.raises(LxdError, match=f"Invalid PCI address \\(no device found\\): {PCI[0]}"):
        lxd.start("x")
    lxd.replace(
        "x",
        {},
        {"s": {"type": "proxy", "listen": "tcp:0.0.0.0:22001", "connect": "tcp:127.0.0.1:22"}},
        ["default"],
        "",
    )
    lxd.start("x")
    with pytest.raises(LxdError, match="Instance is running"):
        lxd.delete("x")
    lxd.create(
        "z",
        golden,
        {},
        {
            "gpu": {"type": "gpu", "pci": PCI[1]},
            "s": {"type": "proxy", "listen": "tcp:0.0.0.0:22001", "connect": "tcp:127.0.0.1:22"},
        },
        ["default"],
        "",
    )
    with pytest.raises(LxdError, match="bind: address already in use"):
        lxd.start("z")
    with pytest.raises(LxdError, match="Instance is not running"):
        lxd.execute("z", ["id", "-u", "root"])
    lxd.set_config("x", {"security.protection.delete": "true"})
    lxd.stop("x")
    lxd.stop("x")  # already stopped: nothing happens
    with pytest.raises(LxdError, match="Container is protected"):
        lxd.delete("x")
    lxd.start("x")
    assert lxd.execute("x", ["getent", "passwd", "nobody-here"]).exit_code == 2
    with pytest.raises(LxdError, match="command not found"):
        lxd.execute("x", ["sshd", "-t"])
    with pytest.raises(LxdError, match="no such file or directory"):
        lxd.push_file("x", "/home/nobody/.ssh/authorized_keys", b"", 0o600, 0, 0)
    lxd.fail_on("start", "z", "boom", times=1)
    with pytest.raises(LxdError, match="boom"):
        lxd.start("z")
    assert [m for m, _n in lxd.mutations].count("start") == 5
    assert ("instances", "") not in lxd.mutations


def test_a_gpu_release_takes_the_gpu_off_running_and_survives_later_updates(
    lab: Lab, fake: FakeLxd
) -> None:
    image = lab.edited("gpu_userspace: nvidia-runtime", "gpu_userspace: image")
    apply(image, fake, image.container("alice-x", gpus=1))
    rec = fake.record("alice-x")
    assert "gpu-0000-18-00-0" in rec.devices
    # An idle release (or `/ssp stop`) sets the label; the next pass takes the GPU off
    # without a restart, and the label stays: the GPU is not put back on the pass after.
    fake.set_config("alice-x", {RELEASED: "2027-01-14 idle", IDLE_LEASE: "2027-06-30"})
    before = len(fake.calls)
    apply(image, fake, image.container("alice-x", gpus=1))
    assert ("stop", "alice-x") not in fake.calls[before:]
    assert not [d for d in rec.devices.values() if d.get("type") == "gpu"]
    assert rec.config[RELEASED] == "2027-01-14 idle" and rec.config[IDLE_LEASE] == "2027-06-30"
    # A later change to the container (more memory) keeps the release too.
    apply(image, fake, image.container("alice-x", gpus=1, memory="2GiB"))
    assert rec.config["limits.memory"] == "2GiB"
    assert rec.config[RELEASED] == "2027-01-14 idle"
    assert not [d for d in rec.devices.values() if d.get("type") == "gpu"]


# --- the warm pool (provisioner.applying.warm) ----------------------------------------------------


def test_maintenance_makes_a_warm_pool_only_outside_a_dry_run_and_none_when_not_asked(
    lab: Lab, fake: FakeLxd
) -> None:
    v = lab.validate()
    assert v.config is not None
    policy = v.config.policy
    pooled = policy.model_copy(update={"lxd": policy.lxd.model_copy(update={"warm_pool": 2})})
    spans = (IdRange(165536, 20 * 65536),)
    # No pool asked for and none there: not a single request.
    before = len(fake.calls)
    assert refill(fake, policy, fake.instances(), id_spans=spans, pin_ids=True, dry_run=False) == ()
    assert len(fake.calls) == before + 1  # the listing handed in, nothing else
    # A dry run says what it would make and changes nothing.
    dry = refill(fake, pooled, fake.instances(), id_spans=spans, pin_ids=True, dry_run=True)
    assert [s.action for s in dry] == ["would make", "would make"]
    assert fake.mutations == []
    made = refill(fake, pooled, fake.instances(), id_spans=spans, pin_ids=True, dry_run=False)
    assert [(s.action, s.ok) for s in made] == [("made", True), ("made", True)], made
    clones = [i for i in fake.instances() if WARM in i.config]
    assert len(clones) == 2 and not any(i.managed or i.running for i in clones)
    assert all(set(i.devices) == {"root"} for i in clones)  # no GPU, no port
    # Full: the next pass changes nothing.
    mutated = len(fake.mutations)
    again = refill(fake, pooled, fake.instances(), id_spans=spans, pin_ids=True, dry_run=False)
    assert again == () and len(fake.mutations) == mutated
