"""SSH logins that `ssp apply` hands out, tried for real: a container of one's own (through
the CLI, as the runner calls it) and an account on a shared server.

Both use Debian clones of `Common-Server/golden` (sshd inside) in the test's own LXD project,
forwarded ports on 127.0.0.1, and the request's own key pair. sshd needs a few seconds after
the container starts, so the first login is retried for a while.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.helpers import (
    NOW,
    Adapters,
    LabRepo,
    apply_pass,
    eventually,
    in_instance,
    lxc,
    lxc_query,
    outcomes,
    ssh,
    ssh_until_ok,
)
from provisioner import cli, commands
from provisioner.commands import apply as apply_command
from provisioner.flows import tunnel as tunnel_flow
from provisioner.lxd.api import Lxd
from provisioner.reporting import mergecomment
from provisioner.values.policymodels import Policy
from provisioner.values.state import LxdApi

pytestmark = pytest.mark.lxd

GOLDEN = "Common-Server/golden"
SSH_COMMAND = re.compile(r"ssh -p (\d+) ([a-z0-9-]+)@127\.0\.0\.1")
# The lab's frp server as the policy describes it (no frps runs here: the file frpc would
# read is checked, and the off-LAN command's port).
TUNNEL = {"kind": "frp", "server": "frp.lab.example", "remote_offset": 10000}


def ssp_tunnel(lab: LabRepo, socket: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """`ssp tunnel --format frpc` on the lab, parsed as frpc would (TOML)."""
    env = {"SSP_NOW": NOW.isoformat(), "LXD_DIR": str(Path(socket).parent)}
    code = cli.main(["tunnel", "--repo", str(lab.root), "--format", "frpc"], env=env)
    out = capsys.readouterr().out
    assert code == 0, out
    return tomllib.loads(out)


def proxies(frpc: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(p["name"], p["localPort"], p["remotePort"]) for p in frpc.get("proxies", [])]


# --- a container, through the CLI --------------------------------------------------------------


@pytest.fixture
def adapters_made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Lxd]]:
    """Every real adapter `ssp apply` builds, so a test can count the requests it sent."""
    made: list[Lxd] = []
    real = commands.connect

    def connect(policy: Policy, env: dict[str, str]) -> tuple[LxdApi, object]:
        main, servers = real(policy, env)
        assert isinstance(main, Lxd)
        made.append(main)

        def server(instance: str) -> LxdApi:
            api = servers(instance)
            assert isinstance(api, Lxd)
            made.append(api)
            return api

        return main, server

    monkeypatch.setattr(apply_command, "connect", connect)
    yield made


def ssp_apply(
    lab: LabRepo, socket: str, capsys: pytest.CaptureFixture[str], *options: str
) -> tuple[int, str]:
    env = {
        "SSP_NOW": NOW.isoformat(),
        "SSP_LOCK": str(lab.root / "apply.lock"),
        "SSP_GPU_CHECK": "off",
        "LXD_DIR": str(Path(socket).parent),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    code = cli.main(["apply", "--repo", str(lab.root), "--no-comment", *options], env=env)
    return code, capsys.readouterr().out


def test_ssp_apply_prints_an_ssh_command_that_logs_the_owner_in(
    tmp_path: Path,
    lxd_project: str,
    lxd_socket: str,
    suffix: str,
    adapters_made: list[Lxd],
    capsys: pytest.CaptureFixture[str],
) -> None:
    lab = LabRepo.make(tmp_path, lxd_project, suffix)
    lab.tunnel = TUNNEL
    name = f"alice-s-{suffix}"
    lab.write(lab.container(name))

    # A dry run says what it would do and changes nothing.
    code, out = ssp_apply(lab, lxd_socket, capsys, "--dry-run")
    assert (code, out.split()[:2]) == (0, ["would", "create"]), out
    assert name in out
    assert [m for api in adapters_made for m in api.mutations] == []
    assert lxc_query("/1.0/instances", lxd_project) == []

    code, out = ssp_apply(lab, lxd_socket, capsys)
    assert code == 0, out
    (line,) = [line for line in out.splitlines() if name in line]
    assert line.startswith("created")
    found = SSH_COMMAND.search(line)
    assert found, line
    port, login = int(found.group(1)), found.group(2)
    assert login == "alice" and lab.ports[0] <= port <= lab.ports[1]

    # The printed command, with the request's private key, logs alice in; sudo works.
    key = lab.keys["alice"]
    done = ssh_until_ok(key, port, login, "id -un; sudo -n id -u")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["alice", "0"]
    # The host key sshd presents is the one ssp gave this container.
    scanned = lxc(
        "exec", "--project", lxd_project, name, "--", "cat", "/etc/ssh/ssh_host_ed25519_key.pub"
    )
    offered = ssh(key, port, login, "cat /etc/ssh/ssh_host_ed25519_key.pub")
    assert offered.stdout == scanned.stdout
    # Another key is refused.
    refused = ssh(lab.keys["bob"], port, login, "true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr

    # The desktop's password, set as the comment says (the account has none, so plain
    # `passwd` cannot be used): afterwards PAM, which xrdp asks, has a usable password.
    plain = ssh(key, port, login, "printf 'x\\nDesk-top-42\\nDesk-top-42\\n' | passwd")
    assert plain.returncode != 0
    told = ssh(key, port, login, f"printf 'Desk-top-42\\nDesk-top-42\\n' | sudo passwd {login}")
    assert told.returncode == 0, told.stderr
    status = ssh(key, port, login, f"sudo passwd --status {login}")
    assert status.stdout.split()[:2] == [login, "P"], status.stdout

    # The tunnel's client config names the container's forwarded port, and only it.
    assert proxies(ssp_tunnel(lab, lxd_socket, capsys)) == [
        (f"{lab.project}-{name}-ssh", port, port + 10000)
    ]

    # Applied again: exit 0, unchanged, still the same command, and no mutating request.
    adapters_made.clear()
    code, again = ssp_apply(lab, lxd_socket, capsys)
    assert code == 0, again
    (line,) = [line for line in again.splitlines() if name in line]
    assert line.startswith("unchanged") and f"ssh -p {port} alice@127.0.0.1" in line
    assert adapters_made and [m for api in adapters_made for m in api.mutations] == []
    code, report = ssp_apply(lab, lxd_socket, capsys, "--dry-run", "--format", "json")
    doc = json.loads(report)
    assert (code, doc["ok"], doc["dry_run"]) == (0, True, True)
    assert [(o["name"], o["action"], o["ssh_command"]) for o in doc["outcomes"]] == [
        (name, "unchanged", f"ssh -p {port} alice@127.0.0.1")
    ]
    assert [m for api in adapters_made for m in api.mutations] == []


# --- an account on a shared server ------------------------------------------------------------


def make_shared_server(lab: LabRepo) -> None:
    """A Debian instance in the test project playing Common-Server, SSH forwarded, running."""
    name, project = lab.shared_server, lab.project
    lxc("copy", GOLDEN, name, "--project", "default", "--target-project", project)
    lxc("config", "set", "--project", project, name, "user.lab.note=the lab's own server")
    lxc(
        "config", "device", "add", "--project", project, name, "ssh", "proxy",
        f"listen=tcp:127.0.0.1:{lab.shared_ssh_port}", "connect=tcp:127.0.0.1:22",
    )  # fmt: skip
    lxc(
        "query",
        "-X",
        "PATCH",
        f"/1.0/instances/{name}?project={project}",
        "--data",
        json.dumps({"description": "Common-Server (test stand-in)"}),
    )
    lxc("start", "--project", project, name)


def comment_ssh_config(body: str, key: Path) -> str:
    """The ~/.ssh/config snippet of a comment, with the member's key path filled in."""
    snippet = body.split("```\n", 2)[1]
    return snippet.replace("~/.ssh/id_ed25519", str(key))


def ssh_alias(config: Path, alias: str, *command: str) -> subprocess.CompletedProcess[str]:
    """`ssh ALIAS` with CONFIG as ~/.ssh/config (host key not checked, no prompts)."""
    options = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    options += ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]
    argv = ["ssh", "-F", str(config), *options, alias, *command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_an_account_logs_in_on_the_shared_server_and_is_locked_when_removed(
    tmp_path: Path,
    lxd_project: str,
    lxd_socket: str,
    suffix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lab = LabRepo.make(tmp_path, lxd_project, suffix, shared_ssh=True)
    lab.tunnel = TUNNEL
    make_shared_server(lab)
    adapters = Adapters.make(lxd_project, lxd_socket)
    server, login, port = lab.shared_server, "bob-nb", lab.shared_ssh_port
    assert port is not None
    req = lab.account(login)

    first = apply_pass(lab, adapters, req)

    (o,) = first.result.outcomes
    assert (o.kind, o.action, o.ok, o.login, o.server, o.ssh_port) == (
        "account",
        "created",
        True,
        login,
        "common",
        port,
    )
    home = f"/home/{login}"
    keys = in_instance(lxd_project, server, "cat", f"{home}/.ssh/authorized_keys").stdout
    assert keys == lab.keys["bob"].public + "\n"
    done = ssh_until_ok(lab.keys["bob"], port, login, "id -un; touch ~/work")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == login

    # The PR comment sends the member to the server's forwarded port, not its own address;
    # from outside, to the frp server's matching port. Its ~/.ssh/config block, saved with
    # the key's path filled in, logs in with `ssh bob-nb`.
    applied = first.validation.config
    assert applied is not None
    ctx = mergecomment.Context(applied.policy, "0" * 40)
    # Nothing says the tunnel carries the port (no frpc admin API here): no off-LAN command.
    unknown = mergecomment.draft(ctx, first.result.outcomes)
    assert unknown is not None and "frp.lab.example" not in unknown.body
    # Once frpc reports the proxy running (flows/tunnel.py, after the apply), it is offered.
    said = mergecomment.draft(ctx, tunnel_flow.carried(first.result, frozenset({port})).outcomes)
    assert said is not None and said.template == "account"
    assert f"`ssh -p {port} {login}@127.0.0.1`" in said.body
    assert f"`ssh -p {port + 10000} {login}@frp.lab.example`" in said.body
    assert not any(ip in said.body for ip in o.ipv4)
    config = tmp_path / "ssh_config"
    config.write_text(comment_ssh_config(said.body, lab.keys["bob"].private))
    by_alias = ssh_alias(config, login, "id -un")
    assert (by_alias.returncode, by_alias.stdout.strip()) == (0, login), by_alias.stderr
    # The tunnel's client config names the shared server's port.
    assert proxies(ssp_tunnel(lab, lxd_socket, capsys)) == [
        (f"{lab.project}-{server.lower()}-ssh", port, port + 10000)
    ]
    # The shared server is not ours: its own description and settings are left as they were.
    info = lxc_query(f"/1.0/instances/{server}", lxd_project)
    assert info["description"] == "Common-Server (test stand-in)"
    assert info["config"]["user.lab.note"] == "the lab's own server"
    assert "user.ssp.managed" not in info["config"]

    # Nothing to do the second time, on the project's adapter or the shared server's.
    mutations = len(adapters.mutations())
    second = apply_pass(lab, adapters, req)
    assert adapters.mutations()[mutations:] == []
    assert second.plan.changes == ()

    # A user made on the server by hand (or by a package) is never taken over, even when a
    # request's name is the member's own: refused, left as it was, nothing recorded.
    in_instance(lxd_project, server, "useradd", "--create-home", "carol-old")
    taken = apply_pass(lab, adapters, req, lab.account("carol-old", owner="carol"))
    assert outcomes(taken)["carol-old"][:2] == ("refused", False)
    assert "a user named 'carol-old' already exists" in outcomes(taken)["carol-old"][2]
    assert outcomes(taken)[login][:2] == ("unchanged", True)
    assert (
        in_instance(
            lxd_project, server, "test", "-e", "/home/carol-old/.ssh", check=False
        ).returncode
        != 0
    )
    info = lxc_query(f"/1.0/instances/{server}", lxd_project)
    assert "user.ssp.account.carol-old" not in info["config"]

    # The request removed: the login is locked and expired, its keys gone, its home kept.
    third = apply_pass(lab, adapters)
    assert outcomes(third) == {login: ("locked", True, "login locked; the home directory is kept")}
    status = in_instance(lxd_project, server, "passwd", "--status", login).stdout.split()
    assert status[1] == "L"
    shadow = in_instance(lxd_project, server, "getent", "shadow", login).stdout.split(":")
    assert shadow[7] == "1"  # expired on 2 January 1970
    assert (
        in_instance(lxd_project, server, "test", "-f", f"{home}/work", check=False).returncode == 0
    )
    refused = ssh(lab.keys["bob"], port, login, "true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr

    mutations = len(adapters.mutations())
    fourth = apply_pass(lab, adapters)
    assert adapters.mutations()[mutations:] == []
    assert fourth.result.outcomes == ()


# --- the remote desktop ----------------------------------------------------------------------

# An X.224 Connection Request (TPKT, then RDP negotiation asking for TLS or CredSSP): what an
# RDP client sends first. xrdp answers with a Connection Confirm (TPKT, code 0xd0).
RDP_CONNECTION_REQUEST = bytes.fromhex("030000130ee000000000000100080003000000")


def rdp_answers(port: int) -> bool:
    """xrdp on 127.0.0.1:PORT confirms an RDP connection request."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(RDP_CONNECTION_REQUEST)
            reply = conn.recv(64)
    except OSError:
        return False
    return len(reply) >= 6 and reply[0] == 0x03 and reply[5] == 0xD0


@pytest.mark.slow
def test_the_desktop_answers_on_its_port_and_takes_the_password_set_as_the_comment_says(
    tmp_path: Path,
    lxd_project: str,
    lxd_socket: str,
    suffix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`desktop: true` installs xrdp and xfce with apt inside the container: this needs the
    container to reach a Debian mirror, and is skipped (saying so) where it cannot."""
    lab = LabRepo.make(tmp_path, lxd_project, suffix)
    lab.tunnel = TUNNEL
    name, login = f"alice-d-{suffix}", "alice"
    adapters = Adapters.make(lxd_project, lxd_socket)
    done = apply_pass(lab, adapters, lab.container(name, desktop=True))
    (o,) = done.result.outcomes
    if not o.ok and "apt" in o.message:
        pytest.skip(f"no Debian mirror reachable from the container: {o.message[:200]}")
    assert (o.action, o.ok) == ("created", True), o.message
    assert o.rdp_port is not None and o.ssh_port is not None
    applied = done.validation.config
    assert applied is not None
    carried = tunnel_flow.carried(done.result, frozenset({o.rdp_port}))  # frpc: running
    said = mergecomment.draft(mergecomment.Context(applied.policy, "0" * 40), carried.outcomes)
    assert said is not None
    assert f"`127.0.0.1:{o.rdp_port}`, from outside the lab `frp.lab.example:" in said.body
    assert f"`sudo passwd {login}`" in said.body

    # xrdp answers an RDP client on the forwarded port.
    rdp_port, ssh_port = o.rdp_port, o.ssh_port
    assert eventually(lambda: rdp_answers(rdp_port), 60, every_s=1)

    # xrdp checks passwords through PAM (service xrdp-sesman): none works until the member
    # sets one over SSH as the comment says; then that one does, and only that one.
    key = lab.keys["alice"]
    got = in_instance(lxd_project, name, "apt-get", "install", "-y", "-q", "pamtester", check=False)
    if got.returncode != 0:
        pytest.skip("pamtester could not be installed in the container")

    def pam(password: str) -> int:
        argv = [
            "sh",
            "-c",
            f"printf '%s\\n' '{password}' | pamtester xrdp-sesman {login} authenticate",
        ]
        return in_instance(lxd_project, name, *argv, check=False).returncode

    assert pam("") != 0
    told = ssh_until_ok(
        key, ssh_port, login, f"printf 'Desk-42x\\nDesk-42x\\n' | sudo passwd {login}"
    )
    assert told.returncode == 0, told.stderr
    assert pam("Desk-42x") == 0
    assert pam("wrong-one") != 0
    # The tunnel's client config carries the desktop's port next to SSH's.
    assert proxies(ssp_tunnel(lab, lxd_socket, capsys)) == [
        (f"{lab.project}-{name}-ssh", ssh_port, ssh_port + 10000),
        (f"{lab.project}-{name}-rdp", rdp_port, rdp_port + 10000),
    ]
