"""The tunnel kept in step by each apply (flows/tunnel.py): frpc's file rewritten from the
forwarded ports, frpc reloaded through its admin API, and the off-LAN command offered only
for a port whose proxy frpc reports running.

Against tests/frpstandin.py (frpc's admin API and frps's listening side, as frp documents
them) on 127.0.0.1, with a real TCP service as a container's forwarded port: bytes sent to the
tunnel's remote port reach it. The real-LXD run with real OpenSSH is in
tests/integration/test_tunnel_real.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import socket
import socketserver
import threading
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakelxd import NOW, FakeLxd, Lab
from frpstandin import FrpStandin
from notifyservers import free_port
from test_comments import PCI, alice, body, commit, ctx, sample_policy, skip_without_tools

from provisioner.cli import main
from provisioner.commands import apply as apply_command
from provisioner.commands import maintain as maintain_command
from provisioner.flows import tunnel as tunnel_flow
from provisioner.planning import tunnel
from provisioner.validation.config import load_config
from provisioner.values.errors import TunnelError
from provisioner.values.outcomes import ApplyResult
from provisioner.values.policymodels import Policy, Tunnel
from provisioner.values.state import Instance, LxdApi

PASSWORD = "frpc-admin-pw-not-in-the-repo"
OFFSET = 1000


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"SSH-2.0-standin\r\n" + self.request.recv(100))


@pytest.fixture
def service() -> Iterator[int]:
    """A TCP service on 127.0.0.1 (a container's forwarded SSH port): greets, echoes a line."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def policy(tmp_path: Path, admin_port: int) -> Policy:
    seed = sample_policy(listen="127.0.0.1", host="127.0.0.1")
    t = Tunnel(
        kind="frp",
        server="127.0.0.1",
        remote_offset=OFFSET,
        admin_port=admin_port,
        config_file=str(tmp_path / "frpc.toml"),
    )
    return seed.model_copy(update={"tunnel": t, "shared_servers": {}})


def container(name: str, port: int, **config: str) -> Instance:
    devices = {"ssh": {"type": "proxy", "listen": f"tcp:127.0.0.1:{port}"}}
    return Instance(name, "Running", {"user.ssp.managed": "true", **config}, devices)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Policy, FrpStandin]]:
    """The policy, and frpc started on the file the admin wrote once with `ssp tunnel`."""
    pol = policy(tmp_path, free_port())
    assert pol.tunnel is not None
    Path(pol.tunnel.config_file).write_text(tunnel.frpc_toml(pol, ()))
    env = {"FRP_AUTH_TOKEN": "t", "FRPC_ADMIN_PASSWORD": PASSWORD}
    frpc = FrpStandin(Path(pol.tunnel.config_file), env).start()
    yield pol, frpc
    frpc.stop()


def through(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"hello\n")
        s.shutdown(socket.SHUT_WR)
        return s.recv(100)


def test_a_new_port_works_through_the_tunnel_right_after_the_sync_and_the_comment_says_so(
    lab: tuple[Policy, FrpStandin], service: int
) -> None:
    pol, frpc = lab
    assert frpc.running() == {}
    admin = tunnel_flow.admin_for(pol, PASSWORD)
    assert admin is not None
    done = tunnel_flow.sync(pol, [container("alice-thesis", service)], admin)
    assert (done.ok, done.changed, done.reloaded, done.ports) == (True, True, True, {service})
    assert frpc.reloads == 1
    assert frpc.running() == {f"{pol.lxd.project}-alice-thesis-ssh": service + OFFSET}
    # The remote port reaches the container's port now, with no admin at the host.
    assert through(service + OFFSET) == b"SSH-2.0-standin\r\nhello\n"
    # The comment offers the off-LAN command because frpc said the proxy runs.
    result = tunnel_flow.carried(ApplyResult(outcomes=(alice(ssh_port=service),)), done.ports)
    made = body(ctx(pol), *result.outcomes)
    assert f"**SSH from outside the lab:** `ssh -p {service + OFFSET} alice@127.0.0.1`" in (
        made.body
    )


def test_a_retired_container_leaves_the_tunnel_on_the_next_apply(
    lab: tuple[Policy, FrpStandin], service: int
) -> None:
    pol, frpc = lab
    admin = tunnel_flow.admin_for(pol, PASSWORD)
    assert admin is not None
    tunnel_flow.sync(pol, [container("alice-thesis", service)], admin)
    assert through(service + OFFSET)
    retired = container("alice-thesis", service, **{"user.ssp.retired": "2026-11-01"})
    done = tunnel_flow.sync(pol, [retired], admin)
    assert (done.ok, done.proxies, done.ports) == (True, 0, frozenset())
    assert frpc.running() == {}
    with pytest.raises(OSError):
        through(service + OFFSET)
    # Nothing changed since: the file is left as it is, frpc is still reloaded (cheap, and
    # puts a restarted frpc in step).
    again = tunnel_flow.sync(pol, [retired], admin)
    assert (again.changed, again.reloaded, frpc.reloads) == (False, True, 3)


def test_a_port_frps_refuses_gets_no_off_lan_command_and_is_reported(
    lab: tuple[Policy, FrpStandin], service: int
) -> None:
    pol, frpc = lab
    frpc.allow_ports = lambda port: port != service + OFFSET  # frps's allowPorts
    admin = tunnel_flow.admin_for(pol, PASSWORD)
    assert admin is not None
    done = tunnel_flow.sync(pol, [container("alice-thesis", service)], admin, wait_s=5)
    assert done.ports == frozenset() and not done.ok
    name = f"{pol.lxd.project}-alice-thesis-ssh"
    assert done.not_running == (f"{name}: start error",)
    assert "0 of 1 proxies running" in done.summary() and name in done.summary()
    result = tunnel_flow.carried(ApplyResult(outcomes=(alice(ssh_port=service),)), done.ports)
    assert "outside the lab" not in body(ctx(pol), *result.outcomes).body


def test_a_wrong_password_or_a_stopped_frpc_is_an_error_that_names_no_secret(
    lab: tuple[Policy, FrpStandin], service: int
) -> None:
    pol, frpc = lab
    wrong = tunnel_flow.admin_for(pol, "not-the-password")
    assert wrong is not None
    done = tunnel_flow.sync(pol, [container("alice-thesis", service)], wrong)
    assert done.ports == frozenset() and not done.reloaded
    assert "HTTP 401: the admin user or password is wrong" in done.error
    assert "not-the-password" not in done.summary() and PASSWORD not in done.summary()
    assert frpc.reloads == 0
    # The file was written all the same: the next reload (or a restart) picks it up.
    assert "alice-thesis" in Path(str(frpc.config)).read_text()

    frpc.stop()
    admin = tunnel_flow.admin_for(pol, PASSWORD)
    assert admin is not None
    down = tunnel_flow.sync(pol, [container("alice-thesis", service)], admin)
    assert down.ports == frozenset() and "cannot reach frpc's admin API" in down.error


def test_a_dry_run_reads_the_status_and_changes_nothing(
    lab: tuple[Policy, FrpStandin], service: int
) -> None:
    pol, frpc = lab
    admin = tunnel_flow.admin_for(pol, PASSWORD)
    assert admin is not None
    assert pol.tunnel is not None
    before = Path(pol.tunnel.config_file).read_text()
    done = tunnel_flow.sync(pol, [container("alice-thesis", service)], admin, dry_run=True)
    assert (done.changed, done.reloaded, frpc.reloads) == (False, False, 0)
    assert Path(pol.tunnel.config_file).read_text() == before


def test_the_file_opens_the_admin_api_on_loopback_with_the_password_as_a_template(
    tmp_path: Path,
) -> None:
    pol = policy(tmp_path, 7400)
    doc = tomllib.loads(tunnel.frpc_toml(pol, ()))
    assert doc["webServer"] == {
        "addr": "127.0.0.1",
        "port": 7400,
        "user": "ssp",
        "password": "{{ .Envs.FRPC_ADMIN_PASSWORD }}",
    }
    # No admin API in the policy: none in the file, and no sync.
    plain = pol.model_copy(update={"tunnel": Tunnel(kind="frp", server="127.0.0.1")})
    assert "webServer" not in tomllib.loads(tunnel.frpc_toml(plain, ()))
    assert tunnel_flow.admin_for(plain, PASSWORD) is None


def test_ssp_reads_the_admin_password_from_the_policys_private_file(
    lab: tuple[Policy, FrpStandin], service: int, tmp_path: Path
) -> None:
    pol, _frpc = lab
    assert pol.tunnel is not None
    secret = tmp_path / "frpc-admin-password"
    t = pol.tunnel.model_copy(update={"admin_password_file": str(secret)})
    pol = pol.model_copy(update={"tunnel": t})
    # Unreadable: an error that names the file, and no off-LAN command.
    result = ApplyResult(outcomes=(alice(ssh_port=service),))
    with pytest.raises(TunnelError, match=r"cannot read .*frpc-admin-password: FileNotFoundError"):
        tunnel_flow.admin_for(pol, None)
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    admin = tunnel_flow.admin_for(pol, None)
    assert admin is not None
    done = tunnel_flow.sync(pol, [container("alice-thesis", service)], admin)
    assert (done.ok, done.ports) == (True, {service})
    assert tunnel_flow.carried(result, done.ports).outcomes[0].tunnel_ports == {service}


# --- the commands: `ssp apply` and `ssp maintain` keep the tunnel in step --------------------


def ssp(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv, env)
    return code, out.getvalue(), err.getvalue()


@skip_without_tools
def test_ssp_apply_offers_the_off_lan_command_and_ssp_maintain_takes_an_ended_lease_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lxd = FakeLxd.seeded(present_gpus=PCI)

    def connect(_policy: object, _env: Mapping[str, str]) -> tuple[LxdApi, object]:
        return lxd, lxd.servers

    monkeypatch.setattr(apply_command, "connect", connect)
    monkeypatch.setattr(maintain_command, "connect", connect)
    # host port 22001 is 22001 + remote on the "frps", which really listens there: an offset
    # whose first ports are free now (another test on this machine may hold 52000 itself)
    admin_port, remote = free_port(), _free_offset(22000, 8)
    config_file = tmp_path / "frpc.toml"
    tunnel_yaml = (
        f"tunnel:\n  kind: frp\n  server: 127.0.0.1\n  remote_offset: {remote}\n"
        f"  admin_port: {admin_port}\n  config_file: {config_file}\n"
    )
    (tmp_path / "keys").mkdir()
    lab = Lab.make(tmp_path / "keys").edited("\nssh:\n", f"\n{tunnel_yaml}ssh:\n")
    repo = tmp_path / "repo"
    commit(lab, repo, lab.container("alice-thesis"))
    assert pol_file_has_no_secret(repo)
    env = {
        "SSP_NOW": NOW.isoformat(),
        "SSP_LOCK": str(tmp_path / "lock"),
        "SSP_GPU_CHECK": "off",
        "FRPC_ADMIN_PASSWORD": PASSWORD,
    }
    # the admin's first file, then frpc started on it
    config = load_config(
        (repo / "config" / "policy.yaml").read_bytes(),
        (repo / "config" / "hosts.yaml").read_bytes(),
    )[0]
    assert config is not None
    config_file.write_text(tunnel.frpc_toml(config.policy, ()))
    frpc = FrpStandin(config_file, {"FRPC_ADMIN_PASSWORD": PASSWORD}).start()
    try:
        code, out, err = ssp(["apply", "--repo", str(repo), "--format", "json"], env)
        assert code == 0, err
        (row,) = json.loads(out)["outcomes"]
        port = row["ssh_port"]
        assert row["ssh_command_public"] == f"ssh -p {port + remote} alice@127.0.0.1"
        # alice's container and the shared server's SSH (the seed's `ssh_port: 22000`)
        assert "ssp apply: tunnel: 2 of 2 proxies running, frpc reloaded with a new file" in err
        assert sorted(frpc.running().values()) == [22000 + remote, port + remote]

        # The lease ended: the daily run retires the container and takes it off the tunnel.
        later = dict(env, SSP_NOW=datetime(2027, 7, 2, 4, 0, tzinfo=UTC).isoformat())
        code, out, err = ssp(["maintain", "--repo", str(repo)], later)
        assert "ssp maintain: tunnel: 1 of 1 proxies running, frpc reloaded" in err, err
        assert list(frpc.running().values()) == [22000 + remote]
        assert "alice-thesis" not in config_file.read_text()
    finally:
        frpc.stop()


def pol_file_has_no_secret(repo: Path) -> bool:
    return PASSWORD not in (repo / "config" / "policy.yaml").read_text()


def test_a_proxy_frpc_does_not_list_after_the_reload_is_reported_not_running(
    lab: tuple[Policy, FrpStandin], service: int
) -> None:
    pol, frpc = lab
    admin = tunnel_flow.admin_for(pol, PASSWORD)
    assert admin is not None
    frpc.allow_ports = lambda _port: True
    # frpc took the reload but lists nothing (its proxies dropped, say): never "in step"
    admin.status = lambda: {}  # type: ignore[method-assign]
    done = tunnel_flow.sync(pol, [container("alice-thesis", service)], admin, wait_s=0.5)
    assert (done.reloaded, done.ok, done.ports) == (True, False, frozenset())
    assert done.not_running == (f"{pol.lxd.project}-alice-thesis-ssh: not started",)


def _free_offset(first: int, count: int) -> int:
    """An offset under which ports FIRST .. FIRST+COUNT-1 are all free on 127.0.0.1 now."""
    for offset in random.Random().sample(range(20000, 38000, 10), 200):
        try:
            with contextlib.ExitStack() as held:
                for port in range(first + offset, first + offset + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return offset
        except OSError:
            continue
    raise AssertionError("no free run of ports for the frps stand-in")
