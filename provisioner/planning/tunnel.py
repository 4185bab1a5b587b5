"""The tunnel client's configuration for the GPU host: frp's `frpc.toml`, one TCP proxy per
forwarded port (each container's SSH and remote desktop, each shared server's SSH).

Pure: the policy and the observed instances in, TOML text out. The ports come from the
proxy devices LXD holds (what really listens), not from the requests, so the file matches the
host after any apply. With the policy's `tunnel.admin_port` the file also opens frpc's admin
API on 127.0.0.1, and every apply rewrites it and reloads frpc (flows/tunnel.py); which ports
the tunnel then carries is read from frpc's own proxy status (`running_ports`). The frps token
and the admin password are never written: frpc reads them from the environment variables the
policy names, through frp's own template syntax (`{{ .Envs.NAME }}`).

Keys follow frp's TOML client schema (v0.52 and later): serverAddr, serverPort, auth.method,
auth.token, webServer.addr/port/user/password and [[proxies]] with name, type, localIP,
localPort, remotePort.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from provisioner.values import spec as specs
from provisioner.values import state
from provisioner.values.policymodels import Policy
from provisioner.values.state import Instance

_SERVICES = ((specs.SSH_DEVICE, "ssh"), (specs.RDP_DEVICE, "rdp"))
ADMIN_ADDR = "127.0.0.1"  # frpc's admin API listens on the host's loopback only
RUNNING = "running"  # frpc's status for a proxy that frps accepted


@dataclass(frozen=True)
class Forward:
    """One forwarded port on the host and what it reaches."""

    instance: str  # the LXD instance (a container, or a shared server's instance)
    service: str  # ssh | rdp
    port: int  # the host's port

    def proxy_name(self, prefix: str) -> str:
        # Instance names are LXD names ([A-Za-z0-9-]), the prefix an LXD project name: the
        # result is unique per port and safe in frp's dashboard and logs.
        return f"{prefix}-{self.instance.lower()}-{self.service}"


def forwards(policy: Policy, instances: Iterable[Instance]) -> tuple[Forward, ...]:
    """Every forwarded port: managed, not retired instances' proxy devices, and each shared
    server's `ssh_port` from the policy. Sorted by port."""
    found: dict[int, Forward] = {}
    for inst in instances:
        if not inst.managed or inst.config.get(state.RETIRED):
            continue
        for device, service in _SERVICES:
            port = specs.listen_port(inst.devices.get(device, {}))
            if port is not None:
                found.setdefault(port, Forward(inst.name, service, port))
    for server in policy.shared_servers.values():
        if server.ssh_port is not None:
            found.setdefault(server.ssh_port, Forward(server.instance, "ssh", server.ssh_port))
    return tuple(found[p] for p in sorted(found))


def local_ip(policy: Policy) -> str:
    """Where frpc on the host reaches a forwarded port: the listen address, or loopback when
    the ports listen on every address."""
    return "127.0.0.1" if policy.ssh.listen == "0.0.0.0" else policy.ssh.listen  # noqa: S104


def frpc_toml(policy: Policy, ports: Iterable[Forward]) -> str:
    """The frpc.toml text. Raises ValueError when the policy has no tunnel."""
    tunnel = policy.tunnel
    if tunnel is None:
        raise ValueError("the policy describes no tunnel")
    if tunnel.admin_port is None:
        head = [
            "# config/policy.yaml and the forwarded ports LXD holds now. Write it again after an",
            "# apply that adds or removes a container, then restart frpc.",
        ]
    else:
        head = [
            "# config/policy.yaml and the forwarded ports LXD holds now. Every apply rewrites",
            "# it and reloads frpc through the admin API below: edit the policy, not this file.",
        ]
    lines = [
        "# frpc.toml for the GPU host, written by `ssp tunnel --format frpc` from",
        *head,
        f"serverAddr = {_str(tunnel.server)}",
        f"serverPort = {tunnel.server_port}",
    ]
    if tunnel.token_env:
        lines += [
            f"# The token comes from ${tunnel.token_env} in frpc's environment.",
            'auth.method = "token"',
            f"auth.token = {_env(tunnel.token_env)}",
        ]
    if tunnel.admin_port is not None:
        # Loopback only: whoever reaches the admin API can rewrite what frpc exposes.
        lines += [
            f"webServer.addr = {_str(ADMIN_ADDR)}",
            f"webServer.port = {tunnel.admin_port}",
        ]
        if tunnel.admin_password_env:
            lines += [
                f"webServer.user = {_str(tunnel.admin_user)}",
                f"webServer.password = {_env(tunnel.admin_password_env)}",
            ]
    for fwd in ports:
        lines += [
            "",
            "[[proxies]]",
            f"name = {_str(fwd.proxy_name(policy.lxd.project))}",
            'type = "tcp"',
            f"localIP = {_str(local_ip(policy))}",
            f"localPort = {fwd.port}",
            f"remotePort = {fwd.port + tunnel.remote_offset}",
        ]
    return "\n".join(lines) + "\n"


def proxy_ports(policy: Policy, ports: Iterable[Forward]) -> dict[str, int]:
    """Each proxy's name in the file, with the host port it carries."""
    return {fwd.proxy_name(policy.lxd.project): fwd.port for fwd in ports}


def running_ports(names: Mapping[str, int], statuses: Mapping[str, str]) -> frozenset[int]:
    """The host ports whose proxy frpc reports `running` (frp's status names: `new`, `wait
    start`, `start error`, `running`, `check failed`, `closed`): the ports the off-LAN
    command may be offered for."""
    return frozenset(port for name, port in names.items() if statuses.get(name) == RUNNING)


def _env(name: str) -> str:
    return _str("{{ .Envs." + name + " }}")


def _str(text: str) -> str:
    """A TOML basic string: JSON's escapes for ASCII text are TOML's too."""
    return json.dumps(text, ensure_ascii=True)
