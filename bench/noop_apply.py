"""Bench: what a no-op apply costs with N managed instances — LXD requests and time.

In one throwaway LXD project, for each N in --sizes (growing), ssp itself makes the
containers (one reconcile pass over N busybox requests, the policy's `busybox` image, so a
start takes a fraction of a second) and then runs --reps no-op passes. Each no-op pass uses
fresh `Lxd` adapters, as every `ssp apply` run does, so the count includes connecting; the
counts come from the adapters' request logs (`Lxd.requests`, `Lxd.mutations`). Then the
whole command, `ssp apply --repo …` as a process, is timed once per N: validation of the N
request files, the host lock, the port scan, the pass and the report.

Prints one table row per N (times are medians of the passes; the listing is one more
`GET /1.0/instances?all-projects=true&recursion=2` timed alone), and the requests of one pass
in order; the target is a request count that does not grow with N: connecting, one listing of
every project's instances, one of ssp's images (issue 27).

usage: .venv/bin/python bench/noop_apply.py [--sizes 20,200] [--reps 5]
(mypy: MYPYPATH=tests .venv/bin/mypy --strict bench/noop_apply.py)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]

from apply_vs_manual import WINDOW, BenchLab  # noqa: E402  (found via sys.path)
from integration.conftest import throwaway_project  # noqa: E402
from integration.helpers import NOW, SHA, Adapters, host_id_spans  # noqa: E402

from provisioner.flows.reconcile import run_pass  # noqa: E402
from provisioner.host.ports import listening_ports  # noqa: E402
from provisioner.lxd.wire import socket_path  # noqa: E402

OWNERS = ("alice", "bob", "carol")  # 100 containers each at most (the bench quota)


def requests_for(lab: BenchLab, suffix: str, count: int) -> list[tuple[str, bytes]]:
    return [
        lab.container(
            f"noop-{i:03d}-{suffix}",
            owner=OWNERS[i % len(OWNERS)],
            image="busybox",
            cpu=1,
            memory="64MiB",
            disk="1GiB",
            snapshots="none",
        )
        for i in range(count)
    ]


def one_pass(
    lab: BenchLab, socket: str, requests: list[tuple[str, bytes]]
) -> tuple[float, float, Adapters, dict[str, int], set[str]]:
    """Validation seconds, pass seconds, the adapters used, outcome counts, failures."""
    start = time.perf_counter()
    validation = lab.validation(*requests)
    validated = time.perf_counter()
    # The shared server is in the default project (BenchLab's policy), as in the sample.
    adapters = Adapters.make(lab.project, socket, shared_project="default")
    done = run_pass(
        validation,
        adapters.main,
        lambda _instance: adapters.shared,
        now=NOW,
        sha=SHA,
        busy_ports=listening_ports(),
        id_spans=host_id_spans(),
    )
    took = time.perf_counter() - validated
    actions: dict[str, int] = {}
    for o in done.result.outcomes:
        actions[o.action] = actions.get(o.action, 0) + 1
    failures = {o.message for o in done.result.outcomes if not o.ok}
    return validated - start, took, adapters, actions, failures


def cli_seconds(lab: BenchLab, socket: str) -> float:
    env = dict(os.environ)
    env.update(
        SSP_NOW=NOW.isoformat(),
        SSP_LOCK=str(lab.root / "apply.lock"),
        SSP_GPU_CHECK="off",
        LXD_DIR=str(Path(socket).parent),
    )
    # This tree's ssp, with the interpreter running the bench (a worktree has no .venv).
    env["PYTHONPATH"] = str(ROOT)
    argv = [
        sys.executable,
        "-m",
        "provisioner.cli",
        "apply",
        "--repo",
        str(lab.root),
        "--no-comment",
    ]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0 or any(
        not line.startswith("unchanged") for line in done.stdout.splitlines()
    ):
        raise RuntimeError(
            f"ssp apply was not a no-op: {done.returncode}\n{done.stdout}{done.stderr}"
        )
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="20,200", help="managed instances, growing (20,200)")
    parser.add_argument("--reps", type=int, default=5, help="no-op passes per size (5)")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    socket = socket_path(lxd_dir=os.environ.get("LXD_DIR"))
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="ssp-bench-") as tmp,
        throwaway_project(socket, "ssp-bench") as project,
    ):
        suffix = project.rsplit("-", 1)[-1]
        lab = BenchLab.make(Path(tmp), project, suffix, ports=max(sizes), window=WINDOW)
        for n in sizes:
            requests = requests_for(lab, suffix, n)
            _v, made_s, _a, made, why = one_pass(lab, socket, requests)
            if set(made) - {"created", "unchanged"}:
                raise RuntimeError(f"making {n} containers went wrong: {made}: {why}")
            print(f"N={n}: made {made.get('created', 0)} containers in {made_s:.1f} s", flush=True)
            validate_s, pass_s, counts, mutating, listing_s = [], [], [], [], []
            for _ in range(args.reps):
                v_s, p_s, adapters, actions, _why = one_pass(lab, socket, requests)
                if actions != {"unchanged": n}:
                    raise RuntimeError(f"the no-op pass did something: {actions}")
                validate_s.append(v_s)
                pass_s.append(p_s)
                counts.append(adapters.requests())
                mutating.append(len(adapters.mutations()))
                sent = [f"{m} {p}" for m, p in adapters.main.requests + adapters.shared.requests]
                start = time.perf_counter()
                adapters.main.all_instances()
                listing_s.append(time.perf_counter() - start)
            cli_s = cli_seconds(lab, socket)
            rows.append(
                (n, max(counts), max(mutating), statistics.median(pass_s),
                 statistics.median(listing_s), statistics.median(validate_s), cli_s)
            )  # fmt: skip
            print(f"N={n}: requests of one pass, in order: {sent}", flush=True)
    print()
    print(
        "| managed instances | LXD requests per no-op pass | mutating | pass (s) "
        "| of which the listing (s) | validation (s) | `ssp apply` process (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for n, count, mut, p, lst, v, c in rows:
        print(f"| {n} | {count} | {mut} | {p:.2f} | {lst:.2f} | {v:.2f} | {c:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
