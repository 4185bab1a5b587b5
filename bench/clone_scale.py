"""Clone cost at a lab's scale: each step of a new container from a big base, dir vs btrfs.

A synthetic base of realistic shape (the demo's Common-Server plus FILES files holding MB
megabytes in all, spread over folders like a CUDA/conda tree) is made once per pool, then,
per pool, CLONES times: the copy from its snapshot; a first start without an isolated map
(the boot alone); a first start with one (LXD 5.0.2 re-owns every file: re-own + boot); the
in-container setup ssp does (the owner's user, ~/.ssh, authorized_keys, sudoers); and the
warm pool's claim (provisioner.applying.warm) of a clone made ahead: a changed map
(`raw.idmap`, the share) started as ssp's claim starts it (files recorded as shifted) and as
LXD alone would (re-owned again). Then merge -> comment: one merged request (with the share)
applied by an `ssp apply` process that comments on the pull request in the fake GitHub, with
and without a warm pool made ahead by `ssp maintain`. Everything is in throwaway projects and a
throwaway pool (`btrfs` on a loop file LXD makes itself), the base a uniquely named instance of
the default project (policy images clone from there), all removed at the end. Prints one
table; see bench/README.md.

    .venv/bin/python bench/clone_scale.py                       # 50,000 files, 1,000 MB
    .venv/bin/python bench/clone_scale.py --files 200000 --mb 5000 --pools btrfs
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fakegithub import FAKE_REPO, FakeGitHub  # noqa: E402
from integration.conftest import throwaway_project  # noqa: E402
from integration.helpers import NOW, LabRepo, host_id_spans  # noqa: E402

from provisioner.lxd.api import Lxd  # noqa: E402
from provisioner.lxd.wire import socket_path  # noqa: E402
from provisioner.values import idranges  # noqa: E402

GOLDEN = "Common-Server/golden"
WINDOW = (43000, 43999)  # apart from the tests' 40000-40999 and apply_vs_manual's 41000-41999
SETUP = (
    "groupadd -f -g 1001 alice && useradd -m -u 1001 -g 1001 -s /bin/bash alice"
    " && install -d -m 700 -o 1001 -g 1001 /home/alice/.ssh"
    " && echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench bench' > /home/alice/.ssh/authorized_keys"
    " && chown 1001:1001 /home/alice/.ssh/authorized_keys"
    " && echo 'alice ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ssp-alice"
)


def lxc(*args: str) -> str:
    return subprocess.run(["lxc", *args], capture_output=True, text=True, check=True).stdout


def isolate(project: str, name: str) -> None:
    """An isolated map in a block ssp's allocator finds free (as ssp pins its containers'):
    left to LXD 5.0.2, the block can be one another instance already holds (bench/README.md,
    "Host ID blocks"), and other sessions' containers on this daemon would then be moved."""
    taken = [r for use in Lxd("default").id_maps() for r in use.ranges()]
    block = idranges.Allocator(host_id_spans(), taken).new()
    assert block is not None, "no free host ID block"
    keys = [f"{idranges.BASE}={block.base}", f"{idranges.SIZE_KEY}={block.size}"]
    lxc("config", "set", "--project", project, name, "security.idmap.isolated=true", *keys)


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


def one_pool(project: str, pool: str, base: str, clones: int) -> dict[str, list[float]]:
    """Each step CLONES times from BASE's snapshot, in PROJECT, on POOL."""
    at = ["--project", project]
    tag = project.rsplit("-", 1)[-1]
    src = ["--project", "default", "--target-project", project, "-s", pool]
    times: dict[str, list[float]] = {}

    def note(step: str, seconds: float) -> None:
        times.setdefault(step, []).append(seconds)

    for n in range(clones):
        plain, iso, warm = f"p{n}-{tag}", f"i{n}-{tag}", f"w{n}-{tag}"
        note("copy", timed("copy", f"{base}/golden", plain, *src))
        note("first start, shared map (boot)", timed("start", *at, plain))
        lxc("stop", *at, "-f", plain)
        lxc("copy", f"{base}/golden", iso, *src)
        isolate(project, iso)
        note("first start, isolated map (re-own + boot)", timed("start", *at, iso))
        note("setup inside (user, keys, sudoers)", timed("exec", *at, iso, "--", "sh", "-c", SETUP))
        # A warm clone: made ahead (copied, isolated, started once), then claimed with the
        # share's raw.idmap, as ssp's claim does it and as LXD alone would.
        lxc("copy", f"{base}/golden", warm, *src)
        isolate(project, warm)
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


def ssp(lab: LabRepo, command: str, env: dict[str, str], steps: Path | None = None) -> float:
    """Seconds one `ssp COMMAND --repo LAB` process takes; it must succeed. With STEPS, run
    through bench/steps.py, which writes where the time went there (its timers' cost is
    a few microseconds a call)."""
    argv = [sys.executable, "-m", "provisioner.cli", command, "--repo", str(lab.root)]
    if steps is not None:
        argv[1:3] = [str(ROOT / "bench" / "steps.py"), str(steps)]
    launched = time.time()
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"ssp {command} failed ({done.returncode}): {done.stdout[-3000:]} {done.stderr[-2000:]}"
        )
    if steps is not None:
        report = json.loads(steps.read_text())
        report["launch_to_script_s"] = report["process_start_unix"] - launched
        report["wall_s"] = took
        steps.write_text(json.dumps(report))
    return took


def merge_to_comment(
    socket: str, pool: str, base: str, warm: bool, steps: Path | None = None
) -> float:
    """Seconds from a merged request to its comment: one `ssp apply` process, as apply.yml
    runs it after the merge, against the fake GitHub; with WARM, `ssp maintain` made one
    warm clone before the merge (untimed: it runs ahead, on its timer)."""
    with (
        tempfile.TemporaryDirectory(prefix="ssp-bench-") as tmp,
        throwaway_project(socket, "ssp-bench") as project,
        FakeGitHub() as gh,
    ):
        gh.add_repo(FAKE_REPO)
        suffix = project.rsplit("-", 1)[-1]
        lab = LabRepo.make(Path(tmp), project, suffix, window=WINDOW)
        policy = lab.policy()
        lab.images = {"bench": {"clone": f"{base}/golden", "description": "the bench's base"}}
        lab.settings = {
            "defaults": {**policy["defaults"], "image": "bench"},
            "lxd": {**policy["lxd"], "pool": pool, "warm_pool": 1 if warm else 0},
        }
        lab.write()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SSP_NOW": NOW.isoformat(),
            "SSP_LOCK": f"{tmp}/ssp.lock",
        }
        if warm:
            ssp(lab, "maintain", env)
        request = lab.container(f"thesis-{suffix}", shares=["share"])
        lab.write(request)
        pull = gh.add_pull(FAKE_REPO, author="alice", title="Add a container", files=[request[0]])
        merge = secrets.token_hex(20)
        gh.merge_pull(FAKE_REPO, pull.number, merge_commit_sha=merge)
        github = {
            "GITHUB_TOKEN": gh.token,
            "GITHUB_REPOSITORY": FAKE_REPO,
            "GITHUB_SHA": merge,
            "GITHUB_API_URL": gh.url,
        }
        took = ssp(lab, "apply", env | github, steps)
        if len(gh.comments_on(FAKE_REPO, pull.number)) != 1:
            raise RuntimeError("ssp apply posted no comment on the merged pull request")
        return took


def make_base(pool: str, files: int, megabytes: int) -> str:
    """The big base, in the default project (where policy images clone from), on POOL."""
    base = f"SspBench-{secrets.token_hex(3)}"
    lxc("copy", GOLDEN, base, "--project", "default", "-s", pool)
    lxd_dir = Path(os.environ.get("LXD_DIR", "/var/lib/lxd"))
    rootfs = lxd_dir / "storage-pools" / pool / "containers" / base / "rootfs"
    fill(rootfs, files, megabytes)
    lxc("snapshot", "--project", "default", base, "golden")
    return base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=50_000, help="files added (50,000)")
    parser.add_argument("--mb", type=int, default=1000, help="megabytes in them (1,000)")
    parser.add_argument("--clones", type=int, default=3, help="clones per step (3)")
    parser.add_argument("--pools", default="dir,btrfs", help="pool drivers (dir,btrfs)")
    parser.add_argument("--comments", type=int, default=2, help="merge-to-comment runs (2)")
    parser.add_argument("--btrfs-size", default="30GiB", help="the btrfs loop file's size")
    args = parser.parse_args(argv)
    socket = socket_path(lxd_dir=os.environ.get("LXD_DIR"))
    results: dict[str, dict[str, list[float]]] = {}
    breakdowns: dict[str, dict[str, Any]] = {}
    for driver in args.pools.split(","):
        pool = f"ssp-bench-{driver}-{secrets.token_hex(3)}"
        size = [f"size={args.btrfs_size}"] if driver != "dir" else []
        lxc("storage", "create", pool, driver, *size)
        base = ""
        try:
            base = make_base(pool, args.files, args.mb)
            with throwaway_project(socket, "ssp-bench") as project:
                results[driver] = one_pool(project, pool, base, args.clones)
            for warm in (False, True):
                step = "merge -> comment, " + ("warm pool" if warm else "no warm pool")
                took: list[float] = []
                runs: list[dict[str, Any]] = []
                for _ in range(args.comments):
                    trace = Path(tempfile.gettempdir()) / f"ssp-bench-steps-{secrets.token_hex(4)}"
                    took.append(merge_to_comment(socket, pool, base, warm, trace))
                    runs.append(json.loads(trace.read_text()))
                    trace.unlink()
                results[driver][step] = took
                # The run nearest the median, broken down (bench/steps.py).
                middle = statistics.median_low(took)
                breakdowns[f"{driver}, {step}"] = runs[took.index(middle)]
            print(driver, results[driver], flush=True)
        finally:
            if base:
                lxc("delete", "--project", "default", "-f", base)
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
    for title, report in breakdowns.items():
        print(f"\n{title}: {report['wall_s']:.2f} s, where it went")
        print("\n".join(breakdown(report)))
    return 0


def breakdown(report: dict[str, Any]) -> list[str]:
    """One `ssp apply` process's time (bench/steps.py's report) as Markdown rows: the
    interpreter, the import, ssp's phases, the rest; then the LXD calls within the phases."""
    wall = report["wall_s"]
    phases = report["phases_s"]
    parts = {
        "interpreter start (to the script's first line)": report["launch_to_script_s"],
        "import of ssp (cli, commands, adapters)": report["script_to_import_s"]
        + report["import_s"],
        **phases,
        "the rest of ssp's main (parsing, lock, report, notices)": report["main_s"]
        - sum(phases.values()),
    }
    parts["exit (interpreter shutdown)"] = wall - sum(parts.values())
    rows = ["| where | calls | seconds | share |", "|---|---:|---:|---:|"]
    rows += [f"| {k} | | {v:.2f} | {v / wall:.0%} |" for k, v in parts.items()]
    lxd = sorted(report["lxd"].items(), key=lambda kv: -kv[1]["s"])
    for name, v in lxd:
        rows.append(f"| … in LXD `{name}` | {v['calls']} | {v['s']:.2f} | {v['s'] / wall:.0%} |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
