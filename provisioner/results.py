"""What an apply (or a plan) did, in text, Markdown and JSON. Pure: returns strings.

The SSH command shown to a member is built here from the policy (host name, forwarded port)
and the outcome (login), so the terminal output, the job summary and the PR comment agree.
"""

from __future__ import annotations

import json
from typing import Any

from provisioner.apply import ApplyResult, Outcome
from provisioner.models import Policy
from provisioner.plan import Plan
from provisioner.problems import Problem
from provisioner.render import render


def ssh_host(policy: Policy, outcome: Outcome) -> str:
    """Where members reach a forwarded port: the policy's host name, or its listen address."""
    del outcome  # the forwarded port is on the host whatever the instance's own address
    if policy.ssh.host:
        return policy.ssh.host
    if policy.ssh.listen not in ("0.0.0.0", ""):  # noqa: S104  (a value we compare, not bind)
        return policy.ssh.listen
    return "<server>"


def ssh_command(policy: Policy, outcome: Outcome) -> str | None:
    if not outcome.ok or outcome.action in ("retired", "locked"):
        return None
    host = ssh_host(policy, outcome)
    if outcome.ssh_port is not None and (host != "<server>" or not outcome.ipv4):
        return f"ssh -p {outcome.ssh_port} {outcome.login}@{host}"
    if outcome.ipv4:
        # No name for the host (or no forwarded port, as for an account on a shared server
        # without one): the instance's own address, where its sshd listens on port 22. The
        # forwarded port is on the host, never on that address.
        return f"ssh {outcome.login}@{outcome.ipv4[0]}"
    return None


def public_command(policy: Policy, outcome: Outcome) -> str | None:
    if (
        not policy.ssh.public_host
        or outcome.ssh_port is None
        or ssh_command(policy, outcome) is None
    ):
        return None
    return f"ssh -p {outcome.ssh_port} {outcome.login}@{policy.ssh.public_host}"


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
        "gpus": [{"index": g.index, "model": g.model, "pci": g.pci} for g in o.gpus],
        "shares": [{"id": s.id, "path": s.path, "readonly": s.readonly} for s in o.shares],
        "expires": o.expires.isoformat() if o.expires else None,
        "snapshots": o.snapshots,
        "server": o.server,
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
