"""Keeping the tunnel in step with the host after an apply: frpc's file rewritten from the
forwarded ports LXD holds, frpc reloaded through its admin API, and frpc's own proxy status
read back, so the comment offers the off-LAN command only for a port the tunnel carries.

Why a reload per apply, not one proxy per port of the whole range once: a range of N ports is
N proxies and N listening ports on the public frps whether or not a container uses them (and
frps's allowPorts must open them all), and a range in the file says nothing about whether
frpc is up or frps accepted it. The reload names only ports that listen, and the status frpc
reports after it is evidence that each one works.

Nothing here raises: a tunnel that cannot be kept in step is a `TunnelSync` with an error,
reported after the host work, which stands.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from provisioner.flows.reconcile import observe
from provisioner.host.frpc import FrpcAdmin, read_password, write_config
from provisioner.planning import tunnel
from provisioner.validation.config import Config
from provisioner.values.errors import LxdError, TunnelError
from provisioner.values.outcomes import ApplyResult
from provisioner.values.policymodels import Policy
from provisioner.values.state import Instance, LxdApi

# frp's states of a proxy still on its way up; any other one is where it stays for now.
_STARTING = frozenset({"", "new", "wait start"})


@dataclass(frozen=True)
class TunnelSync:
    """What keeping the tunnel in step did."""

    ports: frozenset[int]  # host ports whose proxy frpc reports running
    proxies: int  # proxies in the file
    changed: bool = False  # the file was rewritten
    reloaded: bool = False
    not_running: tuple[str, ...] = ()  # `name: state` of each proxy not running
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and not self.not_running

    def summary(self) -> str:
        head = (
            f"tunnel: {len(self.ports)} of {self.proxies} proxies running"
            f"{', frpc reloaded' if self.reloaded else ''}"
            f"{' with a new file' if self.changed else ''}"
        )
        tail = [self.error] if self.error else []
        tail += [f"not running: {', '.join(self.not_running)}"] if self.not_running else []
        return "; ".join([head, *tail])


def admin_for(policy: Policy, password: str | None) -> FrpcAdmin | None:
    """The admin API client the policy describes, or None without `tunnel.admin_port`.
    PASSWORD None: read from the policy's admin_password_file (TunnelError when it cannot
    be); a tunnel without admin_password_env has no password."""
    t = policy.tunnel
    if t is None or t.admin_port is None:
        return None
    if not t.admin_password_env:
        password = ""
    elif password is None:
        password = read_password(Path(t.admin_password_file))
    return FrpcAdmin(tunnel.ADMIN_ADDR, t.admin_port, t.admin_user, password)


def sync(
    policy: Policy,
    instances: Iterable[Instance],
    admin: FrpcAdmin,
    *,
    dry_run: bool = False,
    wait_s: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> TunnelSync:
    """Write frpc's file and reload frpc (unless DRY_RUN), then wait up to WAIT_S for each
    proxy to leave frp's starting states, and read which ones run."""
    assert policy.tunnel is not None  # noqa: S101  (admin_for gives an admin only with one)
    forwards = tunnel.forwards(policy, instances)
    names = tunnel.proxy_ports(policy, forwards)
    changed = reloaded = False
    errors = []
    if not dry_run:
        try:
            changed = write_config(
                Path(policy.tunnel.config_file), tunnel.frpc_toml(policy, forwards)
            )
            # Always, not only after a change: frpc started by hand from an older file, or
            # restarted, is put in step too. frpc restarts only the proxies that changed.
            admin.reload()
            reloaded = True
        except TunnelError as e:
            errors.append(str(e))
    statuses: dict[str, str] = {}
    # A dry run changed nothing, so there is nothing to wait for: frpc's state as it is.
    deadline = clock() + (0 if dry_run else wait_s)
    while True:
        try:
            statuses = admin.status()
        except TunnelError as e:
            errors.append(str(e))
            break
        if all(statuses.get(n, "") not in _STARTING for n in names) or clock() >= deadline:
            break
        sleep(0.25)
    ports = tunnel.running_ports(names, statuses)
    # frpc answering with fewer proxies than the file names is a proxy not running too.
    not_running = tuple(
        f"{n}: {statuses.get(n) or 'not started'}" for n, port in names.items() if port not in ports
    )
    return TunnelSync(ports, len(names), changed, reloaded, not_running, "; ".join(errors))


def carried(result: ApplyResult, ports: frozenset[int]) -> ApplyResult:
    """RESULT with each outcome's ports that the tunnel carries (its SSH and desktop)."""
    outcomes = tuple(
        dataclasses.replace(
            o, tunnel_ports=frozenset(p for p in (o.ssh_port, o.rdp_port) if p in ports)
        )
        for o in result.outcomes
    )
    return dataclasses.replace(result, outcomes=outcomes)


def after_apply(
    config: Config,
    lxd: LxdApi,
    result: ApplyResult,
    password: str | None,
    *,
    dry_run: bool = False,
    wait_s: float = 15.0,
) -> tuple[ApplyResult, TunnelSync | None]:
    """The tunnel put in step with what LXD holds after an apply (one listing, not even the
    cluster's members), and RESULT with the ports it carries; None for a policy whose tunnel
    has no admin API. PASSWORD: the admin API's, None to read it from the policy's file."""
    try:
        admin = admin_for(config.policy, password)
    except TunnelError as e:
        return result, TunnelSync(frozenset(), 0, error=str(e))
    if admin is None:
        return result, None
    try:
        instances = observe(config, lxd, id_maps=False, members=False).instances
    except LxdError as e:
        return result, TunnelSync(frozenset(), 0, error=f"cannot list the forwarded ports: {e}")
    done = sync(config.policy, instances, admin, dry_run=dry_run, wait_s=wait_s)
    return carried(result, done.ports), done
