"""Where an `ssp` process's time goes: run it with timers on its phases and LXD calls.

    python bench/steps.py OUT.json apply --repo CHECKOUT ...

Runs `provisioner.cli.main` with the rest of the arguments, in this process, after wrapping
(a) the phases of `ssp apply` (loading and validating the checkout, connecting, observing,
planning, applying the plan, keeping the tunnel in step, commenting) and (b) every public
method of the LXD adapter (`provisioner.lxd.api.Lxd`: create, start, execute, push_file,
wait_ipv4, ...), and writes OUT.json: the seconds from this interpreter's start to the
import of ssp, the import itself, each phase's wall time, and per LXD method its calls and
summed seconds (outermost calls only, so a method that calls another is not counted twice;
summed over threads, so with `--jobs` above 1 the sum can pass the wall time). The wrappers
add a few microseconds per call. The exit status is ssp's. Used by bench/clone_scale.py and
bench/apply_vs_manual.py for their breakdowns; see bench/README.md.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()  # as early as this script can note it
PROCESS_START = time.time()

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (module, attribute, label): the phases of `ssp apply`, patched where apply's module uses them.
PHASES = (
    ("provisioner.commands.apply", "load_for_host", "load and validate the checkout (+ git)"),
    ("provisioner.commands.apply", "connect", "connect to LXD"),
    ("provisioner.commands.apply", "host_facts", "host facts (ports, GPUs, ID spans)"),
    ("provisioner.flows.reconcile", "observe", "observe (one listing + images)"),
    ("provisioner.flows.reconcile", "plan_for", "plan"),
    ("provisioner.flows.reconcile", "apply_plan", "apply the plan"),
    ("provisioner.commands.apply", "keep_tunnel_in_step", "tunnel in step"),
    ("provisioner.commands.apply", "comment", "comment on the pull request(s)"),
)


class Clock:
    """Wall seconds per label, and per LXD method its outermost calls and seconds."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.lxd: dict[str, list[float]] = {}
        self._depth = threading.local()
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.phases, self.lxd = {}, {}

    def phase(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.phases[label] = self.phases.get(label, 0.0) + time.perf_counter() - start

        return timed

    def method(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self._depth, "n", 0)
            self._depth.n = depth + 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth.n = depth
                if depth == 0:
                    took = time.perf_counter() - start
                    with self._lock:
                        calls = self.lxd.setdefault(name, [0, 0.0])
                        calls[0] += 1
                        calls[1] += took

        return timed


def instrument() -> Clock:
    """Wrap the phases and the LXD adapter's methods in this process; their clock."""
    from provisioner.lxd import api  # noqa: PLC0415 - after main's timed import

    clock = Clock()
    for module_name, attr, label in PHASES:
        module = importlib.import_module(module_name)
        setattr(module, attr, clock.phase(label, getattr(module, attr)))
    for name, fn in list(vars(api.Lxd).items()):
        if callable(fn) and not name.startswith("_"):
            setattr(api.Lxd, name, clock.method(name, fn))
    return clock


def table(clock: Clock, wall_s: float) -> list[str]:
    """The phases and LXD methods as Markdown rows, biggest first, with WALL_S's share."""
    rows = ["| where | calls | seconds | share of the wall time |", "|---|---:|---:|---:|"]
    for label, took in sorted(clock.phases.items(), key=lambda kv: -kv[1]):
        rows.append(f"| {label} | | {took:.2f} | {took / wall_s:.0%} |")
    for name, (calls, took) in sorted(clock.lxd.items(), key=lambda kv: -kv[1][1]):
        rows.append(f"| LXD `{name}` | {calls} | {took:.2f} | {took / wall_s:.0%} |")
    return rows


def main(argv: list[str]) -> int:
    out, ssp_argv = Path(argv[0]), argv[1:]
    before_import = time.perf_counter()
    from provisioner import cli  # noqa: PLC0415 - its import is timed

    clock = instrument()
    imported = time.perf_counter()
    start = time.perf_counter()
    code = cli.main(ssp_argv)
    finished = time.perf_counter()
    report = {
        "process_start_unix": PROCESS_START,  # the caller subtracts its launch time
        "script_to_import_s": before_import - STARTED,
        "import_s": imported - before_import,
        "main_s": finished - start,
        "phases_s": clock.phases,
        "lxd": {k: {"calls": v[0], "s": v[1]} for k, v in sorted(clock.lxd.items())},
        "exit": code,
    }
    out.write_text(json.dumps(report, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
