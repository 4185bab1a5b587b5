"""Which TCP ports already listen on this host (from /proc/net), so a new forward avoids them.

LXD would otherwise accept a proxy device on a busy port and only fail when the container
starts ("bind: address already in use"). Reading /proc is the host's own view, independent
of which process or container holds the port.
"""

from __future__ import annotations

from pathlib import Path

_LISTEN = "0A"


def listening_ports(proc: Path = Path("/proc")) -> frozenset[int]:
    ports: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / name).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return frozenset(ports)
