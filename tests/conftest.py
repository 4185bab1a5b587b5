"""Shared pytest setup: the fast suite by default, the fake GitHub's fixtures, and no real
network for any test.

`pytest` with no path and no `-m` is the fast suite: tests marked `lxd` (a real LXD, the
cluster, the browser), `gpu` (real NVIDIA GPUs) or `slow` are left out, and the header says
so. Naming a folder or file (`pytest tests`, `pytest tests/integration`) or a marker
(`pytest -m lxd`) runs what was named, in one process, unless `-n` is given too: then on
pytest-xdist's workers, each with its own ports and host ID blocks (tests/workers.py says how
they share the one daemon). `make test` runs everything: the fast suite on two workers, then
the rest on four. The choice is made once in the controlling process and handed to the
workers through the environment.

Every test runs with a network blocker (autouse): a socket may connect to a unix socket (the
LXD daemon) or to a loopback address (the fake GitHub, a port the test listens on); anything
else fails the test, even when the code under test catches the error and carries on. Tests
marked `lxd` may also reach private addresses, where the LXD bridge puts containers. Names
other than `localhost` are not looked up at all (a lookup is itself a network request).
Processes a test starts (git, ssh, the `ssp` command) are not covered: their sockets are not
this interpreter's.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from workers import GROUPS, ChainScheduling, daemon_turn, group_items, lock_file

pytest_plugins = ["fakegithub.fixtures"]

# Markers of what the fast suite leaves out, and why (the header prints them).
NOT_FAST = {"lxd": "real LXD", "gpu": "real GPUs", "slow": "slow"}
_SUITE = "SSP_TEST_SUITE"


def _fast(config: pytest.Config) -> bool:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller decided
        return os.environ.get(_SUITE) == "fast"
    given = config.args_source is not pytest.Config.ArgsSource.TESTPATHS
    return not given and not config.option.markexpr and not config.option.keyword


def _workers_asked(config: pytest.Config) -> bool:
    """Whether the command line itself (not addopts) asks for xdist workers."""
    args = config.invocation_params.args
    return any(
        a in ("-n", "--numprocesses") or a.startswith(("-n", "--numprocesses=")) for a in args
    )


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    fast = _fast(config)
    os.environ[_SUITE] = "fast" if fast else "named"
    if fast:
        return
    if _workers_asked(config) and config.option.numprocesses:
        # Real-LXD tests on workers (tests/workers.py). The run's id, chosen here rather than
        # by pytest-xdist, names its lock files, which the controller removes at the end.
        config.option.testrunuid = config.option.testrunuid or uuid.uuid4().hex
    else:
        # What was named may hold real-LXD tests, which share one daemon, its ports and ID
        # ranges: without -n on the command line, one process runs them.
        config.option.dist, config.option.tx = "no", []


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The real half's scheduler (tests/workers.py); the fast suite keeps xdist's own."""
    return None if _fast(config) else ChainScheduling(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and getattr(config.option, "testrunuid", None):
        for name in ("daemon", "gate", *GROUPS):
            lock_file(config.option.testrunuid, name).unlink(missing_ok=True)


def pytest_report_header(config: pytest.Config) -> str:
    if _fast(config):
        left = ", ".join(f"{m} ({why})" for m, why in NOT_FAST.items())
        return f"fast suite: leaves out tests marked {left}; `make test` runs them too"
    if config.option.dist != "no":
        return "suite: what was named (nothing left out by marker), on workers (tests/workers.py)"
    return "suite: what was named (nothing left out by marker), in one process"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _fast(config):
        group_items(items)
        return
    keep, out = [], []
    for item in items:
        (out if any(item.get_closest_marker(m) for m in NOT_FAST) else keep).append(item)
    if out:
        config.hook.pytest_deselected(items=out)
        items[:] = keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # The whole protocol: a module's fixtures are made in its first test's setup.
    if _fast(item.config):
        return (yield)
    with daemon_turn(item.config, item):
        return (yield)


LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", ""})


class NetworkBlockedError(ConnectionRefusedError):
    """A test tried to reach the network; also recorded, so catching it does not hide it."""


def _address(host: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = host.decode() if isinstance(host, bytes) else str(host)
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _allowed(host: object, private_too: bool) -> bool:
    if str(host).casefold() in LOCAL_NAMES:
        return True
    address = _address(host)
    if address is None:
        return False  # a name: looking it up would already reach a DNS server
    return address.is_loopback or (private_too and (address.is_private or address.is_link_local))


def _blocker(private_too: bool, attempts: list[str]) -> Callable[..., Any]:
    def refuse(what: str) -> NetworkBlockedError:
        attempts.append(what)
        return NetworkBlockedError(f"tests may not reach the network: {what}")

    def check_connect(real: Callable[..., Any]) -> Callable[..., Any]:
        def connect(self: socket.socket, address: Any, *args: Any) -> Any:
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _allowed(
                address[0], private_too
            ):
                raise refuse(f"connect to {address!r}")
            return real(self, address, *args)

        return connect

    def check_lookup(real: Callable[..., Any]) -> Callable[..., Any]:
        def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
            # An address needs no lookup; connect() judges it.
            if host is not None and _address(host) is None and not _allowed(host, private_too):
                raise refuse(f"name lookup of {host!r}")
            return real(host, *args, **kwargs)

        return lookup

    return lambda kind, real: check_connect(real) if kind == "connect" else check_lookup(real)


@pytest.fixture(autouse=True)
def no_network(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[str]]:
    """Fail the test that tries to connect outside loopback and unix sockets. Yields what was
    refused, so the blocker's own test can look (and clear it)."""
    attempts: list[str] = []
    wrap = _blocker(request.node.get_closest_marker("lxd") is not None, attempts)
    for method in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, method, wrap("connect", getattr(socket.socket, method)))
    for function in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, function, wrap("lookup", getattr(socket, function)))
    yield attempts
    if attempts:
        pytest.fail(f"the test tried to reach the network: {'; '.join(attempts)}")
