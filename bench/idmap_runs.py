"""Bench: do containers made at once get host ID blocks of their own? And what does it cost?

Each run is one reconcile pass that makes 6 containers, 4 at a time (`ssp apply --jobs 4`),
in a throwaway LXD project; then the 6 blocks are read back from LXD (the map each one runs
with, `volatile.idmap.current`) and the containers are removed (not timed). Three ways to
choose the blocks, each run the same way on the same daemon, taking turns:

- ssp: ssp chooses every block (`security.idmap.base`/`size`), clear of all instances.
- lxd: the choice left to LXD (ssp before this change): the keys are dropped from the spec.
- lxd-serial: LXD chooses, and apply makes the containers one at a time through the steps
  in which LXD chooses, then checks each block (what ssp does in its restricted project,
  which forbids `security.idmap.base`): the other fix the issue proposed.

Prints each run (seconds for the pass, distinct blocks of 6, overlapping pairs) and a
summary per way: runs with a shared block, and the median pass time relative to ssp.

usage: .venv/bin/python bench/idmap_runs.py [--runs 20] [--ways ssp,lxd,lxd-serial]
                                            [--image busybox|common-server]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from integration.conftest import throwaway_project  # noqa: E402
from integration.helpers import Adapters, LabRepo, apply_pass, lxc  # noqa: E402

from provisioner.applying.apply import Applier  # noqa: E402
from provisioner.lxd.wire import socket_path  # noqa: E402
from provisioner.values import idranges  # noqa: E402
from provisioner.values import spec as specs  # noqa: E402

OWNERS = ("carol", "carol", "carol", "carol", "alice", "alice")  # the sample quotas allow it


@contextmanager
def lxd_chooses() -> Iterator[None]:
    """Leave the block to LXD as ssp did before: no security.idmap.* in the spec, and new
    containers made at once with no check."""
    real_spec: Callable[..., specs.Spec] = specs.container_spec

    def spec_without_ids(*args: Any, **kwargs: Any) -> specs.Spec:
        made = real_spec(*args, **kwargs)
        config = {k: v for k, v in made.config.items() if not k.startswith("security.idmap.b")}
        config.pop(idranges.SIZE_KEY, None)
        return dataclasses.replace(made, config=config)

    def make_at_once(
        self: Applier, spec: specs.Spec, labels: Mapping[str, str], config: Mapping[str, str]
    ) -> None:
        self._make(spec, labels, config)  # no lock, no check: as before

    real_make = Applier._make_in_lxds_block
    specs.container_spec = spec_without_ids  # type: ignore[assignment]
    Applier._make_in_lxds_block = make_at_once  # type: ignore[method-assign]
    try:
        yield
    finally:
        specs.container_spec = real_spec  # type: ignore[assignment]
        Applier._make_in_lxds_block = real_make  # type: ignore[method-assign]


def one_run(way: str, image: str, socket: str, root: Path) -> tuple[float, int, int]:
    """Seconds for the pass, distinct running blocks among the 6, overlapping pairs."""
    with throwaway_project(socket, prefix="ssp-b") as project:
        suffix = project.rsplit("-", 1)[-1]
        # Ports of its own: tests running beside the bench use the default window.
        lab = LabRepo.make(root / project, project, suffix, window=(43000, 43999))
        names = [f"{o}-i{i}-{suffix}" for i, o in enumerate(OWNERS)]
        requests = [
            lab.container(n, owner=o, image=image, shares=[])
            for n, o in zip(names, OWNERS, strict=True)
        ]
        adapters = Adapters.make(project, socket)
        chooser = lxd_chooses() if way == "lxd" else _nothing()
        with chooser:
            start = time.perf_counter()
            done = apply_pass(lab, adapters, *requests, jobs=4, pin_ids=way == "ssp")
            took = time.perf_counter() - start
        failed = [o.message for o in done.result.outcomes if not o.ok]
        if failed:
            raise SystemExit(f"{way}: a container failed: {failed[0]}")
        uses = [u for u in adapters.main.id_maps() if u.project == project]
        blocks = [u.current for u in uses if u.current is not None]
        pairs = sum(a.overlaps(b) for a, b in itertools.combinations(blocks, 2))
        return took, len(set(blocks)), pairs


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--ways", default="ssp,lxd,lxd-serial")
    parser.add_argument("--image", default="busybox", choices=("busybox", "common-server"))
    args = parser.parse_args()
    ways = args.ways.split(",")
    socket = socket_path()
    print(f"# {platform.node()} · {platform.machine()} · LXD {lxc('version').stdout.split()[-1]}")
    print(f"# {args.runs} runs × {ways}, 6 containers ({args.image}), --jobs 4")
    results: dict[str, list[tuple[float, int, int]]] = {w: [] for w in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            order = ways[run % len(ways) :] + ways[: run % len(ways)]
            for way in order:
                took, distinct, pairs = one_run(way, args.image, socket, Path(tmp))
                results[way].append((took, distinct, pairs))
                print(f"run {run + 1:2d} {way:<10} {took:6.2f} s  blocks {distinct}/6  "
                      f"overlapping pairs {pairs}", flush=True)  # fmt: skip
    base = statistics.median(t for t, _d, _p in results[ways[0]])
    print("\n| way | runs | runs with a shared block | overlapping pairs | median s | vs ssp |")
    print("|---|---|---|---|---|---|")
    for way in ways:
        rows = results[way]
        shared = sum(1 for _t, d, _p in rows if d < 6)
        pairs = sum(p for _t, _d, p in rows)
        med = statistics.median(t for t, _d, _p in rows)
        print(f"| {way} | {len(rows)} | {shared} | {pairs} | {med:.2f} | {med / base:.2f} |")


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"lxc failed: {e.stderr}") from e
