"""One contract for `LxdApi` (provisioner/values/state.py), run against the in-memory fake and the
real daemon: the same test functions, parametrised over both. What apply relies on from LXD
is said once here, so the fake (tests/fakelxd.py), on which most apply tests run, cannot drift
from what a real LXD does. Where the two disagreed, the fake was changed to match the daemon.

The real variant (marked `lxd`) drives `provisioner.lxd.api.Lxd` in a throwaway LXD project that
its fixture creates and removes; instances are busybox containers from runner/dev-lxd.sh's
`ssp-busybox` image, and their names carry the project's random suffix.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from fakelxd import FakeDaemon, FakeLxd, busybox_image
from integration.conftest import throwaway_project

from provisioner.lxd.api import Lxd
from provisioner.lxd.wire import socket_path
from provisioner.planning.hostproject import forbids_low_level
from provisioner.values.errors import LxdError
from provisioner.values.state import LxdApi

BUSYBOX = {"type": "image", "alias": "ssp-busybox"}
# A GPU this machine does not have: LXD saves the device and refuses it at start.
ABSENT_GPU = {"type": "gpu", "gputype": "physical", "pci": "0000:4b:00.0"}


@dataclass
class Backend:
    """An `LxdApi` on an empty project, and names no other test uses."""

    api: LxdApi
    project: str
    suffix: str
    real: bool
    elsewhere: LxdApi  # the same daemon seen from another project (the default one)

    def name(self, role: str) -> str:
        return f"{role}-{self.suffix}"

    def make(self, role: str, *, running: bool = False, **config: str) -> str:
        name = self.name(role)
        self.api.create(name, BUSYBOX, config, {}, ["default"], f"contract test {role}")
        if running:
            self.api.start(name)
        return name


def _fake() -> Iterator[Backend]:
    suffix = secrets.token_hex(4)
    daemon = FakeDaemon()
    daemon.images["ssp-busybox"] = busybox_image()
    project = f"ssp-c-{suffix}"
    api = FakeLxd(project, daemon)
    yield Backend(api, project, suffix, real=False, elsewhere=api.view("default"))


def _real() -> Iterator[Backend]:
    socket = socket_path(lxd_dir=os.environ.get("LXD_DIR"))
    try:
        Lxd("default", endpoint=socket).instances()
    except LxdError as e:
        pytest.skip(f"{e}; start one with: bash runner/dev-lxd.sh up")
    with throwaway_project(socket, prefix="ssp-c") as project:
        yield Backend(
            Lxd(project, endpoint=socket),
            project,
            project.rsplit("-", 1)[-1],
            real=True,
            elsewhere=Lxd("default", endpoint=socket),
        )


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.lxd)])
def lxd(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield from (_fake if request.param == "fake" else _real)()


def _fails(call: Callable[[], object], *words: str) -> str:
    """The LxdError `call` raises, whose message holds each of `words` (any case)."""
    with pytest.raises(LxdError) as caught:
        call()
    message = str(caught.value)
    for word in words:
        assert word.lower() in message.lower(), message
    return message


# --- reading ------------------------------------------------------------------------------------


def test_an_empty_project_lists_nothing(lxd: Backend) -> None:
    assert lxd.api.instances() == []


def test_a_created_instance_is_stopped_with_exactly_what_was_asked(lxd: Backend) -> None:
    name = lxd.name("made")
    ssh = {"type": "proxy", "listen": "tcp:127.0.0.1:47001", "connect": "tcp:127.0.0.1:22"}
    config = {"limits.cpu": "1", "user.ssp.owner": "alice"}
    lxd.api.create(name, BUSYBOX, config, {"ssh": ssh}, ["default"], "alice: tests")

    (listed,) = lxd.api.instances()
    one = lxd.api.instance(name)
    for found in (listed, one):
        assert (found.name, found.status, found.running) == (name, "Stopped", False)
        assert {k: found.config[k] for k in config} == config
        assert found.label("user.ssp.owner") == "alice"
        assert found.devices == {"ssh": ssh}
        # the project's default profile adds the root disk and eth0
        assert set(found.expanded_devices) == {"root", "eth0", "ssh"}
        assert found.profiles == ("default",)
        assert found.description == "alice: tests"
        assert found.ipv4 == () and found.snapshots == ()
    assert any(k.startswith("volatile.") for k in one.config)  # LXD's own bookkeeping


def test_id_maps_list_the_projects_instances_with_their_host_ids(lxd: Backend) -> None:
    name = lxd.make("ids", **{"security.idmap.isolated": "true"})
    (use,) = [u for u in lxd.api.id_maps() if u.project == lxd.project]
    assert (use.name, use.isolated) == (name, True)
    assert use.next is not None and use.next.base > 0 and use.next.size >= 65536
    assert use.current is None  # it has never run


def test_all_instances_list_each_project_with_state_as_its_own_listing_does(
    lxd: Backend,
) -> None:
    """What a no-op pass reads in one request: the project's instances, running or not, with
    the same state and config as the project's own listing (and the other projects')."""
    up = lxd.make("all-up", running=True)
    down = lxd.make("all-down", **{"security.idmap.isolated": "true"})
    everything = lxd.api.all_instances()
    mine = {i.name: i for i in everything[lxd.project]}
    own = {i.name: i for i in lxd.api.instances()}
    assert sorted(mine) == sorted(own) == sorted([up, down])
    assert (mine[up].status, mine[down].status) == ("Running", "Stopped")
    for name in (up, down):
        assert (mine[name].config, mine[name].devices) == (own[name].config, own[name].devices)
        assert mine[name].profiles == own[name].profiles
    assert "volatile.idmap.next" in mine[down].config  # what the host ID blocks are read from


def test_the_project_is_not_restricted(lxd: Backend) -> None:
    """HostApi's read_project, as apply uses it: may ssp choose host ID blocks here?"""
    read = lxd.api.read_project  # type: ignore[attr-defined]
    project = read()
    assert project is not None and project.name == lxd.project
    assert not forbids_low_level(project)


# --- creating and changing ----------------------------------------------------------------------


def test_a_duplicate_name_is_refused(lxd: Backend) -> None:
    name = lxd.make("dup")
    _fails(lambda: lxd.api.create(name, BUSYBOX, {}, {}, ["default"], ""), "already exists")


def test_an_unknown_key_is_refused_with_lxds_message(lxd: Backend) -> None:
    name = lxd.name("badkey")
    _fails(
        lambda: lxd.api.create(name, BUSYBOX, {"foo.bar": "x"}, {}, ["default"], ""),
        "Unknown configuration key: foo.bar",
    )
    assert lxd.api.instances() == []


def test_a_missing_image_is_refused(lxd: Backend) -> None:
    source = {"type": "image", "alias": f"no-such-image-{lxd.suffix}"}
    _fails(lambda: lxd.api.create(lxd.name("noimg"), source, {}, {}, ["default"], ""), "not found")
    assert lxd.api.instances() == []


def test_replace_puts_the_whole_config_and_keeps_lxds_own_keys(lxd: Backend) -> None:
    name = lxd.make("put", **{"user.ssp.owner": "alice", "limits.cpu": "1"})
    before = lxd.api.instance(name).config
    own = {k: v for k, v in before.items() if k.startswith(("volatile.", "image."))}
    assert own
    lxd.api.replace(name, {"limits.memory": "256MiB"}, {}, ["default"], "replaced")

    after = lxd.api.instance(name)
    assert "user.ssp.owner" not in after.config and "limits.cpu" not in after.config
    assert after.config["limits.memory"] == "256MiB"
    assert {k: after.config[k] for k in own if k in after.config} == {
        k: v for k, v in own.items() if k in after.config
    }
    assert "volatile.uuid" in after.config and after.config["volatile.uuid"] == own["volatile.uuid"]
    assert after.devices == {} and after.description == "replaced"


def test_without_profiles_there_is_no_root_disk_and_no_instance(lxd: Backend) -> None:
    name = lxd.name("noprof")
    _fails(lambda: lxd.api.create(name, BUSYBOX, {}, {}, [], ""), "No root device could be found")
    assert lxd.api.instances() == []


def test_a_copy_of_a_snapshot_and_of_a_missing_one(lxd: Backend) -> None:
    base = lxd.make("base", running=True, **{"user.lab.note": "by hand"})
    lxd.api.snapshot(base, "golden")  # of a running instance
    copy = lxd.name("copy")
    source = {"type": "copy", "source": f"{base}/golden", "project": lxd.project}
    lxd.api.create(copy, source, {"limits.cpu": "1"}, {}, ["default"], "")
    made = lxd.api.instance(copy)
    # a copy merges the source's local config with what was sent, and is stopped
    assert (made.status, made.config["user.lab.note"], made.config["limits.cpu"]) == (
        "Stopped",
        "by hand",
        "1",
    )
    gone = {**source, "source": f"{base}/nope"}
    _fails(
        lambda: lxd.api.create(lxd.name("copy2"), gone, {}, {}, ["default"], ""),
        'snapshot "nope"',
        "InstanceSnapshot not found",
    )


def test_set_config_refuses_unknown_keys_and_bad_booleans(lxd: Backend) -> None:
    name = lxd.make("setbad")
    _fails(lambda: lxd.api.set_config(name, {"foo.bar": "1"}), "Unknown configuration key")
    _fails(
        lambda: lxd.api.set_config(name, {"security.privileged": "maybe"}),
        'Invalid value for a boolean "maybe"',
    )
    assert "security.privileged" not in lxd.api.instance(name).config


def test_hot_plugging_a_gpu_the_host_lacks_fails_and_changes_nothing(lxd: Backend) -> None:
    name = lxd.make("hot", running=True)
    _fails(
        lambda: lxd.api.replace(name, {}, {"gpu0": ABSENT_GPU}, ["default"], ""),
        'Failed to start device "gpu0"',
        "Invalid PCI address",
    )
    found = lxd.api.instance(name)
    assert found.running and found.devices == {}


def test_replace_refuses_an_unknown_key_and_changes_nothing(lxd: Backend) -> None:
    name = lxd.make("putbad", **{"limits.cpu": "1"})
    _fails(
        lambda: lxd.api.replace(name, {"foo.bar": "x"}, {}, ["default"], ""),
        "Unknown configuration key",
    )
    assert lxd.api.instance(name).config["limits.cpu"] == "1"


def test_set_config_adds_changes_and_removes_keys_and_keeps_the_description(
    lxd: Backend,
) -> None:
    name = lxd.make("patch", **{"user.ssp.a": "1", "user.ssp.b": "2"})
    lxd.api.set_config(name, {"user.ssp.a": None, "user.ssp.b": "3", "user.ssp.c": "4"})
    found = lxd.api.instance(name)
    assert "user.ssp.a" not in found.config
    assert (found.config["user.ssp.b"], found.config["user.ssp.c"]) == ("3", "4")
    assert found.description == "contract test patch"


# --- running ------------------------------------------------------------------------------------


def test_start_stop_and_a_second_stop_that_sends_nothing(lxd: Backend) -> None:
    name = lxd.make("life", running=True)
    assert lxd.api.instance(name).running
    _fails(lambda: lxd.api.start(name), "already running")
    lxd.api.stop(name, timeout_s=5)
    assert lxd.api.instance(name).status == "Stopped"
    lxd.api.stop(name, timeout_s=5)  # already stopped: not an error
    assert lxd.api.instance(name).status == "Stopped"


def test_a_gpu_the_host_lacks_is_saved_and_refused_at_start(lxd: Backend) -> None:
    name = lxd.name("gpu")
    lxd.api.create(name, BUSYBOX, {}, {"gpu0": ABSENT_GPU}, ["default"], "")
    _fails(lambda: lxd.api.start(name), "Invalid PCI address", "0000:4b:00.0")
    assert lxd.api.instance(name).status == "Stopped"


def test_a_running_instance_gets_an_ipv4_and_a_stopped_one_has_none(lxd: Backend) -> None:
    stopped = lxd.make("nonet")
    assert lxd.api.wait_ipv4(stopped, 0.2) == ()
    name = lxd.make("net", running=True)
    found = lxd.api.wait_ipv4(name, 30)
    assert found, "no IPv4 within 30 s"
    assert all(ipaddress.ip_address(a).version == 4 for a in found)
    assert lxd.api.instance(name).ipv4 == found


def test_snapshots_are_listed_and_a_name_is_taken_once(lxd: Backend) -> None:
    name = lxd.make("snap")
    lxd.api.snapshot(name, "first")
    lxd.api.snapshot(name, "second")
    assert lxd.api.instance(name).snapshots == ("first", "second")
    _fails(lambda: lxd.api.snapshot(name, "first"), "already exists")


def test_a_restore_brings_back_the_snapshots_files_and_config(lxd: Backend) -> None:
    name = lxd.make("restore", **{"user.ssp.mark": "then"})
    lxd.api.push_file(name, "/root/kept", b"then\n", 0o644, 0, 0)
    lxd.api.snapshot(name, "before")
    lxd.api.push_file(name, "/root/kept", b"now\n", 0o644, 0, 0)
    lxd.api.push_file(name, "/root/later", b"later\n", 0o644, 0, 0)
    lxd.api.set_config(name, {"user.ssp.mark": "now", "user.ssp.extra": "x"})
    uuid = lxd.api.instance(name).config["volatile.uuid"]

    lxd.api.restore_snapshot(name, "before")
    back = lxd.api.instance(name)
    assert (back.config["user.ssp.mark"], back.config.get("user.ssp.extra")) == ("then", None)
    assert back.config["volatile.uuid"] == uuid  # LXD's own keys stay the instance's
    assert back.snapshots == ("before",)
    lxd.api.start(name)
    assert lxd.api.execute(name, ["cat", "/root/kept"]).stdout == "then\n"
    assert lxd.api.execute(name, ["cat", "/root/later"]).exit_code == 1
    lxd.api.stop(name, timeout_s=5)
    _fails(
        lambda: lxd.api.restore_snapshot(name, "never-made"), f"{name}/never-made does not exist"
    )


def test_a_snapshot_is_published_started_from_and_deleted_with_its_alias(lxd: Backend) -> None:
    """What `kind: image` relies on. Aliases are the daemon's, seen from every project:
    the test's own name, and the image is deleted whatever happens."""
    name = lxd.make("pub")
    lxd.api.push_file(name, "/root/made", b"in the image\n", 0o644, 0, 0)
    lxd.api.snapshot(name, "base")
    lxd.api.start(name)  # a snapshot is published while its instance runs
    alias = f"ssp-contract/{name}"
    props = {"ssp.managed": "true", "ssp.owner": "alice", "ssp.request": "requests/a/b.yaml"}
    fingerprint = lxd.api.publish_image(name, "base", alias, props, "contract image")
    try:
        found = [i for i in lxd.api.images() if i.fingerprint == fingerprint]
        assert len(found) == 1
        assert found[0].aliases == (alias,)
        assert {k: found[0].properties[k] for k in props} == props
        assert found[0].managed and found[0].description == "contract image"
        # Every project sees the daemon's images; ssp in another one (a second lab, a
        # concurrent test) neither lists nor unpublishes this project's.
        assert found[0].properties["ssp.project"] == lxd.project
        assert all(i.fingerprint != fingerprint for i in lxd.elsewhere.images())
        _fails(lambda: lxd.api.publish_image(name, "base", alias, props, "again"), "already exists")
        _fails(lambda: lxd.api.publish_image(name, "nope", f"{alias}-x", props, ""), "nope")
        child = lxd.name("child")
        lxd.api.create(child, {"type": "image", "alias": alias}, {}, {}, ["default"], "child")
        # An image in use is still deleted: the instance keeps its own copy of the files.
        lxd.api.delete_image(fingerprint)
        lxd.api.start(child)
        assert lxd.api.execute(child, ["cat", "/root/made"]).stdout == "in the image\n"
    finally:
        if any(i.fingerprint == fingerprint for i in lxd.api.images()):
            lxd.api.delete_image(fingerprint)
    assert all(i.fingerprint != fingerprint for i in lxd.api.images())
    _fails(
        lambda: lxd.api.create(
            lxd.name("late"), {"type": "image", "alias": alias}, {}, {}, ["default"], ""
        ),
        "not found",
    )
    lxd.api.stop(name, timeout_s=5)
    lxd.api.stop(child, timeout_s=5)


def test_delete_refuses_running_and_protected_instances(lxd: Backend) -> None:
    running = lxd.make("delrun", running=True)
    _fails(lambda: lxd.api.delete(running), "running")
    protected = lxd.make("delprot", **{"security.protection.delete": "true"})
    _fails(lambda: lxd.api.delete(protected), "protected")
    assert {i.name for i in lxd.api.instances()} == {running, protected}

    lxd.api.set_config(protected, {"security.protection.delete": None})
    lxd.api.delete(protected)
    lxd.api.stop(running, timeout_s=5)
    lxd.api.delete(running)
    assert lxd.api.instances() == []


def test_rename_moves_a_stopped_instance_with_its_config_and_refuses_a_running_one(
    lxd: Backend,
) -> None:
    # A claimed warm clone (applying.warm) is renamed to the member's container's name.
    stopped = lxd.make("renfrom", **{"user.ssp.warm": "common-server"})
    new = lxd.name("rento")
    lxd.api.rename(stopped, new)
    assert {i.name for i in lxd.api.instances()} == {new}
    assert lxd.api.instance(new).config["user.ssp.warm"] == "common-server"
    running = lxd.make("renrun", running=True)
    _fails(lambda: lxd.api.rename(running, lxd.name("renrun2")), "running")
    assert {i.name for i in lxd.api.instances()} == {new, running}
    lxd.api.stop(running, timeout_s=5)


# --- inside -------------------------------------------------------------------------------------


def test_execute_returns_exit_code_and_output(lxd: Backend) -> None:
    name = lxd.make("exec", running=True)
    ok = lxd.api.execute(name, ["id", "-u", "root"])
    assert (ok.exit_code, ok.stdout.strip()) == (0, "0")
    missing = lxd.api.execute(name, ["id", "-u", "nobody-here"])
    assert missing.exit_code != 0 and missing.stdout == ""
    assert lxd.api.execute(name, ["true"]).exit_code == 0


def test_execute_of_a_missing_command_or_in_a_stopped_instance_fails(lxd: Backend) -> None:
    running = lxd.make("exnf", running=True)
    _fails(lambda: lxd.api.execute(running, ["no-such-command"]), "not found", "no-such-command")
    stopped = lxd.make("exstop")
    _fails(lambda: lxd.api.execute(stopped, ["true"]), "not running")


def test_files_and_folders_are_made_in_a_stopped_instance_and_read_running(
    lxd: Backend,
) -> None:
    name = lxd.make("files")
    lxd.api.make_dir(name, "/root/.ssh", 0o700, 0, 0)
    lxd.api.make_dir(name, "/root/.ssh", 0o755, 0, 0)  # an existing folder is kept
    lxd.api.push_file(name, "/root/.ssh/authorized_keys", b"ssh-ed25519 AAAA k\n", 0o600, 0, 0)
    lxd.api.push_file(name, "/root/.ssh/authorized_keys", b"ssh-ed25519 BBBB k\n", 0o600, 0, 0)
    lxd.api.delete_file(name, "/root/.ssh/gone")  # a file that is not there is fine
    lxd.api.start(name)
    read = lxd.api.execute(name, ["cat", "/root/.ssh/authorized_keys"])
    assert (read.exit_code, read.stdout) == (0, "ssh-ed25519 BBBB k\n")
    lxd.api.delete_file(name, "/root/.ssh/authorized_keys")
    assert lxd.api.execute(name, ["cat", "/root/.ssh/authorized_keys"]).exit_code == 1


def test_a_file_or_folder_in_a_missing_folder_is_refused(lxd: Backend) -> None:
    name = lxd.make("nodir")
    _fails(lambda: lxd.api.push_file(name, "/no/such/dir/f", b"x", 0o644, 0, 0), "/no/such/dir/f")
    _fails(lambda: lxd.api.make_dir(name, "/no/such/dir", 0o755, 0, 0), "/no/such/dir")


# --- a missing instance -------------------------------------------------------------------------


MISSING_CALLS: dict[str, Callable[[LxdApi, str], object]] = {
    "instance": lambda api, n: api.instance(n),
    "replace": lambda api, n: api.replace(n, {}, {}, ["default"], ""),
    "set_config": lambda api, n: api.set_config(n, {"user.ssp.x": "1"}),
    "start": lambda api, n: api.start(n),
    "stop": lambda api, n: api.stop(n, timeout_s=1),
    "snapshot": lambda api, n: api.snapshot(n, "s"),
    "delete": lambda api, n: api.delete(n),
    "rename": lambda api, n: api.rename(n, n + "-b"),
    "restore_snapshot": lambda api, n: api.restore_snapshot(n, "s"),
    "execute": lambda api, n: api.execute(n, ["true"]),
    "push_file": lambda api, n: api.push_file(n, "/tmp/x", b"x", 0o644, 0, 0),
    "make_dir": lambda api, n: api.make_dir(n, "/tmp/d", 0o755, 0, 0),
    "delete_file": lambda api, n: api.delete_file(n, "/tmp/x"),
    "wait_ipv4": lambda api, n: api.wait_ipv4(n, 0.1),
}


@pytest.mark.parametrize("method", sorted(MISSING_CALLS))
def test_every_call_on_a_missing_instance_says_not_found(lxd: Backend, method: str) -> None:
    ghost = lxd.name("ghost")
    message = _fails(lambda: MISSING_CALLS[method](lxd.api, ghost), "not found")
    if method == "instance":
        assert f"instance {ghost!r} not found in LXD project {lxd.project!r}" in message
    else:  # LXD's own words, passed on: apply tells a missing shared server by them
        assert "Instance not found" in message
    assert lxd.api.instances() == []


def test_a_single_server_has_no_cluster_members(lxd: Backend) -> None:
    # Apply then places nothing and targets nothing (tests/cluster has the real cluster).
    assert lxd.api.members() == {}


def test_a_target_member_on_a_single_server_is_refused(lxd: Backend) -> None:
    _fails(
        lambda: lxd.api.create(
            lxd.name("targeted"), BUSYBOX, {}, {}, ["default"], "t", target="node2"
        ),
        "Target only allowed when clustered",
    )
    assert lxd.api.instances() == []


def test_the_contract_covers_every_method_of_lxdapi() -> None:
    methods = {m for m in vars(LxdApi) if not m.startswith("_")}
    covered = set(MISSING_CALLS) | {"instances", "all_instances", "id_maps", "create", "members"}
    covered |= {"images", "publish_image", "delete_image"}
    assert methods == covered, methods ^ covered
