"""Backups off the host: the part of `ssp maintain` that exports due containers into the
policy's `backup.target`, and `ssp backup restore`, which brings one back as a new container
(in a host ID block of its own when another instance holds the one it was backed up with).

Each due container is exported on its own: one that fails is reported (and, having left no
file, is due again on the next pass) and the others go on. Old backups past `backup.keep` go
only after a new one was written. The target must exist and be writable: ssp never creates it,
since an unmounted backup disk would otherwise fill the host's own disk with "off-host" copies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Protocol

from provisioner.host import backupdir
from provisioner.planning import backups as plan
from provisioner.values import idranges, state
from provisioner.values.errors import LxdError, SspError, UsageError
from provisioner.values.idranges import IdMapUse, IdRange
from provisioner.values.loaded import Loaded
from provisioner.values.models import ContainerRequest
from provisioner.values.policymodels import Policy
from provisioner.values.state import Instance, Pool


class Exporter(Protocol):
    def export(self, name: str, path: str, optimized: bool = False) -> int:
        """Write the instance (with its snapshots) as a backup tarball at PATH."""
        ...

    def storage_pool(self, name: str, member: str = "") -> Pool | None: ...


class Importer(Protocol):
    def exists(self, name: str) -> bool: ...

    def import_backup(self, path: str, name: str, pool: str) -> None: ...

    def set_config(self, name: str, changes: Mapping[str, str | None]) -> None: ...

    def id_maps(self) -> list[IdMapUse]: ...


@dataclass(frozen=True)
class BackupStep:
    """What a pass did (or would do) about one container's backup."""

    name: str
    action: str  # backed up | would back up | failed
    ok: bool = True
    message: str = ""


def opted_in(valid: Sequence[Loaded]) -> frozenset[str]:
    """The containers whose request asks for backups (`backup: true`)."""
    return frozenset(
        lo.request.name
        for lo in valid
        if isinstance(lo.request, ContainerRequest) and lo.request.backup
    )


def run_backups(
    lxd: Exporter,
    policy: Policy,
    instances: Sequence[Instance],
    chosen: frozenset[str],
    *,
    now: datetime,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda _l: None,
) -> tuple[BackupStep, ...]:
    """Export the due ones of INSTANCES (ssp's, as the policy picks them; CHOSEN: the opted-in
    ones) and prune what `keep` lets go. See the module's docstring."""
    backup = policy.backup
    if backup is None:
        return ()
    managed = [i.name for i in instances if i.managed]
    names = plan.wanted(backup, managed, chosen)
    if not names:
        return ()
    try:
        existing = plan.by_container(backupdir.listing(backup.target))
    except SspError as e:
        return tuple(_failed(n, str(e)) for n in names)
    todo = plan.due(backup, names, existing, now)
    if dry_run:
        return tuple(BackupStep(d.name, "would back up", message=_since(d)) for d in todo)
    why = backupdir.writable(backup.target) if todo else ""
    if why:
        return tuple(_failed(d.name, why) for d in todo)
    optimized = _optimized(lxd, policy.lxd.pool)
    steps = []
    for d in todo:
        file = plan.file_name(d.name, now)
        path = str(PurePosixPath(backup.target) / file)
        try:
            size = lxd.export(d.name, path, optimized)
        except (LxdError, OSError) as e:
            steps.append(_failed(d.name, str(e)))
            log(f"{d.name}: backup failed: {e}")
            continue
        kept = [(now, file), *existing.get(d.name, ())]
        removed = plan.to_prune(backup, kept)
        for old in removed:
            backupdir.remove(backup.target, old)
        note = f" (removed {len(removed)} older)" if removed else ""
        steps.append(BackupStep(d.name, "backed up", message=f"{path}, {size} bytes{note}"))
        log(f"{d.name}: backed up to {path}")
    return tuple(steps)


def _failed(name: str, why: str) -> BackupStep:
    return BackupStep(name, "failed", False, f"not backed up: {why}; retried on the next pass")


def _since(d: plan.Due) -> str:
    return f"last one {d.last:%Y-%m-%d}" if d.last else "none yet"


def _optimized(lxd: Exporter, pool: str) -> bool:
    """Whether LXD can write the pool's own format (zfs, btrfs); a plain tarball otherwise."""
    try:
        found = lxd.storage_pool(pool)
    except LxdError:
        return False
    return found is not None and found.driver in plan.OPTIMIZED_DRIVERS


# --- restore ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Restored:
    name: str
    source: str  # the tarball
    managed: bool  # still ssp's (restored under its own name) or the admin's (a copy)
    # Its host IDs, when the backup's were another instance's (the original beside a copy):
    # "" kept, else what was done about them, said to the admin.
    ids: str = ""


def backups_of(policy: Policy, name: str) -> list[str]:
    """NAME's backups in the target, newest first, as paths."""
    if policy.backup is None:
        raise UsageError("the policy has no backup section: there are no backups to list")
    found = plan.by_container(backupdir.listing(policy.backup.target)).get(name, [])
    return [str(PurePosixPath(policy.backup.target) / file) for _, file in found]


def restore(
    lxd: Importer,
    policy: Policy,
    name: str,
    as_name: str = "",
    file: str = "",
    *,
    id_spans: tuple[IdRange, ...] = idranges.LXD_DEFAULT_SPANS,
    pin_ids: bool = True,
) -> Restored:
    """NAME's newest backup (or FILE) back as a new, stopped container AS_NAME (default:
    NAME, which must be gone). A copy under another name is left to the admin: its ssp
    labels go, so ssp neither retires nor deletes it, nor counts it in anyone's quota.

    The backup holds the host ID block its container had; where another instance holds it
    now (the original, beside a copy or a drill), the restored one is given a free block of
    ID_SPANS, or, where the project forbids ssp's choice (PIN_IDS false), the admin is told
    how to give it one: two containers in one block are root in each other on the host."""
    new = as_name or name
    if not file:
        found = backups_of(policy, name)
        if not found:
            where = policy.backup.target if policy.backup else "the backup folder"
            raise UsageError(f"no backup of {name!r} in {where}")
        file = found[0]
    if lxd.exists(new):
        raise UsageError(
            f"a container {new!r} exists already in LXD project {policy.lxd.project!r}; "
            "restore it under another name with --as NEW"
        )
    lxd.import_backup(file, new, policy.lxd.pool)
    copy = new != name
    if copy:
        lxd.set_config(new, {state.MANAGED: None, state.STATE: None})
    ids = _own_block(lxd, policy.lxd.project, new, id_spans, pin_ids)
    return Restored(new, file, not copy, ids)


def _own_block(
    lxd: Importer, project: str, name: str, spans: tuple[IdRange, ...], pin_ids: bool
) -> str:
    """Give restored instance NAME a host ID block of its own (see `restore`); what was done."""
    uses = lxd.id_maps()
    clash = idranges.shared_with(uses, project, name)
    if not clash:
        return ""
    if not pin_ids:
        return (
            f"its host IDs are {clash}: before starting it, give it a block of its own as "
            "`ssp doctor` says (idmaps.overlap)"
        )
    taken = [r for u in uses if (u.project, u.name) != (project, name) for r in u.ranges()]
    block = idranges.Allocator(spans, taken).new()
    if block is None:
        return f"its host IDs are {clash}, and no free block is left: see `ssp doctor`"
    # The map it ran with elsewhere is dropped too: it has not run here, and its first start
    # re-owns its files from the map on disk (volatile.last_state.idmap) to the new block.
    lxd.set_config(
        name,
        {
            idranges.BASE: str(block.base),
            idranges.SIZE_KEY: str(block.size),
            idranges.CURRENT: None,
        },
    )
    return f"its host IDs were {clash}: given {block} (its first start re-owns its files)"
