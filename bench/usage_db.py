"""Bench: the GPU usage database — sampling cost, a year's size, and `ssp usage` on a year.

1. Sampling cost, per pass and per GPU: NVML's reading through the stand-in
   (tests/nvml_standin.py: pynvml's own structs, no driver), then one pass of the sampling
   flow (`provisioner.flows.sample.sample`: NVML, holders, one transaction into the real
   SQLite file that already holds a year), for 1, 4, 8 and 16 GPUs. LXD's listing is left
   out (a stub returns the holders): it is one `GET /1.0/instances?recursion=2`, which
   bench/noop_apply.py measures.
2. Size after a simulated year: 4 GPUs, a 5-minute interval, 365 days (105,120 passes,
   420,480 readings), with recorded-looking readings (utilisation, memory, holder), written
   one day per transaction; the file is checkpointed (WAL folded in) before it is measured.
3. `ssp usage` on that year: the whole command as a process (`ssp usage --month ...
   --format json`, interpreter start-up and config validation included), the in-process read
   and accounting of one month, of all twelve, and the idle check `ssp maintain` makes.

usage: .venv/bin/python bench/usage_db.py [--days 365] [--reps 5] [--keep FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

import pytest  # noqa: E402
from nvml_standin import RTX_4090_BYTES, NvmlStandin, StandinGpu  # noqa: E402

from provisioner.flows.sample import sample  # noqa: E402
from provisioner.flows.usage import idle_now, member_use  # noqa: E402
from provisioner.gpu.nvml import read_gpus  # noqa: E402
from provisioner.host.usagedb import UsageDb  # noqa: E402
from provisioner.values import state  # noqa: E402
from provisioner.values.policymodels import Policy, UsagePolicy  # noqa: E402
from provisioner.values.state import Instance  # noqa: E402
from provisioner.values.usage import Reading  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)
STEP = 300
GPUS = 4


def median_s(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cards(n: int) -> list[StandinGpu]:
    return [
        StandinGpu(
            "NVIDIA GeForce RTX 4090",
            f"GPU-{i:08x}-0000-4000-8000-000000000000",
            f"00000000:{i + 16:02X}:00.0",
            RTX_4090_BYTES,
            used=(i % 3) * 6000 << 20,
            utilization=(i * 37) % 101,
            compute=[(4000 + i, 6000 << 20)] if i % 3 else [],
        )
        for i in range(n)
    ]


class Stub:
    """The holders, as LXD would list them (one managed container per GPU)."""

    def __init__(self, n: int) -> None:
        self.list = [
            Instance(
                f"box-{i}",
                "Running",
                {state.MANAGED: "true", state.OWNER: f"m{i % 7}"},
                {"gpu0": {"type": "gpu", "pci": f"0000:{i + 16:02x}:00.0"}},
            )
            for i in range(n)
        ]

    def instances(self) -> list[Instance]:
        return self.list

    def members(self) -> dict[str, str]:
        return {}

    def server_name(self) -> str:
        return ""


def year(db: Path, days: int) -> None:
    rng = random.Random(24)
    owners = ["alice", "bob", "carol", ""]
    with UsageDb(db) as store:
        at = int(START.timestamp())
        for _ in range(days):
            rows = []
            for _ in range(86_400 // STEP):
                for g in range(GPUS):
                    owner = owners[g]
                    util = 0 if g == 2 else rng.choice((0, 12, 55, 97, 100))
                    rows.append(
                        Reading(
                            at,
                            f"0000:{g + 16:02x}:00.0",
                            STEP,
                            util,
                            util * 200 << 20,
                            RTX_4090_BYTES,
                            1 if util else 0,
                            owner,
                            f"{owner}-box" if owner else "",
                        )
                    )
                at += STEP
            store.record(rows)
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build the year in this file (kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.keep or Path(tmp) / "usage.sqlite"
        t = time.perf_counter()
        year(db, args.days)
        built = time.perf_counter() - t
        with UsageDb(db, create=False) as store:
            rows = store.count()
        size = db.stat().st_size
        print(f"## a simulated year: {args.days} days x {GPUS} GPUs every {STEP // 60} min")
        print(
            f"readings {rows:,}; file {size / 2**20:.1f} MiB ({size / rows:.0f} B/reading); "
            f"written in {built:.1f} s (one day per transaction)"
        )

        print(f"\n## sampling cost (median of {args.reps} passes)")
        print(
            "| GPUs | NVML read (stand-in) | per GPU | whole pass into the year's file | per GPU |"
        )
        print("|---:|---:|---:|---:|---:|")
        mp = pytest.MonkeyPatch()
        usage = UsagePolicy()
        clock = [START + timedelta(days=args.days)]

        def one_pass(lxd: Stub) -> None:
            clock[0] += timedelta(seconds=STEP)
            sample(lambda: lxd, db, usage, now=clock[0], read_gpus=read_gpus)

        for n in (1, 4, 8, 16):
            NvmlStandin(cards(n)).install(mp)
            read = median_s(read_gpus, args.reps * 4)
            lxd = Stub(n)
            whole = median_s(lambda lxd=lxd: one_pass(lxd), args.reps)
            print(
                f"| {n} | {read * 1e3:.2f} ms | {read / n * 1e3:.3f} ms | "
                f"{whole * 1e3:.2f} ms | {whole / n * 1e3:.2f} ms |"
            )
        mp.undo()

        print("\n## reading a year back")
        policy = Policy.model_validate(
            __import__("yaml").safe_load((ROOT / "config" / "policy.yaml").read_text())
            | {"usage": {"idle_days": 7}}
        )
        month = median_s(lambda: member_use(db, policy, "2026-06"), args.reps)
        months = [f"2026-{m:02d}" for m in range(1, 13)]
        all_year = median_s(lambda: [member_use(db, policy, m) for m in months], args.reps)
        end = START + timedelta(days=args.days)
        idle = median_s(lambda: idle_now(db, policy, end), args.reps)
        env = {**os.environ, "SSP_NOW": end.isoformat(), "PYTHONPATH": str(ROOT)}
        argv = [
            sys.executable,
            "-m",
            "provisioner.cli",
            "usage",
            "--repo",
            str(ROOT),
            "--db",
            str(db),
            "--month",
            "2026-06",
            "--format",
            "json",
        ]

        def process() -> None:
            subprocess.run(argv, env=env, check=True, capture_output=True)

        whole = median_s(process, args.reps)
        print(f"one month, in-process: {month * 1e3:.0f} ms; all twelve: {all_year * 1e3:.0f} ms")
        print(f"idle check (policy idle_days 7): {idle * 1e3:.0f} ms")
        print(f"`ssp usage --month 2026-06 --format json` as a process: {whole * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
