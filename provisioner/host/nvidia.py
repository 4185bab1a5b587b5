"""What LXD's NVIDIA runtime needs from this host: the loaded driver and nvidia-container-cli.

`nvidia.runtime=true` makes LXD run libnvidia-container's `nvidia-container-cli` when a
container starts, to inject the host driver's libraries and tools; without the tool LXD
refuses even to store the key ("The NVIDIA container tools couldn't be found", seen on LXD
5.0.2). LXD from the snap carries its own copy; a distribution's LXD runs the one on PATH.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SNAP_CLI = Path("/snap/lxd/current/bin/nvidia-container-cli")


def container_cli(path: str | None = None, snap_cli: Path = SNAP_CLI) -> str | None:
    """Where LXD would find nvidia-container-cli, or None. PATH by default (tests pass one)."""
    found = shutil.which("nvidia-container-cli", path=path)
    if found:
        return found
    return str(snap_cli) if snap_cli.exists() else None


def driver_loaded(proc: Path = Path("/proc")) -> bool:
    """Whether the NVIDIA kernel driver is loaded (it publishes /proc/driver/nvidia/version)."""
    return (proc / "driver" / "nvidia" / "version").exists()
