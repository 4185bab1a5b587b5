"""`ServerStatus` as text, JSON, Markdown and one self-contained HTML page. Pure: strings out.

The page carries its own styles and one small inline script of ours (it turns the embedded
ISO time into "updated 5 min ago"; without it the absolute time in the lab's time zone
stays), no external asset, so it works offline, from a file, on a phone; labels are in
English and Chinese. Where the usage database has readings, a small chart shows each
member's held and used GPU-hours last month and this one: plain HTML bars sized by CSS
widths, no script, no SVG library, with the figures written beside each bar. Times are
shown in the lab's time zone (the policy's `timezone`).
Given a repository's address, each container row links to the commit that made it (whose
page names its pull request) and to its lease issue. Every value reaches HTML through
jinja2's autoescaping, and Markdown through the `md` filter.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from provisioner.reporting.render import render, render_html
from provisioner.status.server import AccountRow, ContainerRow, ServerStatus
from provisioner.status.usage import Chart
from provisioner.values.sizes import human_size

_REPO_URL = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9-]+/[A-Za-z0-9._-]+")


def lease(row: ContainerRow | AccountRow) -> str:
    """How long a lease runs: "until 2027-06-30 (212 days left)", or "ended … (31 days ago)";
    a container given back or stopped at its end says so, not a lease that seems to run."""
    retired = getattr(row, "retired", None)
    if row.state == "retired":
        return f"given back {retired}, stopped and kept" if retired else "given back"
    if row.expires is None or row.days_left is None:
        return "no lease"
    if retired is not None:
        return f"ended {row.expires} ({-row.days_left} days ago), stopped and kept"
    if row.days_left >= 0:
        return f"until {row.expires} ({row.days_left} days left)"
    return f"ended {row.expires} ({-row.days_left} days ago)"


def released(row: ContainerRow) -> str:
    """What a container whose GPUs were handed back says (the guides use the same words)."""
    if row.released_why == "idle":
        return f"GPUs released for idleness on {row.released}; /ssp start or renew to get them back"
    if row.released_why == "owner" or row.released is not None:
        return f"GPUs handed back on {row.released}; /ssp start to get them back"
    return ""


def local_time(status: ServerStatus, timezone: str) -> str:
    """When STATUS was made, in the lab's time zone: "2026-11-28 20:00 (Asia/Shanghai)"."""
    try:
        zone = ZoneInfo(timezone)
    except (ValueError, KeyError, OSError):
        zone, timezone = ZoneInfo("UTC"), "UTC"
    return f"{status.generated.astimezone(zone):%Y-%m-%d %H:%M} ({timezone})"


def free_summary(status: ServerStatus) -> str:
    """ "1 of 4 free (GPU 2)", "2 of 4 free (GPUs 0, 2)", "0 of 4 free"."""
    labels = status.free_labels
    said = f"{len(labels)} of {len(status.gpus)} free"
    if labels:
        said += f" ({'GPU' if len(labels) == 1 else 'GPUs'} {', '.join(labels)})"
    return said


def next_frees(status: ServerStatus) -> date | None:
    """The day the first held GPU comes free: the day after its lease's last day."""
    ends = [g.until for g in status.gpus if not g.free and g.until is not None]
    return min(ends) + timedelta(days=1) if ends else None


def links(row: ContainerRow, repo_url: str) -> dict[str, str]:
    """The row's pull request (the commit that made it, whose page names it) and lease
    issue on REPO_URL (https://github.com/OWNER/REPO), where known."""
    if not _REPO_URL.fullmatch(repo_url):
        return {}
    found = {}
    if row.sha:
        found["pr"] = f"{repo_url}/commit/{row.sha}"
    title = quote(f'label:ssp-lease in:title "Lease of container {row.name}"')
    found["issue"] = f"{repo_url}/issues?q={title}"
    return found


def text_lines(status: ServerStatus, timezone: str = "UTC") -> list[str]:
    lines = [f"{status.host} at {local_time(status, timezone)}"]
    lines.append("")
    lines.append("GPUs:")
    for g in status.gpus:
        holder = f"{g.container} ({g.owner}, until {g.until})" if g.container else "free"
        use = ""
        if g.live is not None:
            util = "?" if g.live.utilization is None else f"{g.live.utilization}%"
            use = f"  {util} busy, {human_size(g.live.memory_used)} of {human_size(g.live.memory)}"
        lines.append(f"  GPU {g.label}  {g.model:<26} {holder}{use}")
    lines.append(f"  {free_summary(status)}")
    frees = next_frees(status)
    if frees is not None:
        lines.append(f"  next GPU frees {frees}")
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
        if released(c):
            lines.append(f"  {'':<24} {released(c)}")
    if status.waiting:
        lines.append("")
        lines.append("Waiting for GPUs (in line by merge order):")
        for w in status.waiting:
            lines.append(f"  {w.place:>3}. {w.name:<24} {w.owner:<12} {w.line}: {w.message}")
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


def _facts(status: ServerStatus, timezone: str, repo_url: str) -> dict[str, Any]:
    return {
        "s": status,
        "lease": lease,
        "released": released,
        "human": human_size,
        "when": local_time(status, timezone),
        "iso": status.generated.isoformat(timespec="seconds"),
        "free": free_summary(status),
        "frees": next_frees(status),
        "links": lambda row: links(row, repo_url),
    }


def markdown(status: ServerStatus, timezone: str = "UTC", repo_url: str = "") -> str:
    return render("status.md.j2", **_facts(status, timezone, repo_url))


def html(
    status: ServerStatus, timezone: str = "UTC", repo_url: str = "", chart: Chart | None = None
) -> str:
    """The page; CHART, when given, adds the GPU-hours per member (bars drawn with CSS)."""
    return render_html("status.html.j2", **_facts(status, timezone, repo_url), chart=chart)
