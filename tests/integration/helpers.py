"""Helpers for the apply tests on a real LXD: a lab checkout for one project, keys, `lxc`.

`LabRepo` is a repository on disk as `ssp apply` reads it: the sample `config/` rewritten so
that the policy points at the test's own LXD project, a share folder in a temporary
directory, a shared server inside the test project, forwarded ports on 127.0.0.1 in a range
nobody listens on, and a `busybox` policy image (the `ssp-busybox` alias) besides the
`Common-Server/golden` clone. Request files are written from keyword arguments with real
ed25519 keys made by ssh-keygen, whose private halves the SSH tests log in with.

Checks of what LXD holds go through the `lxc` client, not through the adapter under test.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import yaml
from workers import id_share, port_window

from provisioner.applying.apply import DEFAULT_JOBS
from provisioner.flows.reconcile import Pass, run_pass
from provisioner.git import files as gitfiles
from provisioner.host import subidfiles
from provisioner.host.ports import listening_ports
from provisioner.lxd.api import Lxd
from provisioner.planning.hostproject import forbids_low_level
from provisioner.validation.validate import Validation, blocking, validate_tree
from provisioner.values import subids
from provisioner.values.idranges import IdRange

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
EXPIRES = "2027-06-30"
SHA = "5e7f" * 10
# Members of the sample policy, with their host UIDs (delegated by runner/dev-lxd.sh).
UIDS = {"alice": 1001, "bob": 1002, "carol": 1003}
# Below the kernel's ephemeral ports (32768-60999 here): an outgoing connection's local port
# in the window would make a container's forward fail to listen. Each xdist worker forwards
# from its own slice of it (workers.py).
PORT_WINDOW = (24000, 24999)


@dataclass(frozen=True)
class Key:
    private: Path
    public: str


def make_key(folder: Path, label: str) -> Key:
    """A fresh ed25519 key pair on disk (the private file is 0600, as ssh wants)."""
    path = folder / f"{label}-key"
    if not path.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{label}@test", "-f", str(path)],
            check=True,
        )
    return Key(path, path.with_name(path.name + ".pub").read_text(encoding="ascii").strip())


def free_ports(count: int, window: tuple[int, int] | None = None) -> tuple[int, int]:
    """A run of `count` consecutive ports in `window` (default: this worker's slice of
    PORT_WINDOW) on which nothing listens, the search starting at a random port: ports are
    only listened on once a container starts, so two test runs at once on this daemon (other
    checkouts) that both took the first free run were given the same ports."""
    window = window or port_window(PORT_WINDOW)
    busy = listening_ports()
    starts = range(window[0], window[1] - count + 2)
    if not starts:
        raise RuntimeError(f"no {count} free ports in {window}")
    turn = secrets.randbelow(len(starts))
    for first in [*starts[turn:], *starts[:turn]]:
        if not any(p in busy for p in range(first, first + count)):
            return first, first + count - 1
    raise RuntimeError(f"no {count} free ports in {window}")


def lxc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real `lxc` client (LXD_DIR from the environment, as the fixtures use)."""
    return subprocess.run(["lxc", *args], capture_output=True, text=True, check=check)


def lxc_query(path: str, project: str) -> Any:
    """GET an API path with `lxc query`: LXD's own JSON, not the adapter's reading of it."""
    sep = "&" if "?" in path else "?"
    out = lxc("query", f"{path}{sep}project={project}").stdout
    return json.loads(out)


def in_instance(
    project: str, name: str, *argv: str, uid: int = 0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run argv inside an instance as `uid` (its own group too), through `lxc exec`."""
    ids = ["--user", str(uid), "--group", str(uid)] if uid else []
    env = ["--env", f"HOME=/home/{_login(uid)}"] if uid else []
    return lxc("exec", "--project", project, *ids, *env, name, "--", *argv, check=check)


def _login(uid: int) -> str:
    return next((name for name, u in UIDS.items() if u == uid), "nobody")


def eventually(probe: Callable[[], Any], timeout_s: float, every_s: float = 0.5) -> Any:
    """probe()'s first truthy value, retrying while it is falsy or raises, up to timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = probe()
        except (subprocess.CalledProcessError, OSError, ValueError):
            if time.monotonic() >= deadline:
                raise
            value = None
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(every_s)


@dataclass
class LabRepo:
    """A checkout with config/ for one LXD project and requests written by the test."""

    root: Path
    project: str
    share: Path
    ports: tuple[int, int]
    shared_server: str
    shared_ssh_port: int | None = None
    keys: dict[str, Key] = field(default_factory=dict)
    pool: str = "default"
    images: dict[str, dict[str, Any]] = field(default_factory=dict)  # added to the policy's
    tunnel: dict[str, Any] | None = None  # the policy's `tunnel:`, if any
    settings: dict[str, Any] = field(default_factory=dict)  # more top-level policy keys

    @classmethod
    def make(
        cls,
        root: Path,
        project: str,
        suffix: str,
        ports: int = 20,
        shared_ssh: bool = False,
        window: tuple[int, int] | None = None,
    ) -> Self:
        """The lab in `root`; `shared_ssh` also gives the shared server a forwarded port."""
        (root / "keys").mkdir(parents=True, exist_ok=True)
        share = root / "share"
        share.mkdir(exist_ok=True)
        # Only alice may write here: without raw.idmap her files would belong to an unmapped
        # host UID, and the folder would not let her in at all.
        os.chown(share, UIDS["alice"], UIDS["alice"])
        share.chmod(0o700)
        first, last = free_ports(ports + 1 if shared_ssh else ports, window)
        # The shared server's port is the one after the range, outside what ssp hands out.
        shared_ssh_port = last if shared_ssh else None
        last -= 1 if shared_ssh else 0
        lab = cls(root, project, share, (first, last), f"shared-{suffix}", shared_ssh_port)
        lab.keys = {owner: make_key(root / "keys", owner) for owner in UIDS}
        lab.write()
        return lab

    def policy(self) -> dict[str, Any]:
        policy: dict[str, Any] = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text())
        policy["images"]["busybox"] = {
            "image": "ssp-busybox",
            "description": "The tiny test image (no sshd, no useradd)",
            "users": False,
        }
        policy["shares"] = {
            "share": {"source": str(self.share), "path": "/home/user/share", "description": "t"}
        }
        server: dict[str, Any] = {"instance": self.shared_server, "project": self.project}
        if self.shared_ssh_port is not None:
            server["ssh_port"] = self.shared_ssh_port
        policy["shared_servers"] = {"common": server}
        policy["ssh"] = {"listen": "127.0.0.1", "ports": list(self.ports), "host": ""}
        policy["lxd"] = {"project": self.project, "profiles": ["default"], "pool": self.pool}
        # No NVIDIA container tools here, and LXD refuses nvidia.runtime=true without them
        # ("The NVIDIA container tools couldn't be found"): GPU configs are tested as an
        # image-carried userspace, which sets no nvidia.* key.
        policy["gpu_userspace"] = "image"
        policy["images"].update(self.images)
        if self.tunnel is not None:
            policy["tunnel"] = self.tunnel
        policy.update(self.settings)
        return policy

    def hosts(self) -> str:
        """config/hosts.yaml: the sample inventory (its GPUs are not on this machine)."""
        return (ROOT / "config" / "hosts.yaml").read_text()

    def container(self, name: str, owner: str = "alice", **fields: Any) -> tuple[str, bytes]:
        doc: dict[str, Any] = {
            "kind": "container",
            "name": name,
            "owner": owner,
            "purpose": f"Integration test {name}",
            "cpu": 2,
            "memory": "1GiB",
            "disk": "10GiB",
            "ssh_keys": [self.keys[owner].public],
            "expires": EXPIRES,
        }
        doc.update(fields)
        return _file(owner, name, doc)

    def account(self, name: str, owner: str = "bob", **fields: Any) -> tuple[str, bytes]:
        doc: dict[str, Any] = {
            "kind": "account",
            "name": name,
            "owner": owner,
            "purpose": "Notebooks on the shared server",
            "server": "common",
            "ssh_keys": [self.keys[owner].public],
            "expires": EXPIRES,
        }
        doc.update(fields)
        return _file(owner, name, doc)

    def write(self, *requests: tuple[str, bytes]) -> None:
        """config/ and exactly these request files (others are removed, as a merge would)."""
        files: dict[str, bytes] = {
            "config/policy.yaml": yaml.safe_dump(self.policy(), sort_keys=False).encode(),
            "config/hosts.yaml": self.hosts().encode(),
        }
        files.update(dict(requests))
        for rel, data in files.items():
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.root / rel).write_bytes(data)
        wanted = {self.root / rel for rel, _ in requests}
        for old in (self.root / "requests").rglob("*.yaml"):
            if old not in wanted:
                old.unlink()

    def validation(self, *requests: tuple[str, bytes], invalid_ok: bool = False) -> Validation:
        """Write these requests and validate the checkout as `ssp apply` does (every request
        valid, unless `invalid_ok`: apply skips and reports the invalid ones)."""
        self.write(*requests)
        validation = validate_tree(gitfiles.worktree(self.root), NOW)
        assert not blocking(validation), [str(p) for p in validation.problems]
        assert invalid_ok or not validation.errors, [str(p) for p in validation.errors]
        return validation


def _file(owner: str, name: str, doc: Mapping[str, Any]) -> tuple[str, bytes]:
    text = yaml.safe_dump(dict(doc), sort_keys=False, width=1000)
    return f"requests/{owner}/{name}.yaml", text.encode()


@dataclass
class Adapters:
    """The adapters one pass uses: the project's, and the shared server's project's."""

    main: Lxd
    shared: Lxd

    @classmethod
    def make(cls, project: str, socket: str, shared_project: str | None = None) -> Adapters:
        """Two adapters, as `ssp apply` makes them (the tests' shared server is in `project`)."""
        shared = Lxd(shared_project or project, endpoint=socket)
        return cls(Lxd(project, endpoint=socket), shared)

    def mutations(self) -> list[tuple[str, str]]:
        return self.main.mutations + self.shared.mutations

    def requests(self) -> int:
        return len(self.main.requests) + len(self.shared.requests)


def apply_pass(
    lab: LabRepo,
    adapters: Adapters,
    *requests: tuple[str, bytes],
    gpu_refusal: str | None = None,
    busy_ports: frozenset[int] | None = None,
    jobs: int = DEFAULT_JOBS,
    pin_ids: bool | None = None,
    id_spans: tuple[IdRange, ...] | None = None,
    invalid_ok: bool = False,
) -> Pass:
    """One reconcile pass of `requests` on the real daemon, with the host's busy ports; host
    ID blocks chosen by ssp unless the project forbids it (or `pin_ids` says otherwise), from
    `id_spans` (default: root's ranges in this host's /etc/subuid and /etc/subgid)."""
    if pin_ids is None:
        pin_ids = not forbids_low_level(adapters.main.read_project())
    return run_pass(
        lab.validation(*requests, invalid_ok=invalid_ok),
        adapters.main,
        lambda _instance: adapters.shared,
        now=NOW,
        sha=SHA,
        busy_ports=listening_ports() if busy_ports is None else busy_ports,
        gpu_refusal=gpu_refusal,
        id_spans=host_id_spans() if id_spans is None else id_spans,
        pin_ids=pin_ids,
        ipv4_timeout_s=30,
        jobs=jobs,
    )


def host_id_spans() -> tuple[IdRange, ...]:
    """Where LXD may place ID blocks on this host: root's ranges, as `ssp apply` reads them
    (on an xdist worker, its own slice of them: workers.py)."""
    return id_share(subids.id_spans(subidfiles.read(subids.SUBUID), subidfiles.read(subids.SUBGID)))


def ssh(key: Key, port: int, login: str, *command: str) -> subprocess.CompletedProcess[str]:
    """One non-interactive login on 127.0.0.1:port with `key` (host key not checked)."""
    options = [
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=5",
        "-o", "LogLevel=ERROR",
        "-i", str(key.private),
    ]  # fmt: skip
    argv = ["ssh", *options, "-p", str(port), f"{login}@127.0.0.1", *command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def ssh_until_ok(
    key: Key, port: int, login: str, *command: str, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """ssh, retried while sshd is still starting; the last attempt whatever its outcome."""
    last: list[subprocess.CompletedProcess[str]] = []

    def attempt() -> bool:
        last[:] = [ssh(key, port, login, *command)]
        return last[0].returncode == 0

    eventually(attempt, timeout_s, every_s=1)
    return last[0]


def outcomes(done: Pass) -> dict[str, tuple[str, bool, str]]:
    return {o.name: (o.action, o.ok, o.message) for o in done.result.outcomes}
