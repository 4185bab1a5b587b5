"""The GPU usage database: `ssp sample`'s readings in an SQLite file on the host.

One file (default /var/lib/ssp/usage.sqlite), opened through the standard library's sqlite3.
Its schema is versioned with `PRAGMA user_version` and migrated forward on open, in one
transaction per step, so a crash mid-migration leaves the previous version; a file written by
a newer ssp is refused rather than guessed at. It runs in WAL mode: `ssp usage` and
`ssp maintain` read a consistent snapshot while the timer's sampler writes, and neither waits
on the other (a writer waits up to `BUSY_MS` for another writer). Its size is bounded by
pruning readings older than the policy's `usage.keep_days` at every sample.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from provisioner.values.errors import UsageDbError
from provisioner.values.usage import IdleGpu, Reading

BUSY_MS = 10_000

# Each step takes the database from version i to i + 1; never edit a step once released,
# add one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE readings (
        at INTEGER NOT NULL,
        host TEXT NOT NULL,
        pci TEXT NOT NULL,
        seconds INTEGER NOT NULL,
        utilization INTEGER,
        memory_used INTEGER NOT NULL,
        memory_total INTEGER NOT NULL,
        processes INTEGER NOT NULL,
        owner TEXT NOT NULL,
        container TEXT NOT NULL,
        PRIMARY KEY (host, at, pci)
    ) WITHOUT ROWID;
    CREATE INDEX readings_at ON readings (at);
    """,
)
LATEST = len(MIGRATIONS)

# Written out whole (no string building): values only ever travel as parameters.
_INSERT = (
    "INSERT OR REPLACE INTO readings (at, pci, seconds, utilization, memory_used, memory_total, "
    "processes, owner, container, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The last reading before a time that ends a holder's quiet stretch, and the stretch after it.
_BREAK = (
    "SELECT MAX(at) FROM readings WHERE host = ? AND pci = ? AND at < ? AND (utilization IS NULL "
    "OR utilization > ? OR container != ? OR owner != ?)"
)
_STRETCH = (
    "SELECT MIN(at), MAX(utilization) FROM readings WHERE host = ? AND pci = ? AND at > ? "
    "AND at < ?"
)
_SELECT = (
    "SELECT at, pci, seconds, utilization, memory_used, memory_total, processes, owner, "
    "container, host FROM readings WHERE at >= ? AND at < ? ORDER BY at, host, pci"
)


class UsageDb:
    """An open usage database. Use as a context manager, or call `close()`."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if not create and not path.exists():
            raise UsageDbError(
                f"no usage database at {path}: `ssp sample` (run by the ssp-sample.timer) "
                "creates it; install the timer with runner/install-sample-timer.sh"
            )
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            # isolation_level=None: transactions are begun and ended here, explicitly.
            self.conn = sqlite3.connect(path, timeout=BUSY_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise UsageDbError(f"cannot open the usage database {path}: {e}") from e
        try:
            self._setup()
        except sqlite3.Error as e:
            self.conn.close()
            raise UsageDbError(f"usage database {path}: {e}") from e
        except UsageDbError:
            self.conn.close()
            raise

    def _setup(self) -> None:
        self.conn.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
        self._refuse_newer(self.version)  # before anything is written to a file not ours
        mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise UsageDbError(f"usage database {self.path}: WAL mode refused ({mode})")
        # NORMAL is durable across application crashes in WAL mode; a power cut may lose the
        # last pass, which the next one replaces.
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        # Readers must not wait on the sampler: look first, take the write lock only to
        # migrate (and look again under it: another process may have migrated meanwhile).
        while self.version < LATEST:
            self.conn.execute("BEGIN IMMEDIATE")  # one migrator at a time
            try:
                current = self.version
                self._refuse_newer(current)
                if current == LATEST:
                    self.conn.execute("COMMIT")
                    return
                self._run_script(MIGRATIONS[current])
                self.conn.execute(f"PRAGMA user_version = {current + 1}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def _refuse_newer(self, current: int) -> None:
        if current > LATEST:
            raise UsageDbError(
                f"usage database {self.path} has schema version {current}, newer than "
                f"this ssp knows ({LATEST}): upgrade ssp on this host"
            )

    def _run_script(self, script: str) -> None:
        # executescript would COMMIT the open transaction first; run statement by statement.
        for statement in script.split(";"):
            if statement.strip():
                self.conn.execute(statement)

    def record(self, readings: Iterable[Reading], *, prune_before: int | None = None) -> int:
        """Store READINGS and drop those older than PRUNE_BEFORE, in one transaction;
        returns how many old readings were pruned."""
        rows = [
            (
                r.at,
                r.pci,
                r.seconds,
                r.utilization,
                r.memory_used,
                r.memory_total,
                r.processes,
                r.owner,
                r.container,
                r.host,
            )
            for r in readings
        ]
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany(_INSERT, rows)
                pruned = 0
                if prune_before is not None:
                    pruned = self.conn.execute(
                        "DELETE FROM readings WHERE at < ?", (prune_before,)
                    ).rowcount
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise UsageDbError(f"writing to the usage database {self.path}: {e}") from e
        return pruned

    def last_at(self, host: str) -> int | None:
        """When HOST was last sampled (Unix seconds), or None."""
        row = self.conn.execute("SELECT MAX(at) FROM readings WHERE host = ?", (host,)).fetchone()
        return None if row[0] is None else int(row[0])

    def readings(self, since: int, until: int) -> list[Reading]:
        """Every reading with SINCE <= at < UNTIL, oldest first (one snapshot of the file)."""
        try:
            cursor = self.conn.execute(_SELECT, (since, until))
            # The columns are Reading's fields, in order, with SQLite's own int and str.
            return [Reading(*row) for row in cursor]
        except sqlite3.Error as e:
            raise UsageDbError(f"reading the usage database {self.path}: {e}") from e

    def quiet_from(self, gpu: IdleGpu, threshold: int, before: int) -> tuple[int, int] | None:
        """Where GPU's quiet stretch under its holder really began, looking back from BEFORE
        (the first reading of the stretch already read): the first reading after the last
        one that breaks it (utilisation unknown or above THRESHOLD, another holder), and the
        highest utilisation from there to BEFORE; None when there is nothing before BEFORE."""
        key = (gpu.host, gpu.pci)
        try:
            broke = self.conn.execute(_BREAK, (*key, before, threshold, gpu.container, gpu.owner))
            after = broke.fetchone()[0]
            row = self.conn.execute(_STRETCH, (*key, -1 if after is None else after, before))
            first, peak = row.fetchone()
        except sqlite3.Error as e:
            raise UsageDbError(f"reading the usage database {self.path}: {e}") from e
        return None if first is None else (int(first), int(peak or 0))

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> UsageDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
