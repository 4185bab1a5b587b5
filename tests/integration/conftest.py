"""LXD fixtures: a daemon that answers, a throwaway LXD project per test, unique names.

Each test gets its own project (`ssp-t-<random>`) that shares the default project's images
(`features.images=false`) and has its own `default` profile, copied from the default project's
(root disk on pool `default`, `eth0` on `lxdbr0`). Cleanup is registered before the test runs
and removes every instance (protected ones included), then the project, even when the test
fails. Instance names carry the same random suffix: projects on one bridge share its DNS
names, so two tests must never both start a container called the same. On pytest-xdist's
workers (`make test`) each worker also has its own forwarded ports and host ID blocks, and
`ssp` commands run in-process choose blocks there too (tests/workers.py).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pylxd import Client
from pylxd import exceptions as pylxd_errors

from integration.helpers import Adapters, LabRepo, host_id_spans
from provisioner import commands
from provisioner.lxd.api import Lxd
from provisioner.lxd.wire import socket_path
from provisioner.values.errors import LxdError


def _wait(client: Any, response: Any) -> None:
    body = response.json()
    if body.get("type") == "async":
        op = body["operation"].rsplit("/", 1)[-1]
        meta = client.api.operations[op].wait.get(params={"timeout": 120}).json()["metadata"]
        if meta["status_code"] != 200:
            raise RuntimeError(f"LXD operation failed: {meta.get('err')}")


@pytest.fixture(autouse=True)
def worker_id_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ssp` commands run in-process choose host ID blocks where this test's passes do: in
    this xdist worker's own slice of root's IDs (all of them in one process; workers.py)."""
    monkeypatch.setattr(commands, "host_id_spans", host_id_spans)


@pytest.fixture(scope="session")
def lxd_socket() -> str:
    """The socket of a daemon that answers; every test that needs one skips otherwise."""
    path = socket_path(lxd_dir=os.environ.get("LXD_DIR"))
    try:
        Lxd("default", endpoint=path).instances()
    except LxdError as e:
        pytest.skip(f"{e}; start one with: bash runner/dev-lxd.sh up")
    return path


def purge_instances(socket: str, project: str) -> list[str]:
    """Delete every instance of `project` (unprotected, stopped first); what failed."""
    client = Client(endpoint=socket, project=project)
    failures = []
    for inst in client.api.instances.get(params={"recursion": 1}).json()["metadata"]:
        node = client.api.instances[inst["name"]]
        try:
            node.patch(json={"config": {"security.protection.delete": "false"}})
            if inst["status"] != "Stopped":
                _wait(client, node.state.put(json={"action": "stop", "force": True}))
            _wait(client, node.delete())
        except (pylxd_errors.LXDAPIException, RuntimeError) as e:
            failures.append(f"{inst['name']}: {e}")
    return failures


def purge_project(socket: str, project: str) -> None:
    """Delete every instance of `project` (unprotected, stopped first), then the project."""
    failures = purge_instances(socket, project)
    client = Client(endpoint=socket, project=project)
    # Profiles other than `default` must go before the project; `default` goes with it.
    for url in client.api.profiles.get().json()["metadata"]:
        name = url.rsplit("/", 1)[-1].split("?")[0]
        if name != "default":
            client.api.profiles[name].delete()
    try:
        Client(endpoint=socket).api.projects[project].delete()
    except pylxd_errors.LXDAPIException as e:
        failures.append(f"project: {e}")
    assert not failures, f"cleanup of LXD project {project} failed: {failures}"


@contextmanager
def throwaway_project(socket: str, prefix: str = "ssp-t") -> Iterator[str]:
    """A new LXD project with its own default profile, purged (and deleted) at the end."""
    project = f"{prefix}-{secrets.token_hex(4)}"
    admin = Client(endpoint=socket)
    admin.api.projects.post(
        json={
            "name": project,
            "description": "ssp test or benchmark (safe to delete)",
            "config": {"features.images": "false", "features.profiles": "true"},
        }
    )
    try:
        default = admin.api.profiles["default"].get().json()["metadata"]
        Client(endpoint=socket, project=project).api.profiles["default"].put(
            json={
                "description": "copy of the default project's",
                "config": {},
                "devices": default["devices"],
            }
        )
        yield project
    finally:
        purge_project(socket, project)


@pytest.fixture
def lxd_project(lxd_socket: str) -> Iterator[str]:
    """A fresh LXD project with its own default profile, removed after the test."""
    with throwaway_project(lxd_socket) as project:
        yield project


@pytest.fixture
def lxd(lxd_project: str, lxd_socket: str) -> Lxd:
    """The adapter under test, on the test's own project."""
    return Lxd(lxd_project, endpoint=lxd_socket)


@pytest.fixture
def suffix(lxd_project: str) -> str:
    """The project's random part: instance names carry it (bridges share DNS names)."""
    return lxd_project.rsplit("-", 1)[-1]


@pytest.fixture
def lab(tmp_path: Path, lxd_project: str, suffix: str) -> LabRepo:
    """A lab checkout whose policy points at the test's project."""
    return LabRepo.make(tmp_path, lxd_project, suffix)


@pytest.fixture
def adapters(lxd_project: str, lxd_socket: str) -> Adapters:
    """The adapters a pass uses, as `ssp apply` makes them."""
    return Adapters.make(lxd_project, lxd_socket)


@pytest.fixture
def unique(lxd_project: str) -> Callable[[str], str]:
    """unique("bb") -> "bb-1a2b3c4d": a valid instance name no other test uses."""
    suffix = lxd_project.rsplit("-", 1)[-1]
    return lambda role: f"{role}-{suffix}"
