"""An in-memory LXD daemon behind the `LxdApi` interface, and the lab it serves, for tests.

`FakeLxd` is one project's view of a `FakeDaemon`. It keeps the semantics of a real LXD 5.0
that apply's correctness depends on (docs/design.md, "Facts the code relies on"); the
`LxdApi` contract test (tests/test_lxdapi_contract.py) runs the same checks against this fake
and the real daemon:

- create by copy MERGES the source's local config and devices with the ones given (a clone
  inherits the base's GPU device, `security.privileged`, `raw.lxc`) and copies its files and
  users; the new instance is Stopped; a duplicate name fails;
- replace (PUT) keeps LXD's own `volatile.*`/`image.*` keys, like the real adapter does;
  on a running instance new devices are hot-plugged, and fail as they would at start;
- delete refuses protected ("Container is protected") and running ("Instance is running")
  instances; stop of a stopped instance is a no-op, as the adapter makes it;
- start fails for a `gpu` device whose PCI address is not present ("Invalid PCI address (no
  device found)") and for a proxy whose port another running instance (or a host process)
  already listens on ("bind: address already in use");
- exec runs only in running instances and simulates the few commands apply uses (getent,
  groupadd, useradd, install -d, usermod, gpasswd, id, env … apt-get); an unknown command
  fails like the adapter reports LXD's "Command not found"; file pushes need the parent
  directory and work on stopped instances;
- a DHCP lease follows /etc/machine-id (as systemd-networkd's client id does), so clones that
  keep the base's machine-id get the same address.

Every call is recorded in `calls` as (method, instance); `mutations` is every call except the
three reads, so a test can assert that a second apply changes nothing. `fail_on` makes a
method fail for one instance, to test that one failure leaves the other requests applied.

`Lab` builds the config and request files that `validate_tree` reads, with real ed25519 keys
from ssh-keygen; it sits here because the plan, apply and reconcile tests all need it.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import yaml

from provisioner.validation.validate import Validation, validate_tree
from provisioner.values import idranges
from provisioner.values.errors import LxdError
from provisioner.values.idranges import IdMapUse
from provisioner.values.state import (
    IMAGE_PROJECT,
    Devices,
    ExecResult,
    Image,
    Instance,
    Pool,
    Project,
    image_of,
)
from provisioner.values.tree import Tree

READS = frozenset(
    {"instances", "all_instances", "instance", "wait_ipv4", "id_maps", "images", "storage_pool"}
)
GOLDEN = "golden"
BASE = "Common-Server"
BASE_MACHINE_ID = b"0123456789abcdef0123456789abcdef\n"
OLD_KEYS = tuple(
    f"/etc/ssh/ssh_host_{kind}_key{suffix}"
    for kind in ("rsa", "ecdsa", "ed25519")
    for suffix in ("", ".pub")
)
CONFIG_PREFIXES = (
    "limits.",
    "security.",
    "raw.",
    "snapshots.",
    "boot.",
    "nvidia.",
    "linux.",
    "user.",
    "volatile.",
    "image.",
    "environment.",
    "cloud-init.",
)
LXD_OWN = ("volatile.", "image.")
# Keys a restricted project refuses under restricted.containers.lowlevel=block (some of them).
LOW_LEVEL = frozenset({"security.idmap.base", "security.idmap.size", "raw.lxc", "raw.seccomp"})
_PCI = re.compile(r"^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
_SCHEDULES = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@startup"}


# --- inside an instance -------------------------------------------------------------------------


@dataclass
class User:
    uid: int
    gid: int
    home: str
    shell: str
    locked: bool = False
    expired: bool = False


@dataclass
class File:
    data: bytes
    mode: int
    uid: int
    gid: int


@dataclass
class Inside:
    """The parts of a root file system apply touches: accounts, directories, files, packages."""

    users: dict[str, User] = field(default_factory=dict)
    groups: dict[str, tuple[int, set[str]]] = field(default_factory=dict)
    dirs: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # path → mode, uid, gid
    files: dict[str, File] = field(default_factory=dict)
    packages: set[str] = field(default_factory=set)
    # A base image ships without apt's package lists (as Debian's does): `install` finds
    # nothing until `apt-get update` has run.
    package_lists: bool = False
    commands: list[tuple[str, ...]] = field(default_factory=list)
    # The NVIDIA userspace version it holds: from the image, or injected at start by the
    # runtime (None: no nvidia-smi inside).
    nvidia_userspace: str | None = None

    def user_by_uid(self, uid: int) -> str | None:
        return next((n for n, u in self.users.items() if u.uid == uid), None)

    def group_by_gid(self, gid: int) -> str | None:
        return next((n for n, (g, _m) in self.groups.items() if g == gid), None)


def debian_base() -> Inside:
    """What the lab's Common-Server has inside: a Debian with sshd and the seed's `user`."""
    inside = Inside()
    for path in ("/", "/etc", "/etc/ssh", "/etc/sudoers.d", "/home", "/root", "/tmp"):
        inside.dirs[path] = (0o755, 0, 0)
    inside.dirs["/home/user"] = (0o755, 1000, 1000)
    inside.users = {
        "root": User(0, 0, "/root", "/bin/bash"),
        "user": User(1000, 1000, "/home/user", "/bin/bash"),
    }
    inside.groups = {"root": (0, set()), "sudo": (27, {"user"}), "user": (1000, set())}
    inside.files["/etc/machine-id"] = File(BASE_MACHINE_ID, 0o444, 0, 0)
    for path in OLD_KEYS:
        inside.files[path] = File(b"base host key " + path.encode(), 0o600, 0, 0)
    return inside


def busybox_image() -> Snapshot:
    """What runner/dev-lxd.sh's `ssp-busybox` image unpacks to: root only, a few folders."""
    inside = Inside()
    for path in ("/", "/bin", "/etc", "/root", "/run", "/tmp", "/usr", "/var"):
        inside.dirs[path] = (0o1777 if path == "/tmp" else 0o755, 0, 0)
    inside.users = {"root": User(0, 0, "/root", "/bin/sh")}
    inside.groups = {"root": (0, set())}
    config = {"image.os": "busybox", "image.description": "SSP test image (busybox, DHCP on eth0)"}
    return Snapshot({**config, "volatile.base_image": "b" * 64}, {}, inside)


# --- instances and the daemon ---------------------------------------------------------------


@dataclass
class Snapshot:
    config: dict[str, str]
    devices: dict[str, dict[str, str]]
    inside: Inside


@dataclass
class Record:
    """One instance as the daemon stores it."""

    name: str
    project: str
    config: dict[str, str]
    devices: dict[str, dict[str, str]]
    profiles: list[str]
    description: str
    inside: Inside
    status: str = "Stopped"
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    location: str = "none"  # what a single LXD server reports


@dataclass
class FakeDaemon:
    """The state every project's view shares: instances, profiles, images, host hardware."""

    present_gpus: set[str] = field(default_factory=set)  # PCI addresses the host really has
    host_paths: set[str] = field(default_factory=lambda: {"/home/user/share"})
    busy_host_ports: set[int] = field(default_factory=set)  # held by non-LXD processes
    profiles: dict[str, dict[str, dict[str, str]]] = field(
        default_factory=lambda: {
            "default": {
                "root": {"type": "disk", "path": "/", "pool": "default"},
                "eth0": {"type": "nic", "network": "lxdbr0", "name": "eth0"},
            }
        }
    )
    images: dict[str, Snapshot] = field(default_factory=dict)  # alias → what it unpacks to
    # Published images: fingerprint → (its alias, its properties); what it unpacks to is in
    # `images` under that alias. Like LXD's, they belong to no project (see hostproject).
    published: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    projects: dict[str, dict[str, Record]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    failures: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    leases: dict[bytes, str] = field(default_factory=dict)  # DHCP client id → address
    serial: int = 0
    # Apply makes new containers from several threads: one call at a time, as LXD's database
    # would see them. A test that must see creates overlap sets `create_gate` to a barrier.
    no_dhcp: set[str] = field(default_factory=set)  # instances whose DHCP never answers
    # (instance, command) → how many more runs lose their output but keep their exit code,
    # as pylxd's exec did under load when ws4py's socket broke ("Broken pipe") after the run
    lost_output: dict[tuple[str, str], int] = field(default_factory=dict)
    # root's map when /etc/subuid gives none (LXD's default): non-isolated instances share it
    id_default: tuple[int, int] = (1_000_000, 1_000_000_000)
    # Blocks the next isolated instances get whatever else holds them: what LXD 5.0.2 did to
    # creates sent at once (it gave two the same block). One base per create, in order.
    forced_blocks: list[int] = field(default_factory=list)
    # Projects that, like ssp's restricted one, refuse low-level keys (security.idmap.base...)
    low_level_blocked: set[str] = field(default_factory=set)
    # The host's loaded NVIDIA driver (None: none). A container started with
    # nvidia.runtime=true gets this driver's userspace (libnvidia-ml, nvidia-smi) injected,
    # as LXD's hook does; it keeps that version until its next start, also after an upgrade.
    nvidia_driver: str | None = "550.54.14"
    lock: threading.RLock = field(default_factory=threading.RLock)
    create_gate: threading.Barrier | None = None

    def running(self) -> list[Record]:
        return [r for p in self.projects.values() for r in p.values() if r.status == "Running"]

    def records(self) -> list[Record]:
        return [r for p in self.projects.values() for r in p.values()]

    def remap(self, record: Record) -> None:
        """LXD's ID map bookkeeping on a config change: `volatile.idmap.base` and `.next`.

        An isolated instance gets `security.idmap.base` when set, keeps a block it has, or
        gets the first free block after the default map's first 65,536 IDs; the others share
        the default map (base 0). Unlike LXD 5.0.2, never the same block twice: the fake runs
        one call at a time.
        """
        config = record.config
        start, count = self.id_default
        if config.get("security.idmap.isolated") != "true":
            config["volatile.idmap.base"] = "0"
            config["volatile.idmap.next"] = _idmap_json(start, count)
            return
        size = int(config.get("security.idmap.size", "65536"))
        if self.forced_blocks and int(config.get("volatile.idmap.base", "0")) == 0:
            base = self.forced_blocks.pop(0)
        elif config.get("security.idmap.base"):
            base = int(config["security.idmap.base"])
        elif int(config.get("volatile.idmap.base", "0")) > 0:
            base = int(config["volatile.idmap.base"])
        else:
            held = sorted(
                int(r.config["volatile.idmap.base"])
                for r in self.records()
                if r is not record and int(r.config.get("volatile.idmap.base", "0")) > 0
            )
            base = start + 65536
            while any(b < base + size and base < b + 65536 for b in held):
                base += 65536
        config["volatile.idmap.base"] = str(base)
        config["volatile.idmap.next"] = _idmap_json(base, size)


def _idmap_json(base: int, size: int) -> str:
    """LXD's record of a map: one UID and one GID entry from container ID 0."""
    entries = [
        {"Isuid": uid, "Isgid": not uid, "Hostid": base, "Nsid": 0, "Maprange": size}
        for uid in (True, False)
    ]
    return json.dumps(entries)


def _err(message: str) -> LxdError:
    return LxdError(message)


def _check_key(key: str, value: str) -> None:
    if not key.startswith(CONFIG_PREFIXES):
        raise _err(f"Invalid config: Unknown configuration key: {key}")
    cron = len(value.split()) == 5
    if key == "snapshots.schedule" and value and value not in _SCHEDULES and not cron:
        raise _err(
            "Invalid config: Schedule must be of the form: <minute> <hour> "
            "<day-of-month> <month> <day-of-week>"
        )
    boolean = key.startswith("security.") and not key.startswith("security.idmap.")
    if (boolean or key == "security.idmap.isolated") and value not in ("true", "false"):
        raise _err(f'Invalid config: Invalid value for a boolean "{value}"')


def _port(listen: str) -> int | None:
    tail = listen.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


P = ParamSpec("P")
R = TypeVar("R")


def _serialized(
    method: Callable[Concatenate[FakeLxd, P], R],
) -> Callable[Concatenate[FakeLxd, P], R]:
    """An `LxdApi` call, under the daemon's lock."""

    def locked(self: FakeLxd, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.daemon.lock:
            return method(self, *args, **kwargs)

    functools.update_wrapper(locked, method)
    return locked


class FakeLxd:
    """`LxdApi` over one project of a `FakeDaemon`; safe to call from several threads."""

    def __init__(self, project: str = "ssp", daemon: FakeDaemon | None = None) -> None:
        self.project = project
        self.daemon = daemon or FakeDaemon()
        self.daemon.projects.setdefault(project, {})

    # -- construction and inspection helpers (not part of LxdApi) ------------------------------

    @classmethod
    def seeded(cls, present_gpus: Sequence[str] = (), project: str = "ssp") -> FakeLxd:
        """A daemon as the seed left it: a running Common-Server with bad habits, snapshotted."""
        daemon = FakeDaemon(present_gpus=set(present_gpus))
        default = cls("default", daemon)
        base = Record(
            name=BASE,
            project="default",
            config={
                "security.privileged": "true",
                "raw.lxc": "lxc.apparmor.profile=unconfined\nlxc.cgroup.devices.allow = a",
                "image.os": "Debian",
                "image.release": "bookworm",
                "volatile.base_image": "f" * 64,
                "volatile.uuid": "00000000-0000-4000-8000-000000000001",
                "user.lab.note": "set up by hand, see the wiki",
            },
            devices={
                # The seed's manual: a GPU device with no selector gets every GPU.
                "gpu": {"type": "gpu"},
                "sharedfolder": {
                    "type": "disk",
                    "source": "/home/user/share",
                    "path": "/home/user/share",
                },
            },
            profiles=["default"],
            description="The lab's common server",
            inside=debian_base(),
            status="Running",
        )
        daemon.projects["default"][BASE] = base
        base.snapshots[GOLDEN] = Snapshot(
            copy.deepcopy(base.config), copy.deepcopy(base.devices), copy.deepcopy(base.inside)
        )
        daemon.images["ubuntu/24.04"] = Snapshot(
            {"image.os": "Ubuntu", "image.release": "noble", "volatile.base_image": "e" * 64},
            {},
            debian_base(),
        )
        default._lease(base)
        return cls(project, daemon)

    def view(self, project: str) -> FakeLxd:
        return FakeLxd(project, self.daemon)

    def read_project(self) -> Project | None:
        """What `ssp apply` reads to know whether it may choose host ID blocks here."""
        if self.project in self.daemon.low_level_blocked:
            return Project(self.project, "", {"restricted": "true"})
        return Project(self.project, "", {})

    def servers(self, instance: str) -> FakeLxd:
        """The `servers` callable apply takes: the view of the project holding `instance`."""
        for project, records in sorted(self.daemon.projects.items()):
            if instance in records:
                return self.view(project)
        return self.view("default")

    @property
    def calls(self) -> list[tuple[str, str]]:
        return self.daemon.calls

    @property
    def mutations(self) -> list[tuple[str, str]]:
        return [c for c in self.daemon.calls if c[0] not in READS]

    def fail_on(self, method: str, name: str, message: str, times: int | None = None) -> None:
        """Make `method` on instance `name` raise LxdError(message), `times` times (or always)."""
        self.daemon.failures[(method, name)] = [message, times]

    def record(self, name: str) -> Record:
        """The stored instance, for assertions (KeyError when missing)."""
        return self.daemon.projects[self.project][name]

    def add(self, record: Record) -> Record:
        """Put an instance in place directly, as if someone made it by hand."""
        record.project = self.project
        self.daemon.projects[self.project][record.name] = record
        if "volatile.idmap.next" not in record.config:
            self.daemon.remap(record)
        if record.status == "Running":
            record.config.setdefault("volatile.idmap.current", record.config["volatile.idmap.next"])
            self._lease(record)
        return record

    # -- internals ------------------------------------------------------------------------------

    @property
    def _records(self) -> dict[str, Record]:
        return self.daemon.projects[self.project]

    def _call(self, method: str, name: str) -> None:
        self.daemon.calls.append((method, name))
        failure = self.daemon.failures.get((method, name))
        if failure is not None:
            message, times = failure
            if times is not None:
                failure[1] = times - 1
                if failure[1] <= 0:
                    del self.daemon.failures[(method, name)]
            raise _err(message)

    def _get(self, name: str) -> Record:
        try:
            return self._records[name]
        except KeyError:
            # LXD's own words, which the adapter passes on (apply tells a missing shared
            # server by them); only `instance` rewords it, as the adapter does.
            raise _err(f"{name!r}: Instance not found") from None

    def _expanded(self, record: Record) -> dict[str, dict[str, str]]:
        devices: dict[str, dict[str, str]] = {}
        for profile in record.profiles:
            devices.update(copy.deepcopy(self.daemon.profiles[profile]))
        devices.update(copy.deepcopy(record.devices))
        return devices

    def _check(self, config: Mapping[str, str], devices: Devices, copy: bool = False) -> None:
        """LXD's validation of config keys and device options (what the fake can know).

        A restricted project's low-level rule is not checked on a copy: LXD 5.0.2 does not.
        """
        for key, value in config.items():
            _check_key(key, value)
            if not copy and self.project in self.daemon.low_level_blocked and key in LOW_LEVEL:
                raise _err(
                    f'Failed checking if instance update allowed: Use of low-level config "{key}" '
                    f'on container of project "{self.project}" is forbidden'
                )
        for dev, options in devices.items():
            self._check_device(dev, options)

    def _check_device(self, dev: str, options: Mapping[str, str]) -> None:
        kind = options.get("type")
        if kind not in ("disk", "gpu", "proxy", "nic", "unix-char", "unix-block"):
            raise _err(f'Failed add validation for device "{dev}": Invalid device type')
        if kind == "gpu" and "pci" in options:
            if "id" in options:
                raise _err('Cannot use "id" when when "pci" is set')
            if not _PCI.match(options["pci"]):
                raise _err('Invalid value for device option "pci": Invalid PCI address')
        if kind == "proxy":
            for end in ("listen", "connect"):
                proto = options.get(end, "").split(":", 1)[0]
                if proto not in ("tcp", "udp", "unix"):
                    raise _err(f'Unknown protocol type "{proto}"')
        if kind == "disk" and options.get("path") != "/":
            source = options.get("source", "")
            if source not in self.daemon.host_paths:
                raise _err(
                    f'Failed add validation for device "{dev}": Missing source path '
                    f'"{source}" for disk "{dev}"'
                )

    def _start_device(self, record: Record, dev: str, options: Mapping[str, str]) -> None:
        """What starting (or hot-plugging) one device needs from the host."""
        if options.get("type") == "gpu":
            pci = options.get("pci")
            if pci is not None and pci.lower() not in self.daemon.present_gpus:
                raise _err(
                    f'Failed to start device "{dev}": Invalid PCI address (no device found): {pci}'
                )
            if pci is None and not self.daemon.present_gpus:
                raise _err(f'Failed to start device "{dev}": Failed to detect requested GPU device')
        if options.get("type") == "proxy":
            port = _port(options.get("listen", ""))
            others = [
                _port(d.get("listen", ""))
                for r in self.daemon.running()
                if r is not record
                for d in self._expanded(r).values()
                if d.get("type") == "proxy"
            ]
            if port in others or port in self.daemon.busy_host_ports:
                addr = options["listen"].split(":", 1)[1]
                raise _err(
                    f'Failed to start device "{dev}": Error occurred when starting proxy device: '
                    f"Error: Failed to listen on {addr}: listen tcp {addr}: bind: address "
                    "already in use"
                )
        if options.get("type") == "disk" and not options.get("path"):
            raise _err(f"Failed to run: /usr/bin/lxd forkstart {record.name} exit status 1")

    def _addresses(self, record: Record) -> tuple[str, ...]:
        if record.status != "Running" or record.name in self.daemon.no_dhcp:
            return ()
        return (self._lease(record),)

    def _lease(self, record: Record) -> str:
        machine_id = record.inside.files.get("/etc/machine-id")
        client = machine_id.data if machine_id else record.name.encode()
        if client not in self.daemon.leases:
            self.daemon.leases[client] = f"10.23.0.{len(self.daemon.leases) + 10}"
        return self.daemon.leases[client]

    def _to_instance(self, record: Record) -> Instance:
        return Instance(
            name=record.name,
            status=record.status,
            config=dict(record.config),
            devices=copy.deepcopy(record.devices),
            expanded_devices=self._expanded(record),
            description=record.description,
            profiles=tuple(record.profiles),
            ipv4=self._addresses(record),
            snapshots=tuple(record.snapshots),
            location=record.location,
        )

    # -- LxdApi: reading --------------------------------------------------------------------------

    @_serialized
    def instances(self) -> list[Instance]:
        self._call("instances", "")
        return [self._to_instance(r) for _n, r in sorted(self._records.items())]

    @_serialized
    def all_instances(self) -> dict[str, list[Instance]]:
        """Every project's instances, as LXD's `all-projects` listing (projects that hold none
        are absent from it)."""
        self._call("all_instances", "")
        return {
            project: [self._to_instance(r) for _n, r in sorted(records.items())]
            for project, records in sorted(self.daemon.projects.items())
            if records
        }

    @_serialized
    def members(self) -> dict[str, str]:
        """A single server, as the fake always is: no cluster members, no request sent."""
        return {}

    @_serialized
    def id_maps(self) -> list[IdMapUse]:
        self._call("id_maps", "")
        return [idranges.use_of(r.project, r.name, r.config) for r in self.daemon.records()]

    @_serialized
    def instance(self, name: str) -> Instance:
        self._call("instance", name)
        record = self._records.get(name)
        if record is None:
            raise _err(f"instance {name!r} not found in LXD project {self.project!r}")
        return self._to_instance(record)

    @_serialized
    def wait_ipv4(self, name: str, timeout_s: float) -> tuple[str, ...]:
        self._call("wait_ipv4", name)
        return self._addresses(self._get(name))

    # -- LxdApi: lifecycle ------------------------------------------------------------------------

    def create(
        self,
        name: str,
        source: Mapping[str, str],
        config: Mapping[str, str],
        devices: Devices,
        profiles: Sequence[str],
        description: str,
        target: str = "",
    ) -> None:
        if target:
            raise _err("Target only allowed when clustered")  # LXD 5.0.2's words
        if self.daemon.create_gate is not None:  # outside the lock, or nothing could overlap
            self.daemon.create_gate.wait()
        with self.daemon.lock:
            self._call("create", name)
            if name in self._records:
                raise _err(
                    "Failed creating instance record: Add instance info to the database: This "
                    '"instances" entry already exists'
                )
            origin = self._origin(source)
            merged_config = {
                k: v for k, v in origin.config.items() if not k.startswith("volatile.")
            }
            if "volatile.base_image" in origin.config:
                merged_config["volatile.base_image"] = origin.config["volatile.base_image"]
            merged_config.update(config)
            merged_devices = copy.deepcopy(origin.devices)
            merged_devices.update({k: dict(v) for k, v in devices.items()})
            self._check(merged_config, merged_devices, copy=source.get("type") == "copy")
            if not profiles and "root" not in merged_devices:
                raise _err(
                    "Failed creating instance record: Failed initialising instance: Failed getting "
                    "root disk: No root device could be found"
                )
            self.daemon.serial += 1
            merged_config["volatile.uuid"] = f"00000000-0000-4000-8000-{self.daemon.serial:012d}"
            self._records[name] = Record(
                name=name,
                project=self.project,
                config=merged_config,
                devices=merged_devices,
                profiles=list(profiles),
                description=description,
                inside=copy.deepcopy(origin.inside),
            )
            self.daemon.remap(self._records[name])

    def _origin(self, source: Mapping[str, str]) -> Snapshot:
        if source.get("type") == "image":
            alias = source.get("alias", "")
            if alias not in self.daemon.images:
                raise _err(f"Image not found: {alias}")
            return self.daemon.images[alias]
        if source.get("type") != "copy":
            raise _err(f"Unknown source type {source.get('type')!r}")
        project = source.get("project", self.project)
        instance, _, snap = source.get("source", "").partition("/")
        record = self.daemon.projects.get(project, {}).get(instance)
        if record is None:
            raise _err(
                f'Failed to fetch instance "{instance}" in project "{project}": Instance not found'
            )
        if snap:
            if snap not in record.snapshots:
                raise _err(
                    f'Failed to fetch snapshot "{snap}" of instance "{instance}" in project '
                    f'"{project}": InstanceSnapshot not found'
                )
            return record.snapshots[snap]
        return Snapshot(record.config, record.devices, record.inside)

    @_serialized
    def replace(
        self,
        name: str,
        config: Mapping[str, str],
        devices: Devices,
        profiles: Sequence[str],
        description: str,
    ) -> None:
        self._call("replace", name)
        record = self._get(name)
        new_devices = {k: dict(v) for k, v in devices.items()}
        self._check(config, new_devices)
        self._nvidia_tools(config)
        if record.status == "Running":  # hot-plug: new or changed devices start now
            old = self._expanded(record)
            for dev, options in new_devices.items():
                if old.get(dev) != options:
                    self._start_device(record, dev, options)
        kept = {k: v for k, v in record.config.items() if k.startswith(LXD_OWN)}
        record.config = {**kept, **config}
        self.daemon.remap(record)
        record.devices = new_devices
        record.profiles = list(profiles)
        record.description = description

    def _nvidia_tools(self, config: Mapping[str, str]) -> None:
        """LXD 5.0.2 stores nvidia.runtime=true at a create, but an update or a start of an
        instance holding it fails where the host lacks nvidia-container-cli (seen here)."""
        if config.get("nvidia.runtime") == "true" and self.daemon.nvidia_driver is None:
            raise _err("Initialize LXC: The NVIDIA container tools couldn't be found")

    @_serialized
    def set_config(self, name: str, changes: Mapping[str, str | None]) -> None:
        self._call("set_config", name)
        record = self._get(name)
        self._check({k: v for k, v in changes.items() if v is not None}, {})
        self._nvidia_tools({**record.config, **{k: v for k, v in changes.items() if v}})
        for key, value in changes.items():
            if value is None:
                record.config.pop(key, None)
            else:
                record.config[key] = value
        self.daemon.remap(record)

    @_serialized
    def start(self, name: str) -> None:
        self._call("start", name)
        record = self._get(name)
        if record.status == "Running":
            raise _err("The instance is already running")
        for dev, options in sorted(self._expanded(record).items()):
            self._start_device(record, dev, options)
        if record.config.get("nvidia.runtime") == "true":
            self._nvidia_tools(record.config)
            record.inside.nvidia_userspace = self.daemon.nvidia_driver
        record.status = "Running"
        record.config["volatile.idmap.current"] = record.config.get("volatile.idmap.next", "[]")
        record.config["volatile.last_state.power"] = "RUNNING"
        record.config.setdefault("volatile.eth0.hwaddr", f"00:16:3e:00:00:{len(record.name):02x}")
        self._lease(record)

    @_serialized
    def stop(self, name: str, timeout_s: int = 60) -> None:
        self._call("stop", name)
        record = self._get(name)
        record.status = "Stopped"  # stopping a stopped instance is a no-op, as in the adapter
        record.config["volatile.last_state.power"] = "STOPPED"

    @_serialized
    def snapshot(self, name: str, snapshot: str) -> None:
        self._call("snapshot", name)
        record = self._get(name)
        if snapshot in record.snapshots:
            raise _err(
                f'Failed creating instance snapshot record "{snapshot}": Add instance info to '
                'the database: This "instances_snapshots" entry already exists'
            )
        record.snapshots[snapshot] = Snapshot(
            copy.deepcopy(record.config),
            copy.deepcopy(record.devices),
            copy.deepcopy(record.inside),
        )

    @_serialized
    def restore_snapshot(self, name: str, snapshot: str) -> None:
        self._call("restore_snapshot", name)
        record = self._get(name)
        if snapshot not in record.snapshots:
            raise _err(f"Snapshot {name}/{snapshot} does not exist")
        saved = record.snapshots[snapshot]
        own = {k: v for k, v in record.config.items() if k.startswith("volatile.")}
        record.config = {
            **{k: v for k, v in saved.config.items() if not k.startswith("volatile.")},
            **own,
        }
        record.devices = copy.deepcopy(saved.devices)
        record.inside = copy.deepcopy(saved.inside)

    @_serialized
    def delete(self, name: str) -> None:
        self._call("delete", name)
        record = self._get(name)
        if record.config.get("security.protection.delete") == "true":
            raise _err("Container is protected")
        if record.status == "Running":
            raise _err("Instance is running")
        del self._records[name]

    # -- HostApi: the storage pool (what `ssp status` and `ssp publish` read) ----------------

    def storage_pool(self, name: str, member: str = "") -> Pool | None:
        """A dir pool of 4 TiB with 100 GiB used, as the status board reads one."""
        self._call("storage_pool", name)
        return Pool(name, "dir", 4096 * 2**30, 100 * 2**30)

    @_serialized
    def rename(self, name: str, new_name: str) -> None:
        self._call("rename", name)
        record = self._get(name)
        if record.status == "Running":
            raise _err("Renaming of running instance not allowed")
        if new_name in self._records:
            raise _err(f"Name {new_name!r} already in use")
        record.name = new_name
        self._records[new_name] = self._records.pop(name)

    # -- LxdApi: images ------------------------------------------------------------------------

    @_serialized
    def images(self) -> list[Image]:
        self._call("images", "")
        return [
            Image(fp, (alias,), dict(props), props.get("description", ""))
            for fp, (alias, props) in sorted(self.daemon.published.items())
            if image_of(props, self.project)
        ]

    @_serialized
    def publish_image(
        self,
        name: str,
        snapshot: str,
        alias: str,
        properties: Mapping[str, str],
        description: str,
    ) -> str:
        self._call("publish_image", name)
        record = self._get(name)
        if snapshot not in record.snapshots:
            raise _err(f"Snapshot {name}/{snapshot} does not exist")
        if alias in self.daemon.images:
            raise _err(f'Alias "{alias}" already exists')
        saved = record.snapshots[snapshot]
        self.daemon.serial += 1
        fingerprint = f"{self.daemon.serial:064x}"
        config = {k: v for k, v in saved.config.items() if k.startswith("image.")}
        self.daemon.images[alias] = Snapshot(
            {**config, "volatile.base_image": fingerprint}, {}, copy.deepcopy(saved.inside)
        )
        props = {**properties, IMAGE_PROJECT: self.project, "description": description}
        self.daemon.published[fingerprint] = (alias, props)
        return fingerprint

    @_serialized
    def delete_image(self, fingerprint: str) -> None:
        self._call("delete_image", fingerprint)
        if fingerprint not in self.daemon.published:
            raise _err("Image not found")
        alias, _props = self.daemon.published.pop(fingerprint)
        del self.daemon.images[alias]

    # -- LxdApi: inside -------------------------------------------------------------------------

    @_serialized
    def execute(self, name: str, argv: Sequence[str], stdin: str | None = None) -> ExecResult:
        self._call("execute", name)
        record = self._get(name)
        if record.status != "Running":
            raise _err(f"run {argv[0]!r} in {name!r}: Instance is not running")
        record.inside.commands.append(tuple(argv))
        result = _Shell(record.inside, self.daemon.nvidia_driver).run(name, list(argv))
        if self.daemon.lost_output.get((name, argv[0]), 0) > 0:
            self.daemon.lost_output[(name, argv[0])] -= 1
            return ExecResult(result.exit_code, "", "")
        return result

    @_serialized
    def push_file(self, name: str, path: str, data: bytes, mode: int, uid: int, gid: int) -> None:
        self._call("push_file", name)
        inside = self._get(name).inside
        parent = path.rsplit("/", 1)[0] or "/"
        if parent not in inside.dirs:
            raise _err(
                f"write {path} in {name!r}: Failed to open {path}: no such file or directory"
            )
        inside.files[path] = File(bytes(data), mode, uid, gid)

    @_serialized
    def make_dir(self, name: str, path: str, mode: int, uid: int, gid: int) -> None:
        self._call("make_dir", name)
        inside = self._get(name).inside
        parent = path.rsplit("/", 1)[0] or "/"
        if parent not in inside.dirs:
            raise _err(f"make {path} in {name!r}: no such file or directory")
        inside.dirs.setdefault(path, (mode, uid, gid))

    @_serialized
    def delete_file(self, name: str, path: str) -> None:
        self._call("delete_file", name)
        self._get(name).inside.files.pop(path, None)


# --- the commands apply runs inside -------------------------------------------------------------


class _Shell:
    """Just enough of Debian's passwd tools, with their exit statuses."""

    def __init__(self, inside: Inside, driver: str | None = None) -> None:
        self.inside = inside
        self.driver = driver  # the host's loaded NVIDIA kernel driver

    def run(self, name: str, argv: list[str]) -> ExecResult:
        handlers: dict[str, Callable[[list[str]], ExecResult]] = {
            "getent": self.getent,
            "groupadd": self.groupadd,
            "useradd": self.useradd,
            "install": self.install,
            "usermod": self.usermod,
            "userdel": self.userdel,
            "gpasswd": self.gpasswd,
            "id": self.id,
            "env": lambda rest: self.run(name, [a for a in rest if "=" not in a]),
            "apt-get": self.apt_get,
            "true": lambda _rest: ExecResult(0, "", ""),
            "cat": self.cat,
        }
        if self.inside.nvidia_userspace is not None:
            handlers["nvidia-smi"] = self.nvidia_smi
        handler = handlers.get(argv[0])
        if handler is None:
            raise _err(f"command not found in {name}: {argv[0]}")
        return handler(argv[1:])

    def nvidia_smi(self, args: list[str]) -> ExecResult:
        """Only `--query-gpu=driver_version --format=csv,noheader`, as nvidia-smi answers it:
        a library of another version than the loaded kernel module refuses to initialise."""
        version = self.inside.nvidia_userspace
        if version != self.driver:
            major = (version or "").split(".")[0]
            return ExecResult(
                18,
                f"Failed to initialize NVML: Driver/library version mismatch\n"
                f"NVML library version: {major}.{(version or '').split('.')[1]}\n",
                "",
            )
        if args != ["--query-gpu=driver_version", "--format=csv,noheader"]:
            return ExecResult(2, "", f"the fake nvidia-smi does not know {args}\n")
        return ExecResult(0, f"{version}\n", "")

    @staticmethod
    def _options(args: list[str], flags: set[str]) -> tuple[dict[str, str], list[str]]:
        """--opt value pairs (flags take no value) and the positional arguments."""
        opts: dict[str, str] = {}
        rest: list[str] = []
        i = 0
        while i < len(args):
            if args[i].startswith("-"):
                if args[i] in flags:
                    opts[args[i]] = ""
                    i += 1
                else:
                    opts[args[i]] = args[i + 1]
                    i += 2
            else:
                rest.append(args[i])
                i += 1
        return opts, rest

    def getent(self, args: list[str]) -> ExecResult:
        if args[:1] == ["group"] and len(args) == 2:
            group = self.inside.groups.get(args[1])
            if group is None:
                return ExecResult(2, "", "")
            return ExecResult(0, f"{args[1]}:x:{group[0]}:{','.join(sorted(group[1]))}\n", "")
        if args[:1] != ["passwd"] or len(args) < 2:
            return ExecResult(1, "", "getent: only 'passwd NAME…' and 'group NAME' are simulated")
        # Several names: the ones found, one line each; exit 2 when any is missing.
        found = [(n, self.inside.users[n]) for n in args[1:] if n in self.inside.users]
        lines = "".join(f"{n}:x:{u.uid}:{u.gid}::{u.home}:{u.shell}\n" for n, u in found)
        return ExecResult(0 if len(found) == len(args) - 1 else 2, lines, "")

    def userdel(self, args: list[str]) -> ExecResult:
        (login,) = args
        if self.inside.users.pop(login, None) is None:
            return ExecResult(6, "", f"userdel: user '{login}' does not exist")
        for group, (_gid, members) in list(self.inside.groups.items()):
            members.discard(login)
            if group == login:
                del self.inside.groups[group]
        return ExecResult(0, "", "")

    def groupadd(self, args: list[str]) -> ExecResult:
        opts, (group,) = self._options(args, {"--force", "-f"})
        force = "--force" in opts or "-f" in opts
        if group in self.inside.groups:
            return ExecResult(0 if force else 9, "", f"groupadd: group '{group}' already exists")
        gid = int(opts.get("--gid", "-1"))
        if gid < 0 or self.inside.group_by_gid(gid) is not None:
            if gid >= 0 and not force:
                return ExecResult(4, "", f"groupadd: GID '{gid}' already exists")
            gid = max([g for g, _m in self.inside.groups.values()] + [999]) + 1
        self.inside.groups[group] = (gid, set())
        return ExecResult(0, "", "")

    def useradd(self, args: list[str]) -> ExecResult:
        opts, (login,) = self._options(args, {"--create-home", "-m"})
        if login in self.inside.users:
            return ExecResult(9, "", f"useradd: user '{login}' already exists")
        uid = int(opts["--uid"]) if "--uid" in opts else self._free_uid()
        if self.inside.user_by_uid(uid) is not None:
            return ExecResult(4, "", f"useradd: UID {uid} is not unique")
        if "--gid" in opts:
            spec = opts["--gid"]
            group = self.inside.group_by_gid(int(spec)) if spec.isdigit() else spec
            if group is None or group not in self.inside.groups:
                return ExecResult(6, "", f"useradd: group '{spec}' does not exist")
            gid = self.inside.groups[group][0]
        elif login in self.inside.groups:
            return ExecResult(9, "", f"useradd: group {login} exists - use -g")
        else:  # USERGROUPS_ENAB: a group of the same name, with the UID as GID when free
            gid = uid if self.inside.group_by_gid(uid) is None else self._free_uid()
            self.inside.groups[login] = (gid, set())
        home = f"/home/{login}"
        self.inside.users[login] = User(uid, gid, home, opts.get("--shell", "/bin/sh"))
        if "--create-home" in opts or "-m" in opts:
            self.inside.dirs[home] = (0o755, uid, gid)
        return ExecResult(0, "", "")

    def _free_uid(self) -> int:
        used = {u.uid for u in self.inside.users.values()} | {
            g for g, _m in self.inside.groups.values()
        }
        return next(n for n in range(1000, 60000) if n not in used)

    def install(self, args: list[str]) -> ExecResult:
        opts, paths = self._options(args, {"-d"})
        if "-d" not in opts:
            return ExecResult(1, "", "install: only -d is simulated")
        mode = int(opts.get("-m", "755"), 8)
        uid, gid = self._id(opts.get("-o", "0"), user=True), self._id(opts.get("-g", "0"))
        if uid is None or gid is None:
            return ExecResult(1, "", f"install: invalid user or group {opts}")
        for path in paths:
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                self.inside.dirs.setdefault("/" + "/".join(parts[:i]), (0o755, 0, 0))
            self.inside.dirs[path] = (mode, uid, gid)
        return ExecResult(0, "", "")

    def _id(self, text: str, user: bool = False) -> int | None:
        if text.isdigit():
            return int(text)
        if user:
            found = self.inside.users.get(text)
            return found.uid if found else None
        group = self.inside.groups.get(text)
        return group[0] if group else None

    def usermod(self, args: list[str]) -> ExecResult:
        opts, (login,) = self._options(args, {"--lock", "--unlock", "--append", "-L", "-U", "-a"})
        user = self.inside.users.get(login)
        if user is None:
            return ExecResult(6, "", f"usermod: user '{login}' does not exist")
        if "--groups" in opts:
            for group in opts["--groups"].split(","):
                if group not in self.inside.groups:
                    return ExecResult(6, "", f"usermod: group '{group}' does not exist")
            for group, (gid, members) in list(self.inside.groups.items()):
                if group in opts["--groups"].split(","):
                    members.add(login)
                elif "--append" not in opts:
                    members.discard(login)
                self.inside.groups[group] = (gid, members)
        if "--lock" in opts:
            user.locked = True
        if "--unlock" in opts:
            user.locked = False
        if "--expiredate" in opts:
            user.expired = opts["--expiredate"] not in ("", "-1")
        return ExecResult(0, "", "")

    def gpasswd(self, args: list[str]) -> ExecResult:
        opts, (group,) = self._options(args, set())
        login = opts.get("--delete")
        if login is None:
            return ExecResult(2, "", "gpasswd: only --delete is simulated")
        if group not in self.inside.groups:
            return ExecResult(3, "", f"gpasswd: group '{group}' does not exist in /etc/group")
        members = self.inside.groups[group][1]
        if login not in members:
            return ExecResult(3, "", f"gpasswd: user '{login}' is not a member of '{group}'")
        members.discard(login)
        return ExecResult(0, f"Removing user {login} from group {group}\n", "")

    def id(self, args: list[str]) -> ExecResult:
        (flag, login) = args
        user = self.inside.users.get(login)
        if user is None:
            return ExecResult(1, "", f"id: '{login}': no such user")
        return ExecResult(0, f"{user.uid if flag == '-u' else user.gid}\n", "")

    def cat(self, args: list[str]) -> ExecResult:
        found = [self.inside.files.get(path) for path in args]
        missing = [path for path, f in zip(args, found, strict=True) if f is None]
        text = "".join(f.data.decode(errors="replace") for f in found if f is not None)
        if missing:
            return ExecResult(
                1, text, f"cat: can't open '{missing[0]}': No such file or directory\n"
            )
        return ExecResult(0, text, "")

    def apt_get(self, args: list[str]) -> ExecResult:
        if args[:1] == ["update"]:
            self.inside.package_lists = True
            return ExecResult(0, "Reading package lists...\n", "")
        if args[:1] != ["install"]:
            return ExecResult(100, "", f"E: apt-get {shlex.join(args)} is not simulated")
        if not self.inside.package_lists:
            wanted = next(a for a in args[1:] if not a.startswith("-"))
            return ExecResult(100, "", f"E: Unable to locate package {wanted}")
        self.inside.packages |= {a for a in args[1:] if not a.startswith("-")}
        return ExecResult(0, "", "")


# --- the lab: config and requests as validate_tree reads them --------------------------------

ROOT = Path(__file__).resolve().parents[1]
# 2027-01-10 noon in the lab's zone (Asia/Shanghai): leases below end months later.
NOW = datetime(2027, 1, 10, 4, 0, tzinfo=UTC)
TODAY = date(2027, 1, 10)
EXPIRES = date(2027, 6, 30)
OWNERS = ("alice", "bob", "carol", "lab-admin")


def keygen(where: Path, comment: str) -> str:
    """A fresh ed25519 public key line, made by ssh-keygen."""
    key = where / comment.replace("@", "_")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
        check=True,
    )
    return key.with_name(key.name + ".pub").read_text(encoding="ascii").strip()


@dataclass
class Lab:
    """The sample policy and inventory, plus request files written from keyword arguments."""

    keys: dict[str, list[str]]  # owner → two public key lines
    policy: str = field(default_factory=(ROOT / "config" / "policy.yaml").read_text)
    hosts: str = field(default_factory=(ROOT / "config" / "hosts.yaml").read_text)

    @classmethod
    def make(cls, where: Path | None = None) -> Lab:
        folder = where or Path(tempfile.mkdtemp(prefix="ssp-lab-keys-"))
        keys = {o: [keygen(folder, f"{o}@laptop"), keygen(folder, f"{o}@desk")] for o in OWNERS}
        return cls(keys)

    def edited(self, old: str, new: str) -> Lab:
        """The same lab with one text replacement in config/policy.yaml."""
        assert old in self.policy, old
        return Lab(self.keys, self.policy.replace(old, new), self.hosts)

    def container(self, name: str, owner: str = "alice", **fields: Any) -> tuple[str, bytes]:
        doc: dict[str, Any] = {
            "kind": "container",
            "name": name,
            "owner": owner,
            "purpose": f"Experiments in {name}",
            "ssh_keys": self.keys[owner][:1],
            "expires": EXPIRES,
        }
        doc.update(fields)
        return self._file(owner, name, doc)

    def account(self, name: str, owner: str = "bob", **fields: Any) -> tuple[str, bytes]:
        doc: dict[str, Any] = {
            "kind": "account",
            "name": name,
            "owner": owner,
            "purpose": "Notebooks on the shared server",
            "server": "common",
            "ssh_keys": self.keys[owner][:1],
            "expires": EXPIRES,
        }
        doc.update(fields)
        return self._file(owner, name, doc)

    @staticmethod
    def _file(owner: str, name: str, doc: Mapping[str, Any]) -> tuple[str, bytes]:
        text = yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False, width=1000)
        return f"requests/{owner}/{name}.yaml", text.encode()

    def tree(self, *requests: tuple[str, bytes]) -> Tree:
        files = {
            "config/policy.yaml": self.policy.encode(),
            "config/hosts.yaml": self.hosts.encode(),
        }
        files.update(dict(requests))
        return Tree(files)

    def validate(self, *requests: tuple[str, bytes], now: datetime = NOW) -> Validation:
        return validate_tree(self.tree(*requests), now)

    def write(self, repo: Path, *requests: tuple[str, bytes]) -> Path:
        """The lab as a checkout on disk (for the CLI); stale request files are removed."""
        for path, data in self.tree(*requests).files.items():
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_bytes(data)
        wanted = {repo / p for p, _d in requests}
        for old in (repo / "requests").rglob("*.yaml"):
            if old not in wanted:
                old.unlink()
        return repo
