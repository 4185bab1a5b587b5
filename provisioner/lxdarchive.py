"""The LXD adapter's export: an instance as an `lxc export`-style backup tarball.

`ArchivingLxd` is the `Lxd` adapter plus `export`, which maintenance needs before it deletes
a container the policy asks to keep a copy of. LXD makes the backup (the instance and its
snapshots, gzip-compressed), ssp streams it into a file the host's admin chose in the policy,
and the backup is removed from LXD's own storage again, whatever happened.

Uses the adapter's connection and error translation; imports no LXD library itself.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from provisioner.errors import LxdError
from provisioner.lxd import Lxd
from provisioner.lxdwire import REQUEST_TIMEOUT_S

_CHUNK = 1 << 20


class ArchivingLxd(Lxd):
    """`Lxd` with `export` (provisioner.maintain.Archiver)."""

    def export(self, name: str, path: str) -> int:
        target = Path(path)
        if target.exists():
            raise LxdError(f"export of {name!r}: {path} exists already; it is never overwritten")
        backup = f"ssp-export-{secrets.token_hex(4)}"
        node = self._api.instances[name].backups
        body = {
            "name": backup,
            "instance_only": False,
            "optimized_storage": False,
            "compression_algorithm": "gzip",
        }
        self._send(f"back up instance {name!r}", node.post, json=body)
        partial = target.with_name(target.name + ".partial")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            size = 0
            with self._errors(f"export instance {name!r} to {path}"):
                response = node[backup].export.get(stream=True, timeout=REQUEST_TIMEOUT_S)
                # Owner-only: a container's whole disk, home directories included.
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    for chunk in response.iter_content(_CHUNK):
                        out.write(chunk)
                        size += len(chunk)
                partial.rename(target)
            return size
        finally:
            partial.unlink(missing_ok=True)
            self._send(f"remove the backup of {name!r}", node[backup].delete)
