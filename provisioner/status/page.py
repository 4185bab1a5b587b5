"""`ServerStatus` as text, JSON, Markdown and one self-contained HTML page. Pure: strings out.

The page carries its own styles and no script or external asset, so it works offline, from a
file, on a phone; labels are in English and Chinese. Every value reaches HTML through
jinja2's autoescaping, and Markdown through the `md` filter.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from provisioner.reporting.render import render, render_html
from provisioner.status.server import AccountRow, ContainerRow, ServerStatus
from provisioner.values.sizes import human_size


def lease(row: ContainerRow | AccountRow) -> str:
    """How long a lease runs: "until 2027-06-30 (212 days left)", or "ended … (31 days ago)"."""
    if row.expires is None or row.days_left is None:
        return "no lease"
    if row.days_left >= 0:
        return f"until {row.expires} ({row.days_left} days left)"
    return f"ended {row.expires} ({-row.days_left} days ago)"


def text_lines(status: ServerStatus) -> list[str]:
    lines = [f"{status.host} at {status.generated:%Y-%m-%d %H:%M %Z}"]
    lines.append("")
    lines.append("GPUs:")
    for g in status.gpus:
        holder = f"{g.container} ({g.owner}, until {g.until})" if g.container else "free"
        use = ""
        if g.live is not None:
            util = "?" if g.live.utilization is None else f"{g.live.utilization}%"
            use = f"  {util} busy, {human_size(g.live.memory_used)} of {human_size(g.live.memory)}"
        lines.append(f"  GPU {g.label}  {g.model:<26} {holder}{use}")
    free = ", ".join(status.free_labels) or "none"
    lines.append(f"  free: {free}")
    lines.append("")
    lines.append("Containers:")
    if not status.containers:
        lines.append("  none")
    for c in status.containers:
        gpus = ",".join(map(str, c.gpus)) or "-"
        port = f"port {c.ssh_port}" if c.ssh_port else "no port"
        address = c.ipv4[0] if c.ipv4 else "-"
        lines.append(
            f"  {c.name:<24} {c.owner:<12} {c.state:<9} GPUs {gpus:<8} {address:<15} "
            f"{port:<10} {lease(c)}"
        )
    lines.append("")
    lines.append("Accounts:")
    if not status.accounts:
        lines.append("  none")
    for a in status.accounts:
        lines.append(f"  {a.login:<24} {a.owner:<12} {a.state:<9} on {a.server:<12} {lease(a)}")
    lines.append("")
    lines.append("Quotas (containers, GPUs):")
    for q in status.quotas:
        lines.append(
            f"  {q.member:<12} {q.containers}/{q.containers_limit} containers, "
            f"{q.gpus}/{q.gpus_limit} GPUs"
        )
    if status.pool is not None:
        p = status.pool
        lines.append("")
        lines.append(
            f"Pool {p.name}: {human_size(p.used)} of {human_size(p.total)} used ({p.percent}%)"
        )
    lines += [f"note: {n}" for n in status.notes]
    return lines


def _plain(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(status: ServerStatus) -> str:
    data = _plain(asdict(status))
    data["free_gpus"] = list(status.free_gpus)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def markdown(status: ServerStatus) -> str:
    return render("status.md.j2", s=status, lease=lease, human=human_size)


def html(status: ServerStatus) -> str:
    return render_html("status.html.j2", s=status, lease=lease, human=human_size)
