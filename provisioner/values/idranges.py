"""Host ID ranges: which host UIDs/GIDs a container's users are, and choosing them safely.

An unprivileged container's root is an ordinary host ID. With `security.idmap.isolated`
every container gets a block of its own (65,536 IDs), so root in one is nobody in another.
LXD 5.0.2 picks that block when the instance is created, and two creates at once were seen
to get the same block (`volatile.idmap.base` 231072 twice): root in one was root in the
other on the host. So ssp chooses every managed container's block itself, as it chooses
ports — `security.idmap.base` and `security.idmap.size` — inside root's subordinate IDs,
clear of every other instance on the host (all projects), and stable once given.

Where the project forbids low-level keys — ssp's own restricted project does, and
`security.idmap.base` is one — LXD must choose. There apply makes new containers one at a
time (the step in which LXD chooses) and checks each block against all others before the
container ever starts; `ssp doctor` and the plan's drift report any overlap left.

Pure: the callers bring the instances' configs (from the LXD adapter) and root's
`/etc/subuid` and `/etc/subgid` ranges (from `subids`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SIZE = 65536  # a full 16-bit user namespace: what LXD gives an isolated container
ISOLATED = "security.idmap.isolated"
BASE = "security.idmap.base"
SIZE_KEY = "security.idmap.size"
# LXD's record of the map: the one the running container has, and the one it gets next start.
CURRENT = "volatile.idmap.current"
NEXT = "volatile.idmap.next"


@dataclass(frozen=True, order=True)
class IdRange:
    """Host IDs `base` … `base + size - 1` (the same numbers for UIDs and GIDs)."""

    base: int
    size: int = SIZE

    @property
    def end(self) -> int:
        return self.base + self.size

    def overlaps(self, other: IdRange) -> bool:
        return self.base < other.end and other.base < self.end

    def within(self, span: IdRange) -> bool:
        return span.base <= self.base and self.end <= span.end

    def __str__(self) -> str:
        return f"{self.base}-{self.end - 1}"


@dataclass(frozen=True)
class IdMapUse:
    """The host IDs one instance maps: what it runs with now and what it gets next start."""

    project: str
    name: str
    isolated: bool
    current: IdRange | None
    next: IdRange | None

    @property
    def label(self) -> str:
        return self.name if self.project == "default" else f"{self.project}/{self.name}"

    def ranges(self) -> tuple[IdRange, ...]:
        return tuple(sorted({r for r in (self.current, self.next) if r is not None}))


def _main_block(entries: object, isolated: bool) -> IdRange | None:
    """The block container UID 0 starts, from LXD's JSON map (raw.idmap entries aside).

    A `raw.idmap` entry cuts the block in pieces (0-1000, the member's UID, 1002-65535); the
    pieces share one offset host−container, so the block is from that offset on. A container
    without an isolated map shares LXD's default map, of which it uses the first 65,536 IDs
    (LXD keeps isolated blocks clear of those too).
    """
    if not isinstance(entries, list):
        return None
    uids = [
        e
        for e in entries
        if isinstance(e, dict)
        and e.get("Isuid")
        and all(isinstance(e.get(k), int) for k in ("Hostid", "Nsid", "Maprange"))
    ]
    start = next((e for e in uids if e["Nsid"] == 0), None)
    if start is None:
        return None
    base = int(start["Hostid"])
    if not isolated:
        return IdRange(base, SIZE)
    size = max(e["Nsid"] + e["Maprange"] for e in uids if e["Hostid"] - e["Nsid"] == base)
    return IdRange(base, size)


def _parse(config: Mapping[str, str], key: str, isolated: bool) -> IdRange | None:
    try:
        return _main_block(json.loads(config.get(key) or "null"), isolated)
    except ValueError:
        return None


def use_of(project: str, name: str, config: Mapping[str, str]) -> IdMapUse:
    """What an instance's config says about its host IDs (LXD's `volatile` record)."""
    isolated = config.get(ISOLATED) == "true"
    return IdMapUse(
        project, name, isolated, _parse(config, CURRENT, isolated), _parse(config, NEXT, isolated)
    )


def pinned(config: Mapping[str, str]) -> IdRange | None:
    """The block ssp gave the instance (`security.idmap.base`/`size`), if it has one."""
    base, size = config.get(BASE, ""), config.get(SIZE_KEY, str(SIZE))
    if not (base.isdigit() and size.isdigit()) or int(size) == 0:
        return None
    return IdRange(int(base), int(size))


@dataclass(frozen=True)
class Overlap:
    first: IdMapUse
    second: IdMapUse
    range: IdRange  # the first's range that the second's overlaps

    def describe(self) -> str:
        return (
            f"{self.first.label} and {self.second.label} share host IDs "
            f"(around {self.range}): root in one is root in the other on the host"
        )


def shared_with(uses: Iterable[IdMapUse], project: str, name: str) -> str:
    """Which other instance's host IDs instance NAME's overlap, said for a message ("": none)."""
    for o in overlaps(uses):
        if (project, name) == (o.first.project, o.first.name):
            return f"{o.second.label}'s, around {o.range}"
        if (project, name) == (o.second.project, o.second.name):
            return f"{o.first.label}'s, around {o.range}"
    return ""


def overlaps(uses: Iterable[IdMapUse]) -> list[Overlap]:
    """Pairs of instances whose host ID ranges overlap, where one of them is isolated.

    Instances without an isolated map all share LXD's default map by design; only an
    isolated one inside another's range (or another isolated one's) is a hole.
    """
    found: list[Overlap] = []
    items = sorted(uses, key=lambda u: (u.project, u.name))
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            if not (a.isolated or b.isolated):
                continue
            hit = next((ra for ra in a.ranges() for rb in b.ranges() if ra.overlaps(rb)), None)
            if hit is not None:
                found.append(Overlap(a, b, hit))
    return found


def usable_spans(
    subuid: Sequence[tuple[int, int]], subgid: Sequence[tuple[int, int]]
) -> tuple[IdRange, ...]:
    """Where isolated blocks may go: root's large ranges in both files, in order.

    The first 65,536 IDs of the first range are left out: containers without an isolated
    map (the admin's Common-Server base) use them, and LXD keeps clear of them too.
    """
    uid = [IdRange(s, c) for s, c in subuid if c >= SIZE]
    gid = [IdRange(s, c) for s, c in subgid if c >= SIZE]
    spans: list[IdRange] = []
    for a in uid:
        for b in gid:
            lo, hi = max(a.base, b.base), min(a.end, b.end)
            if hi - lo >= SIZE:
                spans.append(IdRange(lo, hi - lo))
    spans.sort()
    if spans:
        first = spans[0]
        spans[0] = IdRange(first.base + SIZE, first.size - SIZE)
    return tuple(s for s in spans if s.size >= SIZE)


# Where blocks go on a host whose /etc/subuid and /etc/subgid give root nothing: LXD's default.
LXD_DEFAULT_SPANS = usable_spans([(1_000_000, 1_000_000_000)], [(1_000_000, 1_000_000_000)])


class Allocator:
    """First-fit blocks inside `spans`, clear of every range taken so far."""

    def __init__(self, spans: Sequence[IdRange], taken: Iterable[IdRange]) -> None:
        self._spans = tuple(sorted(spans))
        self._taken = sorted(taken)

    def free(self, wanted: IdRange) -> bool:
        inside = any(wanted.within(s) for s in self._spans)
        return inside and not any(wanted.overlaps(t) for t in self._taken)

    def take(self, wanted: IdRange) -> None:
        self._taken.append(wanted)
        self._taken.sort()

    def new(self, size: int = SIZE) -> IdRange | None:
        for span in self._spans:
            base = span.base
            for t in self._taken:
                if t.end <= base:
                    continue
                if t.base >= base + size:
                    break
                base = t.end  # overlaps the candidate: try just after it
            if base + size <= span.end:
                block = IdRange(base, size)
                self.take(block)
                return block
        return None
