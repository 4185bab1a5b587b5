"""The LXD adapter against a real daemon: what apply relies on, each test in its own project.

Busybox containers (about 1 MB, start in 0.2 s) carry most tests; the cross-project copy uses
the Debian `Common-Server/golden` snapshot that runner/dev-lxd.sh makes.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from provisioner.lxd import api as lxd_module
from provisioner.lxd.api import Lxd
from provisioner.values.errors import LxdError

pytestmark = pytest.mark.lxd

# Names runner/dev-lxd.sh sets up, all in the default project (images are shared with ours).
BUSYBOX = {"type": "image", "alias": "ssp-busybox"}
GOLDEN = {"type": "copy", "source": "Common-Server/golden", "project": "default"}

Unique = Callable[[str], str]


def make_busybox(lxd: Lxd, name: str, *, running: bool = False) -> None:
    lxd.create(name, BUSYBOX, {}, {}, ["default"], "")
    if running:
        lxd.start(name)


def test_instances_is_one_request_with_state_and_ipv4(lxd: Lxd, unique: Unique) -> None:
    name = unique("bb")
    make_busybox(lxd, name, running=True)
    ipv4 = lxd.wait_ipv4(name, 20)
    assert ipv4, "the busybox container got no IPv4 from the bridge within 20 s"
    lxd.snapshot(name, "first")

    before = len(lxd.requests)
    [found] = lxd.instances()

    assert lxd.requests[before:] == [("GET", f"/1.0/instances?recursion=2&project={lxd.project}")]
    assert (found.name, found.status, found.running) == (name, "Running", True)
    assert found.ipv4 == ipv4
    assert all(ipaddress.ip_address(a).version == 4 for a in found.ipv4)
    assert found.snapshots == ("first",)
    assert found.profiles == ("default",)
    assert set(found.expanded_devices) == {"root", "eth0"}  # from the project's profile
    assert found.devices == {}


def test_a_second_listing_adds_exactly_one_get_and_no_mutation(lxd: Lxd) -> None:
    assert lxd.instances() == []
    first = list(lxd.requests)
    assert lxd.instances() == []
    assert lxd.requests[len(first) :] == [
        ("GET", f"/1.0/instances?recursion=2&project={lxd.project}")
    ]
    assert lxd.mutations == []


def test_create_from_image_alias_is_stopped_with_what_was_asked(
    lxd: Lxd, unique: Unique, tmp_path: Path
) -> None:
    name = unique("img")
    share = {"type": "disk", "source": str(tmp_path), "path": "/mnt/share"}
    lxd.create(
        name, BUSYBOX, {"user.ssp.owner": "alice"}, {"share": share}, ["default"], "alice #12"
    )

    inst = lxd.instance(name)
    assert inst.status == "Stopped"
    assert inst.label("user.ssp.owner") == "alice"
    assert inst.devices == {"share": share}
    assert set(inst.expanded_devices) == {"root", "eth0", "share"}
    assert inst.description == "alice #12"
    assert lxd.exists(name)


def test_create_by_copy_of_the_golden_snapshot_across_projects(lxd: Lxd, unique: Unique) -> None:
    name = unique("clone")
    lxd.create(name, GOLDEN, {"user.ssp.managed": "true"}, {}, ["default"], "clone of golden")

    inst = lxd.instance(name)
    assert inst.status == "Stopped"
    assert inst.managed
    assert inst.label("image.os") == "debian"  # carried over from Common-Server's config
    assert inst.description == "clone of golden"
    assert inst.snapshots == ()  # a copy of one snapshot does not bring the others
    assert [i.name for i in lxd.instances()] == [name]


def test_replace_drops_a_device_and_keeps_lxd_own_keys(
    lxd: Lxd, unique: Unique, tmp_path: Path
) -> None:
    name = unique("rep")
    disk_a = {"type": "disk", "source": str(tmp_path), "path": "/mnt/a"}
    disk_b = {"type": "disk", "source": str(tmp_path), "path": "/mnt/b"}
    lxd.create(name, BUSYBOX, {"user.old": "1"}, {"a": disk_a, "b": disk_b}, ["default"], "v1")
    before = lxd.instance(name)
    lxd_keys = {k: v for k, v in before.config.items() if k.startswith(("volatile.", "image."))}
    assert any(k.startswith("volatile.") for k in lxd_keys)

    lxd.replace(name, {"user.new": "2"}, {"a": disk_a}, ["default"], "v2")

    after = lxd.instance(name)
    assert after.devices == {"a": disk_a}
    assert after.description == "v2"
    assert after.config == {**lxd_keys, "user.new": "2"}


def test_replace_refuses_an_unknown_key_with_lxds_message(lxd: Lxd, unique: Unique) -> None:
    name = unique("bad")
    make_busybox(lxd, name)
    with pytest.raises(LxdError, match=r"update instance .*Unknown configuration key: foo\.bar"):
        lxd.replace(name, {"foo.bar": "1"}, {}, ["default"], "")


def test_set_config_adds_and_removes_keys(lxd: Lxd, unique: Unique) -> None:
    name = unique("cfg")
    make_busybox(lxd, name)
    lxd.set_config(name, {"user.a": "1", "user.b": "2"})
    lxd.set_config(name, {"user.a": None, "user.c": "3"})

    config = lxd.instance(name).config
    assert (config.get("user.a"), config.get("user.b"), config.get("user.c")) == (None, "2", "3")


INITTAB_WITH_MARKER = b"""::sysinit:/etc/init.d/rcS
::shutdown:/bin/touch /clean-shutdown
"""


def test_stop_is_clean_and_stopping_a_stopped_instance_sends_nothing(
    lxd: Lxd, unique: Unique
) -> None:
    name = unique("stop")
    make_busybox(lxd, name)
    # busybox init runs its `shutdown` actions only on a clean halt, never when killed.
    lxd.push_file(name, "/etc/inittab", INITTAB_WITH_MARKER, 0o644, 0, 0)
    lxd.start(name)
    assert lxd.instance(name).running
    # init ignores the shutdown signal until it has booted: a loaded host boots slowly, and a
    # stop sent before then is forced after the timeout. Its address means rcS has run.
    assert lxd.wait_ipv4(name, 60)

    lxd.stop(name, timeout_s=30)
    assert lxd.instance(name).status == "Stopped"
    mutations = len(lxd.mutations)
    lxd.stop(name)
    assert len(lxd.mutations) == mutations

    lxd.start(name)
    assert lxd.execute(name, ["test", "-e", "/clean-shutdown"]).exit_code == 0


def test_stop_forces_when_the_clean_shutdown_takes_too_long(lxd: Lxd, unique: Unique) -> None:
    name = unique("slow")
    make_busybox(lxd, name, running=True)
    # busybox's halt sleeps about 2 s between its signals, longer than this timeout.
    lxd.stop(name, timeout_s=1)

    assert lxd.instance(name).status == "Stopped"
    stops = [r for r in lxd.mutations if r[0] == "PUT" and "/state" in r[1]]
    assert len(stops) == 3  # start, then the clean stop that timed out, then the forced one


def test_execute_returns_exit_code_and_output_without_a_shell(lxd: Lxd, unique: Unique) -> None:
    name = unique("exec")
    make_busybox(lxd, name, running=True)

    done = lxd.execute(name, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.exit_code, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert lxd.execute(name, ["echo", "a b; $(id)"]).stdout == "a b; $(id)\n"
    assert lxd.execute(name, ["cat"], stdin="from stdin\n").stdout == "from stdin\n"

    with pytest.raises(LxdError, match=rf"^command not found in {name}: no-such-tool$"):
        lxd.execute(name, ["no-such-tool", "--help"])


def test_a_broken_exec_websocket_is_tried_again_then_said(
    lxd: Lxd, unique: Unique, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("pipe")
    make_busybox(lxd, name, running=True)
    model = vars(lxd_module)["PylxdInstance"]  # pylxd's Instance, as the adapter imports it
    real = model.execute
    calls: list[list[str]] = []

    def flaky(self: object, commands: list[str], **options: object) -> object:
        calls.append(commands)
        if len(calls) == 1 or commands[0] == "false":
            raise BrokenPipeError(32, "Broken pipe")  # as ws4py raises it mid-handshake
        return real(self, commands, **options)

    monkeypatch.setattr(model, "execute", flaky)
    monkeypatch.setattr(lxd_module, "EXEC_RETRY_S", 0.0)

    done = lxd.execute(name, ["sh", "-c", "echo ran >> /tmp/runs; wc -l < /tmp/runs"])
    assert (done.exit_code, done.stdout.strip()) == (0, "1")  # ran once, on the second try
    assert len(calls) == 2

    calls.clear()
    with pytest.raises(LxdError, match=rf"^run 'false' in '{name}': \[Errno 32\] Broken pipe$"):
        lxd.execute(name, ["false"])
    assert len(calls) == lxd_module.EXEC_TRIES == 3


def test_execute_in_a_stopped_instance_says_so(lxd: Lxd, unique: Unique) -> None:
    name = unique("down")
    make_busybox(lxd, name)
    with pytest.raises(LxdError, match="not running"):
        lxd.execute(name, ["true"])


def test_push_file_into_a_stopped_instance_then_read_it_running(lxd: Lxd, unique: Unique) -> None:
    name = unique("push")
    make_busybox(lxd, name)
    lxd.make_dir(name, "/home", 0o755, 0, 0)  # busybox has no /home
    lxd.make_dir(name, "/home/alice", 0o750, 1000, 1000)
    lxd.make_dir(name, "/home/alice", 0o750, 1000, 1000)  # already there: fine
    lxd.push_file(name, "/home/alice/note", b"first\n", 0o600, 1000, 1000)
    lxd.push_file(name, "/home/alice/note", b"second\n", 0o640, 1000, 1001)
    lxd.push_file(name, "/home/alice/gone", b"x", 0o600, 0, 0)
    lxd.delete_file(name, "/home/alice/gone")
    lxd.delete_file(name, "/home/alice/gone")  # not there: fine
    lxd.start(name)

    assert lxd.execute(name, ["cat", "/home/alice/note"]).stdout == "second\n"
    stat = lxd.execute(name, ["stat", "-c", "%a %u %g", "/home/alice/note", "/home/alice"])
    assert stat.stdout.splitlines() == ["640 1000 1001", "750 1000 1000"]
    assert lxd.execute(name, ["test", "-e", "/home/alice/gone"]).exit_code == 1


def test_push_file_into_a_missing_directory_fails_clearly(lxd: Lxd, unique: Unique) -> None:
    name = unique("nodir")
    make_busybox(lxd, name)
    with pytest.raises(LxdError, match=rf"write /no/such/dir/f in '{name}'"):
        lxd.push_file(name, "/no/such/dir/f", b"x", 0o600, 0, 0)


def test_snapshot_is_listed(lxd: Lxd, unique: Unique) -> None:
    name = unique("snap")
    make_busybox(lxd, name)
    lxd.snapshot(name, "retired-2026-11-28")
    assert lxd.instance(name).snapshots == ("retired-2026-11-28",)


def test_a_protected_instance_is_not_deleted(lxd: Lxd, unique: Unique) -> None:
    name = unique("prot")
    lxd.create(name, BUSYBOX, {"security.protection.delete": "true"}, {}, ["default"], "")
    with pytest.raises(LxdError, match=rf"delete instance '{name}': Container is protected"):
        lxd.delete(name)
    assert lxd.exists(name)

    lxd.set_config(name, {"security.protection.delete": "false"})
    lxd.delete(name)
    assert not lxd.exists(name)


def test_a_missing_instance_is_reported_as_not_found(lxd: Lxd) -> None:
    assert not lxd.exists("nobody-here")
    with pytest.raises(LxdError, match=f"'nobody-here' not found in LXD project '{lxd.project}'"):
        lxd.instance("nobody-here")
    with pytest.raises(LxdError, match="not found"):
        lxd.delete_file("nobody-here", "/etc/motd")


def test_a_project_that_does_not_exist_is_an_error(lxd_socket: str) -> None:
    with pytest.raises(LxdError, match="LXD project 'ssp-no-such-project' does not exist"):
        Lxd("ssp-no-such-project", endpoint=lxd_socket).instances()


def test_no_socket_means_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "unix.socket"
    with pytest.raises(LxdError, match=rf"^cannot reach LXD at {path}: is the daemon running\?"):
        Lxd("default", endpoint=str(path)).instances()
    with pytest.raises(LxdError, match=rf"^cannot reach LXD at {path}: is the daemon running\?"):
        Lxd("default", lxd_dir=str(tmp_path)).instance("x")


def test_a_socket_nobody_listens_on_means_the_same_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "unix.socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # the file exists, but nothing accepts connections
    with pytest.raises(LxdError, match=rf"^cannot reach LXD at {path}: is the daemon running\?"):
        Lxd("default", endpoint=str(path)).instances()
