"""The autouse network blocker of tests/conftest.py is on in every test: a connection outside
loopback fails (even when the code under test swallows the error), a name is not looked up,
and loopback and unix sockets, which the fake GitHub and LXD use, still work."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests
from conftest import NetworkBlockedError


def test_a_connection_to_the_internet_is_refused_and_recorded(no_network: list[str]) -> None:
    with pytest.raises(NetworkBlockedError, match="tests may not reach the network"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)  # TEST-NET-1
    with socket.socket() as sock, pytest.raises(NetworkBlockedError):
        sock.connect_ex(("8.8.8.8", 53))
    assert no_network == ["connect to ('192.0.2.1', 443)", "connect to ('8.8.8.8', 53)"]
    no_network.clear()  # seen: the test itself is not to fail for them


def test_a_library_that_catches_the_error_does_not_hide_it(no_network: list[str]) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get("https://example.com/", timeout=1)
    assert no_network == ["name lookup of 'example.com'"]
    no_network.clear()


def test_loopback_and_unix_sockets_still_work(no_network: list[str], tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("localhost", port), timeout=5) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)  # the backlog takes it; no accept needed
            conn, _ = server.accept()
            conn.close()
    assert no_network == []
