"""Clone cost at a lab's scale: each step of a new container from a big base, dir vs btrfs.

A synthetic base of realistic shape (the demo's Common-Server plus FILES files holding MB
megabytes in all, spread over folders like a CUDA/conda tree) is made once per pool, then,
per pool, CLONES times: the copy from its snapshot; a first start without an isolated map
(the boot alone); a first start with one (LXD 5.0.2 re-owns every file: re-own + boot); the
in-container setup ssp does (the owner's user, ~/.ssh, authorized_keys, sudoers); and the
warm pool's claim (provisioner.applying.warm) of a clone made ahead: a changed map
(`raw.idmap`, the share) started as ssp's claim starts it (files recorded as shifted) and as
LXD alone would (re-owned again). Everything is in a throwaway project and pool (`btrfs` on a
loop file LXD makes itself), removed at the end. Prints one table; see bench/README.md.

    .venv/bin/python bench/clone_scale.py                       # 50,000 files, 1,000 MB
    .venv/bin/python bench/clone_scale.py --files 200000 --mb 5000 --pools btrfs
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from integration.conftest import throwaway_project  # noqa: E402

from provisioner.lxd.wire import socket_path  # noqa: E402

GOLDEN = "Common-Server/golden"
SETUP = (
    "groupadd -f -g 1001 alice && useradd -m -u 1001 -g 1001 -s /bin/bash alice"
    " && install -d -m 700 -o 1001 -g 1001 /home/alice/.ssh"
    " && echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench bench' > /home/alice/.ssh/authorized_keys"
    " && chown 1001:1001 /home/alice/.ssh/authorized_keys"
    " && echo 'alice ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ssp-alice"
)


def lxc(*args: str) -> str:
    return subprocess.run(["lxc", *args], capture_output=True, text=True, check=True).stdout


def timed(*args: str) -> float:
    """Seconds one `lxc` command takes."""
    start = time.perf_counter()
    lxc(*args)
    return time.perf_counter() - start


def pool_source(pool: str) -> Path:
    return Path("/var/lib/lxd/storage-pools") / pool


def fill(rootfs: Path, files: int, megabytes: int) -> None:
    """FILES files of MEGABYTES in all under /opt/bench, 500 to a folder, owned as /etc is."""
    owner = (rootfs / "etc").stat()
    size = max(1, megabytes * 2**20 // max(files, 1))
    chunk = os.urandom(size)
    base = rootfs / "opt" / "bench"
    for i in range(files):
        folder = base / f"pkg{i // 500:04d}"
        if i % 500 == 0:
            folder.mkdir(parents=True)
            os.chown(folder, owner.st_uid, owner.st_gid)
        path = folder / f"f{i:06d}.so"
        path.write_bytes(chunk)
        os.chown(path, owner.st_uid, owner.st_gid)
    os.sync()


def one_pool(
    project: str, pool: str, files: int, megabytes: int, clones: int
) -> dict[str, list[float]]:
    at = ["--project", project]
    base = "bigbase"
    lxc("copy", GOLDEN, base, "--project", "default", "--target-project", project, "-s", pool)
    fill(pool_source(pool) / "containers" / f"{project}_{base}" / "rootfs", files, megabytes)
    lxc("snapshot", *at, base, "golden")
    tag = project.rsplit("-", 1)[-1]
    times: dict[str, list[float]] = {}

    def note(step: str, seconds: float) -> None:
        times.setdefault(step, []).append(seconds)

    for n in range(clones):
        plain, iso, warm = f"p{n}-{tag}", f"i{n}-{tag}", f"w{n}-{tag}"
        src = f"{base}/golden"
        note("copy", timed("copy", *at, src, plain, "-s", pool))
        note("first start, shared map (boot)", timed("start", *at, plain))
        lxc("stop", *at, "-f", plain)
        lxc("copy", *at, src, iso, "-s", pool)
        lxc("config", "set", *at, iso, "security.idmap.isolated=true")
        note("first start, isolated map (re-own + boot)", timed("start", *at, iso))
        note(
            "setup inside (user, keys, sudoers)",
            timed("exec", *at, iso, "--", "sh", "-c", SETUP),
        )
        # A warm clone: made ahead (copied, isolated, started once), then claimed with the
        # share's raw.idmap, as ssp's claim does it and as LXD alone would.
        lxc("copy", *at, src, warm, "-s", pool)
        lxc("config", "set", *at, warm, "security.idmap.isolated=true")
        lxc("start", *at, warm)
        lxc("stop", *at, "-f", warm)
        lxc("config", "set", *at, warm, "raw.idmap=both 1001 1001")
        upcoming = lxc("config", "get", *at, warm, "volatile.idmap.next").strip()
        lxc("config", "set", *at, warm, f"volatile.last_state.idmap={upcoming}")
        note("claimed warm clone, start (ssp: no re-own)", timed("start", *at, warm))
        lxc("stop", *at, "-f", warm)
        lxc("config", "set", *at, warm, "raw.idmap=both 1002 1002")
        note("changed map, start (LXD re-owns)", timed("start", *at, warm))
        for name in (plain, iso, warm):
            lxc("delete", *at, "-f", name)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=50_000, help="files added (50,000)")
    parser.add_argument("--mb", type=int, default=1000, help="megabytes in them (1,000)")
    parser.add_argument("--clones", type=int, default=3, help="clones per step (3)")
    parser.add_argument("--pools", default="dir,btrfs", help="pool drivers (dir,btrfs)")
    parser.add_argument("--btrfs-size", default="30GiB", help="the btrfs loop file's size")
    args = parser.parse_args(argv)
    socket = socket_path(lxd_dir=os.environ.get("LXD_DIR"))
    results: dict[str, dict[str, list[float]]] = {}
    for driver in args.pools.split(","):
        pool = f"ssp-bench-{driver}-{secrets.token_hex(3)}"
        size = [f"size={args.btrfs_size}"] if driver != "dir" else []
        lxc("storage", "create", pool, driver, *size)
        try:
            with throwaway_project(socket, "ssp-bench") as project:
                results[driver] = one_pool(project, pool, args.files, args.mb, args.clones)
        finally:
            lxc("storage", "delete", pool)
    print(f"base: demo Common-Server + {args.files} files, {args.mb} MB; {args.clones} clones")
    print(f"load average {os.getloadavg()[0]:.1f}; median seconds (min-max)")
    steps = list(next(iter(results.values())))
    print(f"{'step':<46}" + "".join(f"{d:>18}" for d in results))
    for step in steps:
        cells = []
        for times in results.values():
            t = times[step]
            cells.append(f"{statistics.median(t):6.2f} ({min(t):.2f}-{max(t):.2f})")
        print(f"{step:<46}" + "".join(f"{c:>18}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
