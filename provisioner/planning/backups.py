"""Which containers' backups are due, and which old ones go: the backup policy against the
tarballs already in the target folder. Pure: names and times in, names out.

A backup is one file `<container>.<UTC stamp>.tar.gz` (container names hold no dot, so the
name and the stamp part cleanly). A failed backup leaves no file, so it is still due on the
next pass: that is the retry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from provisioner.values.policymodels import BackupPolicy

STAMP = "%Y%m%dT%H%M%SZ"
SUFFIX = ".tar.gz"
# The pool drivers whose backups LXD can write in their own format (`optimized_storage`): a
# send stream, smaller and faster than a file-by-file copy, restorable onto that driver only.
OPTIMIZED_DRIVERS = frozenset({"zfs", "btrfs"})
_FILE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9-]{0,62})\.(?P<stamp>\d{8}T\d{6}Z)\.tar\.gz$")


def file_name(name: str, at: datetime) -> str:
    return f"{name}.{at.astimezone(UTC).strftime(STAMP)}{SUFFIX}"


def parse_file(file: str) -> tuple[str, datetime] | None:
    """(container, when) for a backup's file name; None for anything else in the folder."""
    found = _FILE.match(file)
    if found is None:
        return None
    when = datetime.strptime(found["stamp"], STAMP).replace(tzinfo=UTC)
    return found["name"], when


def by_container(files: Iterable[str]) -> dict[str, list[tuple[datetime, str]]]:
    """The backups in a folder listing, per container, newest first."""
    out: dict[str, list[tuple[datetime, str]]] = {}
    for file in files:
        parsed = parse_file(file)
        if parsed is not None:
            out.setdefault(parsed[0], []).append((parsed[1], file))
    for found in out.values():
        found.sort(reverse=True)
    return out


def wanted(policy: BackupPolicy, managed: Sequence[str], opted_in: frozenset[str]) -> list[str]:
    """The containers the policy backs up, of those ssp manages."""
    if policy.containers == "all":
        return sorted(managed)
    return sorted(n for n in managed if n in opted_in)


@dataclass(frozen=True)
class Due:
    name: str
    last: datetime | None  # the newest backup there is, if any


def due(
    policy: BackupPolicy,
    names: Sequence[str],
    existing: Mapping[str, Sequence[tuple[datetime, str]]],
    now: datetime,
) -> list[Due]:
    """NAMES whose newest backup is `every_days` old or older (or that have none). An hour's
    slack: a daily run that starts a little earlier than yesterday's still backs up."""
    every = timedelta(days=policy.every_days) - timedelta(hours=1)
    out = []
    for name in names:
        found = existing.get(name) or ()
        last = found[0][0] if found else None
        if last is None or now - last >= every:
            out.append(Due(name, last))
    return out


def to_prune(policy: BackupPolicy, found: Sequence[tuple[datetime, str]]) -> list[str]:
    """The files past the newest `keep` (FOUND newest first)."""
    return [file for _, file in found[policy.keep :]]
