"""What an apply (or a plan) did, in text, Markdown and JSON. Pure: returns strings.

The SSH command shown to a member is built here from the policy (host name, forwarded port)
and the outcome (login), so the terminal output, the job summary and the PR comment agree.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from provisioner.reporting.render import render
from provisioner.values.outcomes import GIVEN_BACK, ApplyResult, Done, Outcome
from provisioner.values.plandata import Plan
from provisioner.values.policymodels import Policy
from provisioner.values.problems import Problem
from provisioner.values.waitlist import line_text


def ssh_host(policy: Policy, outcome: Outcome) -> str:
    """Where members reach a forwarded port: the server the container is on (in a cluster),
    the policy's host name, or its listen address."""
    # The forwarded port is on that server whatever the instance's own address.
    if outcome.host:
        return outcome.host
    if policy.ssh.host:
        return policy.ssh.host
    if policy.ssh.listen not in ("0.0.0.0", ""):  # noqa: S104  (a value we compare, not bind)
        return policy.ssh.listen
    return "<server>"


@dataclass(frozen=True, kw_only=True)
class SshTarget:
    """Where a member logs in: `ssh [-J jump] [-p port] login@host`, as a value.

    `port` is the host's forwarded port, None for the instance's own sshd on port 22.
    """

    login: str
    host: str
    port: int | None = None
    jump: str | None = None

    def __str__(self) -> str:
        jump = f"-J {self.jump} " if self.jump else ""
        port = f"-p {self.port} " if self.port is not None else ""
        return f"ssh {jump}{port}{self.login}@{self.host}"


def ssh_target(policy: Policy, outcome: Outcome) -> SshTarget | None:
    """Where the login of a working request is reached on the LAN (None: nowhere yet)."""
    if not outcome.ok or outcome.action in GIVEN_BACK:
        return None
    host = ssh_host(policy, outcome)
    if outcome.ssh_port is not None and (host != "<server>" or not outcome.ipv4):
        return SshTarget(login=outcome.login, host=host, port=outcome.ssh_port)
    if outcome.ipv4:
        # No name for the host (or no forwarded port, as for an account on a shared server
        # without one): the instance's own address, where its sshd listens on port 22. The
        # forwarded port is on the host, never on that address.
        return SshTarget(login=outcome.login, host=outcome.ipv4[0])
    return None


def ssh_command(policy: Policy, outcome: Outcome) -> str | None:
    target = ssh_target(policy, outcome)
    return None if target is None else str(target)


def _forwarded(policy: Policy, outcome: Outcome) -> SshTarget | None:
    """The LAN target when the login goes through a forwarded port on the host."""
    target = ssh_target(policy, outcome)
    return target if target is not None and target.port is not None else None


def public_address(policy: Policy, outcome: Outcome, port: int | None) -> tuple[str, int] | None:
    """Host and port that reach the host's forwarded PORT from outside the lab: through the
    tunnel when there is one and it is known to carry the port (frpc said so after the
    apply), else the policy's public host on the same port."""
    if port is None:
        return None
    if policy.tunnel is not None:
        if port not in outcome.tunnel_ports:
            return None  # never a command that may not work
        return policy.tunnel.server, port + policy.tunnel.remote_offset
    if policy.ssh.public_host:
        return policy.ssh.public_host, port
    return None


def public_command(policy: Policy, outcome: Outcome) -> str | None:
    lan = _forwarded(policy, outcome)
    where = public_address(policy, outcome, lan.port) if lan is not None else None
    if lan is None or where is None:
        return None
    return str(SshTarget(login=lan.login, host=where[0], port=where[1]))


def jump_command(policy: Policy, outcome: Outcome) -> str | None:
    """The LAN command through the policy's jump host (`ssh -J`), for off-LAN use."""
    lan = _forwarded(policy, outcome)
    if not policy.ssh.jump_host or lan is None:
        return None
    return str(dataclasses.replace(lan, jump=policy.ssh.jump_host))


def rdp_addresses(policy: Policy, outcome: Outcome) -> tuple[str, str]:
    """The remote desktop's address on the LAN and from outside ("" where there is none)."""
    if not outcome.rdp_port or not outcome.ok or outcome.action in GIVEN_BACK:
        return "", ""
    public = public_address(policy, outcome, outcome.rdp_port)
    return (
        f"{ssh_host(policy, outcome)}:{outcome.rdp_port}",
        f"{public[0]}:{public[1]}" if public else "",
    )


IDENTITY_HINT = "    # the private half of a key in your request:"
IDENTITY_FILE = "    IdentityFile ~/.ssh/id_ed25519"


def ssh_config(policy: Policy, outcome: Outcome) -> str:
    """~/.ssh/config entries: `Host NAME` for the LAN, `NAME-away` through the tunnel or the
    public host, `NAME-jump` through the jump host; each as the matching command."""
    target = ssh_target(policy, outcome)
    if target is None:
        return ""
    login, host, port = target.login, target.host, target.port
    blocks = [_host_block(outcome.name, host, port, login)]
    public = public_address(policy, outcome, port)
    if public is not None:
        blocks.append(_host_block(f"{outcome.name}-away", public[0], public[1], login))
    if policy.ssh.jump_host and port is not None:
        jump = _host_block(f"{outcome.name}-jump", host, port, login)
        blocks.append(jump + f"\n    ProxyJump {policy.ssh.jump_host}")
    return "\n\n".join(blocks)


def _host_block(alias: str, host: str, port: int | None, login: str) -> str:
    lines = [f"Host {alias}", f"    HostName {host}"]
    if port is not None:
        lines.append(f"    Port {port}")
    lines += [f"    User {login}", IDENTITY_HINT, IDENTITY_FILE]
    return "\n".join(lines)


def outcome_dict(policy: Policy, o: Outcome) -> dict[str, Any]:
    return {
        "name": o.name,
        "owner": o.owner,
        "request": o.request_path,
        "kind": o.kind,
        "action": o.action,
        "ok": o.ok,
        "message": o.message,
        "login": o.login,
        "ipv4": list(o.ipv4),
        "ssh_port": o.ssh_port,
        "rdp_port": o.rdp_port,
        "ssh_command": ssh_command(policy, o),
        "ssh_command_public": public_command(policy, o),
        "ssh_command_jump": jump_command(policy, o),
        "gpus": [{"index": g.index, "model": g.model, "pci": g.pci} for g in o.gpus],
        "shares": [{"id": s.id, "path": s.path, "readonly": s.readonly} for s in o.shares],
        "expires": o.expires.isoformat() if o.expires else None,
        "snapshots": o.snapshots,
        "server": o.server,
        "image": o.image,
        **_waiting(o),
    }


def _waiting(o: Outcome) -> dict[str, Any]:
    """A waiting request's place in line, the GPUs it waits for and when the next frees."""
    if o.action != Done.WAITING:
        return {}
    return {
        "place": o.place,
        "line": line_text(o.place, o.waits_for, o.frees),
        "waits_for": list(o.waits_for),
        "frees": o.frees.isoformat() if o.frees else None,
    }


def text_lines(policy: Policy, result: ApplyResult, skipped: tuple[Problem, ...]) -> list[str]:
    lines = []
    for o in result.outcomes:
        head = f"{o.action:<13} {o.name:<24} {o.owner or '-':<12}"
        if not o.ok:
            lines.append(f"{head} {o.message}")
            continue
        parts = [", ".join(o.ipv4) or "-"]
        command = ssh_command(policy, o)
        if command:
            parts.append(command)
        if o.gpus:
            parts.append("GPUs " + ", ".join(f"{g.index} ({g.pci})" for g in o.gpus))
        if o.action == Done.WAITING:
            parts = [line_text(o.place, o.waits_for, o.frees)]
        if o.message:
            parts.append(o.message)
        lines.append(f"{head} " + "  ".join(parts))
    lines += [f"skipped: {p}" for p in skipped]
    lines += [f"drift: {d.name}: {d.message}" for d in result.drift]
    return lines


def to_json(policy: Policy, result: ApplyResult, skipped: tuple[Problem, ...]) -> str:
    doc = {
        "ok": result.ok and not skipped,
        "sha": result.sha,
        "dry_run": result.dry_run,
        "outcomes": [outcome_dict(policy, o) for o in result.outcomes],
        "skipped": [str(p) for p in skipped],
        "drift": [{"name": d.name, "message": d.message} for d in result.drift],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def markdown(policy: Policy, result: ApplyResult, skipped: tuple[Problem, ...]) -> str:
    return render(
        "apply_summary.md.j2",
        result=result,
        rows=[outcome_dict(policy, o) for o in result.outcomes],
        skipped=skipped,
        drift=result.drift,
    )


def plan_lines(plan: Plan) -> list[str]:
    lines = []
    for action in plan.actions:
        lines.append(f"{action.kind:<8} {action.name:<24} {action.detail}".rstrip())
    lines += [f"drift    {d.name:<24} {d.message}" for d in plan.drift]
    return lines
