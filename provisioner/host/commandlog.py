"""The comment commands' ledger: when each container was last given `/ssp` commands.

The rate limit (`policy.commands.per_hour`) counts a container's commands over the last hour,
and the count must outlive the workflow's job, so it is kept on the host, in one small JSON
file (default /var/lib/ssp/commands.json): container name -> the Unix times of its commands.
Why not the usage database: that file is the sampler's (a root timer writes it every few
minutes and prunes it by its own rule), while this one is the runner's alone, read and
written only under the host lock, so no second writer ever races it; and it stays tiny,
since each write keeps only the last hour. It is replaced atomically (owner-only), so a
crash leaves the old or the new one. A ledger that cannot be read refuses the command
(LedgerError) rather than counting from zero.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from provisioner.values.errors import LedgerError


def read(path: Path) -> dict[str, list[float]]:
    """Each container's command times; an absent ledger is empty."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise LedgerError(f"cannot read the commands ledger {path}: {type(e).__name__}") from None
    if not isinstance(doc, dict):
        raise LedgerError(f"the commands ledger {path} is not a JSON object")
    found: dict[str, list[float]] = {}
    for name, times in doc.items():
        if isinstance(times, list):
            found[str(name)] = [float(t) for t in times if isinstance(t, int | float)]
    return found


def write(path: Path, times: Mapping[str, Sequence[float]]) -> None:
    """Replace the ledger with TIMES (containers without any are left out)."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".commands-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: mode 0600
                json.dump({k: list(v) for k, v in sorted(times.items()) if v}, f)
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise LedgerError(f"cannot write the commands ledger {path}: {e.strerror}") from None
