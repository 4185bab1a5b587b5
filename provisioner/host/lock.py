"""The host lock: one apply at a time on a GPU host, whatever started it.

GitHub's `concurrency` serialises workflow runs, but an admin running `ssp apply` by hand
would not be. `flock` is released by the kernel when its holder dies, so a lock left by a
crashed run can never block the next one; the file records who holds it, so a live holder
is named in the error instead of leaving the next run to guess.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from provisioner.values.errors import LockHeldError


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return "an unknown process"
    pid, _, since = text.partition(" ")
    if not pid.isdigit():
        return "an unknown process"
    alive = Path(f"/proc/{pid}").exists()
    age = f", for {int(time.time() - float(since))} s" if since.replace(".", "").isdigit() else ""
    return f"pid {pid}{age}" + ("" if alive else " (gone: its lock is held by a child)")


@contextmanager
def host_lock(path: Path, wait_s: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on `path`; wait up to `wait_s`, then raise LockHeldError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockHeldError(
                        f"another apply holds {path} ({_holder(path)}); try again when it ends"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {time.time():.0f}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
