"""The LXD adapter's backups: an instance out as an `lxc export`-style tarball, and one back in
as a new instance (`lxc import`), through LXD's backups API.

Export: POST /1.0/instances/<name>/backups, then GET .../backups/<b>/export streamed into the
file; the backup LXD kept is removed again whatever happened. Import: POST /1.0/instances with
the tarball as the body (`application/octet-stream`), named by `X-LXD-name` (LXD's
`backup_override_name`) and put on `X-LXD-pool`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from provisioner.lxd.conn import LxdConnection
from provisioner.lxd.wire import REQUEST_TIMEOUT_S
from provisioner.values.errors import LxdError

_CHUNK = 1 << 20  # an export is streamed to its file a MiB at a time


class LxdBackups(LxdConnection):
    def export(self, name: str, path: str, optimized: bool = False) -> int:
        """The instance and its snapshots as an `lxc export`-style tarball at PATH (a file
        that must not exist yet; owner-only), through a backup LXD makes and ssp removes
        again, whatever happened. OPTIMIZED: in the pool driver's own format. Returns the
        tarball's size in bytes."""
        target = Path(path)
        if target.exists():
            raise LxdError(f"export of {name!r}: {path} exists already; it is never overwritten")
        backup = f"ssp-export-{secrets.token_hex(4)}"
        node = self._api.instances[name].backups
        body = {
            "name": backup,
            "instance_only": False,
            "optimized_storage": optimized,
            "compression_algorithm": "gzip",
        }
        partial = target.with_name(target.name + ".partial")
        # The folder is checked before LXD does the work: a target that cannot be written
        # fails in a second, not after minutes of copying a disk.
        with self._errors(f"export instance {name!r} to {path}"):
            target.parent.mkdir(parents=True, exist_ok=True)
            # Owner-only: a container's whole disk, home directories included.
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            self._send(f"back up instance {name!r}", node.post, json=body)
            try:
                size = 0
                with self._errors(f"export instance {name!r} to {path}"):
                    response = node[backup].export.get(stream=True, timeout=REQUEST_TIMEOUT_S)
                    with os.fdopen(fd, "wb") as out:
                        fd = -1
                        for chunk in response.iter_content(_CHUNK):
                            out.write(chunk)
                            size += len(chunk)
                    partial.rename(target)
                return size
            finally:
                self._send(f"remove the backup of {name!r}", node[backup].delete)
        finally:
            if fd >= 0:
                os.close(fd)
            partial.unlink(missing_ok=True)

    def import_backup(self, path: str, name: str, pool: str) -> None:
        """A new, stopped instance NAME in this project from the tarball at PATH (as
        `lxc import`), its disks on POOL. NAME must be free."""
        what = f"restore {path} as instance {name!r}"
        headers = {
            "Content-Type": "application/octet-stream",
            "X-LXD-name": name,
            "X-LXD-pool": pool,
        }
        with self._errors(what), Path(path).open("rb") as data:
            self._send(what, self._api.instances.post, data=data, headers=headers)
