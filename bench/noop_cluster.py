"""Bench: a no-op apply over a two-member LXD cluster — LXD requests, and where they go.

On the real cluster `runner/dev-lxd-cluster.sh up` makes (brought up first if it is not),
in one throwaway project, for each N in --sizes (growing): ssp itself makes N busybox
containers in one pass (no `host:`: placement spreads them over node1 and node2 by
headroom), then --reps no-op passes run, each with fresh adapters as every `ssp apply`
process has. The counts come from the adapters' request logs: every request of a pass, the
mutating ones (must be 0), and the listings — every managed instance with its `location`,
the members' states if read, ssp's images — which must not grow with N and stay at 2 for the
whole cluster (issue 27: a no-op reads no members' listing).

usage: .venv/bin/python bench/noop_cluster.py [--sizes 20,200] [--reps 3]
(mypy: MYPYPATH=tests .venv/bin/mypy --strict bench/noop_cluster.py)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]

from apply_vs_manual import BenchLab  # noqa: E402  (found via sys.path)
from cluster.conftest import DEFAULT_DIR, Cluster  # noqa: E402
from integration.conftest import throwaway_project  # noqa: E402
from integration.helpers import NOW, SHA, Adapters  # noqa: E402
from noop_apply import requests_for  # noqa: E402

from provisioner.flows.reconcile import run_pass  # noqa: E402

WINDOW = (42000, 42999)  # apart from the tests' and the single-server bench's ports
# The listings of a pass: instances, members, ssp's images; what must not grow with N.
LISTING = ("GET /1.0/instances", "GET /1.0/cluster/members", "GET /1.0/images")


class ClusterBenchLab(BenchLab):
    """The bench lab with two servers, named as the cluster's members, big enough for all."""

    def hosts(self) -> str:
        return (
            "hosts:\n"
            "  node1: {address: node1.lab.test, cpu: 4096, memory: 64TiB, disk: 1024TiB}\n"
            "  node2: {address: node2.lab.test, cpu: 4096, memory: 64TiB, disk: 1024TiB}\n"
        )


def one_pass(
    lab: BenchLab, cluster: Cluster, requests: list[tuple[str, bytes]]
) -> tuple[float, Adapters, Counter[str]]:
    """Seconds, the adapters used, and what each request came to."""
    validation = lab.validation(*requests)
    adapters = Adapters.make(lab.project, cluster.socket(), shared_project="default")
    start = time.perf_counter()
    done = run_pass(
        validation,
        adapters.main,
        lambda _instance: adapters.shared,
        now=NOW,
        sha=SHA,
        id_spans=cluster.id_spans(),
    )
    took = time.perf_counter() - start
    return took, adapters, Counter(str(o.action) for o in done.result.outcomes)


def listing(adapters: Adapters) -> list[str]:
    """The main adapter's requests that list instances (every project's, host ID blocks
    included, since issue 27), members or images."""
    out = []
    for method, path in adapters.main.requests:
        bare = f"{method} {path.split('?')[0]}"
        if bare in LISTING:
            out.append(f"{method} {path}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="20,200", help="managed instances, growing (20,200)")
    parser.add_argument("--reps", type=int, default=3, help="no-op passes per size (3)")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    cluster = Cluster(Path(DEFAULT_DIR))
    up = cluster.script("up")
    if up.returncode != 0:
        raise RuntimeError(f"the test cluster did not come up:\n{up.stderr}")
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="ssp-bench-") as tmp,
        throwaway_project(cluster.socket(), "ssp-bench") as project,
    ):
        suffix = project.rsplit("-", 1)[-1]
        lab = ClusterBenchLab.make(Path(tmp), project, suffix, ports=max(sizes), window=WINDOW)
        for n in sizes:
            requests = requests_for(lab, suffix, n)
            made_s, maker, made = one_pass(lab, cluster, requests)
            if set(made) - {"created", "unchanged"}:
                raise RuntimeError(f"making {n} containers went wrong: {dict(made)}")
            spread = Counter(i.location for i in maker.main.instances())
            print(f"N={n}: made {made['created']} in {made_s:.0f} s; spread {dict(spread)}")
            counts, mutating, listed, pass_s = [], [], [], []
            for _ in range(args.reps):
                took, adapters, actions = one_pass(lab, cluster, requests)
                if actions != Counter({"unchanged": n}):
                    raise RuntimeError(f"the no-op pass did something: {dict(actions)}")
                counts.append(adapters.requests())
                mutating.append(len(adapters.mutations()))
                listed.append(len(listing(adapters)))
                pass_s.append(took)
            print(f"N={n}: listing requests of the last pass: {listing(adapters)}", flush=True)
            kinds = sorted(
                {
                    f"{m} {p.split('?')[0]}"
                    for m, p in adapters.main.requests + adapters.shared.requests
                }
            )
            print(f"N={n}: every request of the last pass: {kinds}", flush=True)
            rows.append((n, dict(spread), max(listed), max(counts), max(mutating),
                         statistics.median(pass_s)))  # fmt: skip
    print()
    print(
        "| managed instances | on node1 / node2 | listings: instances, members, images "
        "| all LXD requests per no-op pass | mutating | pass (s) |"
    )
    print("|---|---|---|---|---|---|")
    for n, placed, lst, count, mut, p in rows:
        where = f"{placed.get('node1', 0)} / {placed.get('node2', 0)}"
        print(f"| {n} | {where} | {lst} | {count} | {mut} | {p:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
