"""GPU-hours in the Prometheus text exposition format, made by the `prometheus_client` library.

Two gauges, `ssp_gpu_held_hours` and `ssp_gpu_used_hours`, labelled `member` and `month`, in a
registry of their own (nothing of this process's own metrics). The library writes the format
(escaping, number formatting) as Prometheus itself reads it. It is a GPU host's library only:
it is imported when the figures are asked for, so a member's slim install (`ssp validate`,
`ssp new`) never needs it.
"""

from __future__ import annotations

from collections.abc import Iterable

GAUGES = (
    ("ssp_gpu_held_hours", "GPU-hours held by the member's containers"),
    ("ssp_gpu_used_hours", "GPU-hours used (held time weighted by utilisation)"),
)


def exposition(figures: Iterable[tuple[str, str, float, float]]) -> str:
    """FIGURES are (member, month, held hours, used hours); the text a scrape or node
    exporter's textfile collector reads."""
    # Only here: the GPU host's library, loaded when the figures are asked for.
    from prometheus_client import CollectorRegistry, Gauge, generate_latest  # noqa: PLC0415

    registry = CollectorRegistry(auto_describe=True)
    held, used = (
        Gauge(name, help_, ["member", "month"], registry=registry) for name, help_ in GAUGES
    )
    for member, month, held_hours, used_hours in figures:
        held.labels(member=member, month=month).set(held_hours)
        used.labels(member=member, month=month).set(used_hours)
    return generate_latest(registry).decode("utf-8")
