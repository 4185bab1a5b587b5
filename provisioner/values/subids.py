"""/etc/subuid and /etc/subgid: which host IDs LXD (running as root) may use for containers.

LXD reads root's entries when the daemon starts (docs/design.md, "Facts the code relies on";
checked on LXD 5.0.2):
- a large range (65536 or more) is where each container's unprivileged map comes from; with
  no root entry at all LXD uses its built-in 1000000:1000000000, so a file that gains only a
  small entry would lose that default: a large range is added first in that case;
- a small entry such as `root:1001:1` lets `raw.idmap: both 1001 1001` map that host UID
  into a container (a member's UID, so their files in the share are theirs). An ID that is
  not delegated saves fine but the container then fails to start with an obscure error.

Pure: parsing and deciding. Reading and appending the files is `provisioner.host.subidfiles`, on
paths the caller gives (tests use temporary copies).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioner.values.idranges import IdRange, usable_spans

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
OWNER = "root"  # LXD's daemon runs as root and reads root's entries
MAP_MIN = 65536  # a container's map needs this many IDs
RESTART_HINT = (
    "LXD reads /etc/subuid and /etc/subgid only when it starts: restart the daemon now "
    "(`systemctl restart lxd.service`; snap: `snap restart lxd`). Running containers keep "
    "running; a container gets a newly delegated UID at its next start"
)


@dataclass(frozen=True)
class Range:
    owner: str
    start: int
    count: int

    def covers(self, n: int) -> bool:
        return self.start <= n < self.start + self.count

    def __str__(self) -> str:
        return f"{self.owner}:{self.start}:{self.count}"


# LXD's own default when root has no entry: reusing it keeps existing containers' ownership.
LXD_DEFAULT = Range(OWNER, 1_000_000, 1_000_000_000)


def parse(text: str) -> list[Range]:
    """The well-formed `owner:start:count` lines; comments and anything else are skipped."""
    out = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append(Range(parts[0], int(parts[1]), int(parts[2])))
    return out


def undelegated(ranges: Sequence[Range], ids: Iterable[int], owner: str = OWNER) -> list[int]:
    """The IDs no range of `owner` covers, sorted."""
    mine = [r for r in ranges if r.owner == owner]
    return sorted({n for n in ids if not any(r.covers(n) for r in mine)})


def has_map_range(ranges: Sequence[Range], owner: str = OWNER) -> bool:
    return any(r.owner == owner and r.count >= MAP_MIN for r in ranges)


def additions(text: str, ids: Iterable[int]) -> list[Range]:
    """What to append to one file so LXD can map each of `ids` (empty: nothing to do)."""
    ranges = parse(text)
    out = [] if has_map_range(ranges) else [LXD_DEFAULT]
    for n in undelegated([*ranges, *out], ids):
        last = out[-1] if out else None
        if last is not None and last is not LXD_DEFAULT and last.start + last.count == n:
            out[-1] = Range(OWNER, last.start, last.count + 1)  # consecutive UIDs, one line
        else:
            out.append(Range(OWNER, n, 1))
    return out


def id_spans(subuid_text: str, subgid_text: str) -> tuple[IdRange, ...]:
    """Where ssp may place containers' isolated ID blocks, from the two files' text.

    LXD uses root's entries, or its built-in default when root has none (in either file).
    """

    def large(text: str) -> list[tuple[int, int]]:
        mine = [(r.start, r.count) for r in parse(text) if r.owner == OWNER]
        big = [m for m in mine if m[1] >= MAP_MIN]
        return big or [(LXD_DEFAULT.start, LXD_DEFAULT.count)]

    return usable_spans(large(subuid_text), large(subgid_text))
