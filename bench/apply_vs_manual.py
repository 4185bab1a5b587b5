"""Bench: `ssp` making N containers from Common-Server/golden vs the seed's manual `lxc` steps.

Every side makes the same N containers on the same daemon in the same run, each side in a
throwaway LXD project of its own, removed afterwards (not timed):

- ssp: one reconcile pass (`run_pass` with the real `Lxd` adapters) over N container
  requests (2 CPUs, 1 GiB, the share, an SSH forward on 127.0.0.1), `--jobs` containers at
  a time as `ssp apply` makes them. Everything ssp does is in the time: clone, replace the
  inherited config and devices, new machine-id and SSH host key, verify, start, wait for an
  IPv4, the owner's user, sudoers and authorized_keys inside, mark ready and protected.
- ssp-serial: the same pass, one container at a time (`ssp apply --jobs 1`).
- manual: the seed's procedure scripted with the `lxc` client, one container after the
  other: `lxc copy Common-Server/golden`, `lxc config set` the two limits, `lxc config
  device add` the SSH proxy and the share disk, `lxc start`, then poll until it has an IPv4.
- manual-same: the manual steps plus what ssp does beyond them, typed as an admin would.

The sides take turns going first from round to round, so that none always gets the warmer
page cache; one untimed copy warms the cache before the first round. Prints each run and
the medians; a ratio is ssp / another side (below 1: ssp is faster).

usage: .venv/bin/python bench/apply_vs_manual.py [--count 10] [--rounds 3] [--jobs 4]
                                                 [--sides ssp,ssp-serial,manual,manual-same]
                                                 [--breakdown]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from integration.conftest import throwaway_project  # noqa: E402
from integration.helpers import (  # noqa: E402  (the tests' lab helpers, found via sys.path)
    Adapters,
    LabRepo,
    apply_pass,
    free_ports,
    host_id_spans,
    make_key,
)
from steps import Clock, instrument, table  # noqa: E402  (bench/steps.py, beside this file)

from provisioner.applying.apply import DEFAULT_JOBS  # noqa: E402
from provisioner.applying.warm import refill  # noqa: E402
from provisioner.lxd.wire import socket_path  # noqa: E402

GOLDEN = "Common-Server/golden"
SSH_DIR = "/home/alice/.ssh"
# What an admin would type to give a clone its own identity (ssp pushes files instead).
IDENTITY = (
    "rm -f /etc/machine-id /etc/ssh/ssh_host_* && systemd-machine-id-setup >/dev/null"
    " && ssh-keygen -A >/dev/null && systemctl restart ssh"
)
SUDOERS = (
    "echo 'alice ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/alice && chmod 440 /etc/sudoers.d/alice"
)
SIDES = ("ssp", "ssp-serial", "ssp-warm", "manual", "manual-same", "manual-4")
WINDOW = (41000, 41999)  # apart from the tests' 40000-40999


class BenchLab(LabRepo):
    """The test lab, with a quota and a host big enough for every container of the run."""

    def policy(self) -> dict[str, Any]:
        policy = super().policy()
        policy["quotas"]["bench"] = {
            "containers": 100,
            "gpus": 0,
            "cpu": 4096,
            "memory": "1024TiB",
            "disk": "1024TiB",
        }
        for login in ("alice", "bob", "carol"):
            policy["users"][login]["quota"] = "bench"
        # As in the sample policy: the shared server is the admin's, in the default project.
        policy["shared_servers"] = {"common": {"instance": "Common-Server", "project": "default"}}
        return policy

    def hosts(self) -> str:
        return (
            super()
            .hosts()
            .replace("cpu: 64", "cpu: 4096")
            .replace("memory: 256GiB", "memory: 64TiB")
            .replace("disk: 4TiB", "disk: 1024TiB")
        )


def lxc(*args: str) -> str:
    return subprocess.run(["lxc", *args], capture_output=True, text=True, check=True).stdout


def has_ipv4(project: str, name: str) -> bool:
    state = json.loads(lxc("query", f"/1.0/instances/{name}/state?project={project}"))
    network = state.get("network") or {}
    return any(
        a["family"] == "inet"
        for nic, info in network.items()
        if nic != "lo"
        for a in info["addresses"]
    )


def manual(
    project: str, names: list[str], first_port: int, share: Path, same: Path | None = None
) -> float:
    """The seed's steps with `lxc`, container after container; seconds for all of them.

    With `same` (alice's public key file), also what ssp does beyond those steps, the way an
    admin would type it: the isolated idmap with alice's UID for the share, protection, a
    new machine-id and SSH host keys, her user, sudo and authorized_keys."""
    start = time.perf_counter()
    for i, name in enumerate(names):
        at = ["--project", project]
        lxc("copy", GOLDEN, name, "--project", "default", "--target-project", project)
        lxc("config", "set", *at, name, "limits.cpu=2", "limits.memory=1GiB")
        if same:
            lxc(
                "config", "set", *at, name, "security.idmap.isolated=true",
                "raw.idmap=both 1001 1001", "limits.processes=10000",
            )  # fmt: skip
        lxc(
            "config", "device", "add", *at, name, "ssh", "proxy",
            f"listen=tcp:127.0.0.1:{first_port + i}", "connect=tcp:127.0.0.1:22",
        )  # fmt: skip
        lxc(
            "config", "device", "add", *at, name, "share", "disk",
            f"source={share}", "path=/home/user/share",
        )  # fmt: skip
        lxc("start", *at, name)
        deadline = time.monotonic() + 60
        while not has_ipv4(project, name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} got no IPv4 within 60 s")
            time.sleep(0.2)
        if same:
            run = ["exec", *at, name, "--"]
            lxc(*run, "sh", "-c", IDENTITY)
            lxc(*run, "useradd", "-m", "-u", "1001", "-U", "-s", "/bin/bash", "alice")
            lxc(*run, "install", "-d", "-m", "700", "-o", "1001", "-g", "1001", SSH_DIR)
            lxc(
                "file", "push", *at, "--uid", "1001", "--gid", "1001", "--mode", "0600",
                str(same), f"{name}{SSH_DIR}/authorized_keys",
            )  # fmt: skip
            lxc(*run, "sh", "-c", SUDOERS)
            lxc("config", "set", *at, name, "security.protection.delete=true")
    return time.perf_counter() - start


CLOCK: Clock | None = None  # with --breakdown: where each ssp run's time went


def with_ssp(
    socket: str, project: str, count: int, work: Path, jobs: int, warm: bool = False
) -> float:
    """One reconcile pass over `count` new requests, `jobs` made at once; seconds for it.
    With `warm`, a warm pool of `count` clones is made first, untimed, as `ssp maintain`
    makes it ahead (provisioner.applying.warm): the pass claims them instead of copying."""
    suffix = project.rsplit("-", 1)[-1]
    lab = BenchLab.make(work, project, suffix, ports=count, window=WINDOW)
    requests = [lab.container(f"bench-{i:02d}-{suffix}", shares=["share"]) for i in range(count)]
    adapters = Adapters.make(project, socket, shared_project="default")
    if warm:
        lxd = {"project": project, "profiles": ["default"], "pool": lab.pool, "warm_pool": count}
        lab.settings = {"lxd": lxd}
        config = lab.validation(*requests).config
        assert config is not None
        made = refill(
            adapters.main,
            config.policy,
            adapters.main.instances(),
            id_spans=host_id_spans(),
            pin_ids=True,
            dry_run=False,
        )
        if [w.action for w in made] != ["made"] * count:
            raise RuntimeError(f"the warm pool was not made: {made}")
    if CLOCK is not None:
        CLOCK.reset()
    start = time.perf_counter()
    done = apply_pass(lab, adapters, *requests, jobs=jobs)
    took = time.perf_counter() - start
    if CLOCK is not None:
        side = "ssp-serial" if jobs == 1 else "ssp-warm" if warm else "ssp"
        print(f"\n{side}, {count} containers in {took:.1f} s, where it went:")
        print("\n".join(table(CLOCK, took)), flush=True)
    failed = [(o.name, o.message) for o in done.result.outcomes if o.action != "created"]
    if failed:
        raise RuntimeError(f"ssp did not create every container: {failed}")
    return took


def one_round(socket: str, side: str, count: int, jobs: int) -> float:
    with (
        tempfile.TemporaryDirectory(prefix="ssp-bench-") as tmp,
        throwaway_project(socket, "ssp-bench") as project,
    ):
        work = Path(tmp)
        if side.startswith("ssp"):
            serial = side == "ssp-serial"
            return with_ssp(
                socket, project, count, work, 1 if serial else jobs, warm=side == "ssp-warm"
            )
        share = work / "share"
        share.mkdir()
        same = None
        if side == "manual-same":
            key = make_key(work, "alice").private
            same = key.with_name(key.name + ".pub")
        suffix = project.rsplit("-", 1)[-1]
        names = [f"manual-{i:02d}-{suffix}" for i in range(count)]
        first = free_ports(count * (4 if side == "manual-4" else 1), WINDOW)[0]
        if side != "manual-4":
            return manual(project, names, first, share, same)
        # The same steps by hand in 4 parallel jobs (4 terminals), a quarter of the names each.
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            done = [
                pool.submit(manual, project, names[j::4], first + j * count, share, None)
                for j in range(4)
            ]
            for job in done:
                job.result()
        return time.perf_counter() - start


def warm_up(socket: str) -> None:
    """One untimed copy of the base, so the first timed round does not read a cold disk."""
    with throwaway_project(socket, "ssp-bench") as project:
        lxc("copy", GOLDEN, "warm-up", "--project", "default", "--target-project", project)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10, help="containers per run (10)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side (3)")
    parser.add_argument(
        "--jobs", type=int, default=DEFAULT_JOBS, help=f"ssp's jobs ({DEFAULT_JOBS}, the default)"
    )
    parser.add_argument(
        "--sides", default=",".join(SIDES), help=f"which to run, in order ({','.join(SIDES)})"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="time ssp's phases and LXD calls (bench/steps.py) and print them per run",
    )
    args = parser.parse_args(argv)
    if args.breakdown:
        global CLOCK  # noqa: PLW0603 - set once, before any run
        CLOCK = instrument()
    sides = tuple(args.sides.split(","))
    if "ssp" not in sides or not set(sides) <= set(SIDES):
        parser.error(f"--sides: ssp and any of {', '.join(SIDES[1:])}")
    socket = socket_path(lxd_dir=os.environ.get("LXD_DIR"))
    print(f"{args.count} containers per run, {args.rounds} rounds, ssp with --jobs {args.jobs}")
    print(f"{platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    warm_up(socket)
    times: dict[str, list[float]] = {side: [] for side in sides}
    for r in range(args.rounds):
        shift = r % len(sides)
        for side in sides[shift:] + sides[:shift]:  # each side goes first in turn
            took = one_round(socket, side, args.count, args.jobs)
            times[side].append(took)
            print(
                f"round {r + 1} {side:<11} {args.count} containers in {took:6.1f} s "
                f"({took / args.count:.2f} s each)",
                flush=True,
            )
    medians = {side: statistics.median(runs) for side, runs in times.items()}
    print(f"\nload {os.getloadavg()}\n")
    print(f"| side | median of {args.rounds} (s) | per container (s) | runs (s) |")
    print("|---|---|---|---|")
    for side, median in medians.items():
        runs = ", ".join(f"{t:.1f}" for t in times[side])
        print(f"| {side} | {median:.1f} | {median / args.count:.2f} | {runs} |")
    print()
    for side in sides:
        if side != "ssp":
            print(f"ratio ssp / {side} (medians): {medians['ssp'] / medians[side]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
