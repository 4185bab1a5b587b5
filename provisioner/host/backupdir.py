"""The backup target folder on the host (a mount of another machine's disks): what is in it,
whether it can be written, and removing old backups. Nothing else on the host is touched:
only files whose names are backups' (provisioner.planning.backups) are ever removed.
"""

from __future__ import annotations

import os
from pathlib import Path

from provisioner.values.errors import SspError


def listing(folder: str) -> list[str]:
    """The file names in FOLDER; [] when it does not exist yet."""
    path = Path(folder)
    if not path.exists():
        return []
    try:
        return sorted(p.name for p in path.iterdir() if p.is_file())
    except OSError as e:
        raise SspError(f"cannot list the backup folder {folder}: {e.strerror or e}") from e


def writable(folder: str) -> str:
    """Why FOLDER cannot take a backup ("" when it can)."""
    path = Path(folder)
    if not path.is_dir():
        return f"{folder} is not a folder (is the backup disk mounted?)"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{folder} is not writable by this user"
    return ""


def remove(folder: str, file: str) -> None:
    """Remove one old backup; a file that is already gone is fine."""
    (Path(folder) / file).unlink(missing_ok=True)
