"""How the real suites share one LXD daemon between pytest-xdist workers.

`make test` runs the real half (`-m "lxd or gpu or slow"`) on four workers: most of its
time is waiting on LXD (copies, first boots, DHCP), which tests side by side overlap. What
two tests at once could collide on is made the worker's own here:

- ports: each worker forwards SSH from its own slice of the tests' port window;
- host ID blocks: a pass (and an `ssp` command run in-process) chooses blocks from the
  worker's own slice of root's subordinate IDs, every slice above the lowest part;
- groups: tests that share something beyond one project never run two at once: the
  two-member cluster's tests; and the tests whose blocks come from that lowest part, the
  lowest free block first, so that two at once would choose the same: the fault suite (its
  `ssp apply` processes read the whole of /etc/subuid), and those where LXD chooses (ssp's
  restricted project in `ssp host init`'s tests, the adapter contract's isolated
  containers); with them the test that makes two containers share a block on purpose
  (`ssp doctor` in `ssp host init`'s tests reads every instance's blocks).
  `ChainScheduling` hands each group to one worker whole, to run in turn, and every other
  test on its own: the groups first (each is a chain that ends the run late if it starts
  late), then the tests marked `slow`. A lock per group stays as the guarantee.
  (pytest-xdist's `--dist loadgroup` would keep a group on one worker, but with pytest 9 it
  no longer does: the group it appends to a test's id is dropped. Under xdist's `load`,
  every worker took one of the groups' first tests and all but one waited on its lock.)
- daemon-wide tests (marker `daemon_wide`: they stop the daemon or replace an image every
  test uses) hold the daemon alone: every test of a multi-worker run takes a shared lock,
  they take it exclusively, through a turnstile so that they wait only for the tests
  running when they ask; they are scheduled first, before the workers are busy.

A test takes its group's lock before the daemon's, so no two tests wait on each other.

With one process (no xdist, or `-n 0`) nothing here changes anything: the whole window, all
of root's IDs, no lock.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

from provisioner.values.idranges import SIZE, IdRange

# Tests (by path) that run one at a time, and why.
GROUPS = {
    "cluster": ("tests/cluster/",),  # the one two-member cluster: members are stopped, joined
    "lowest-ids": (  # blocks from the lowest free in all of root's IDs (see above)
        "tests/faults/",
        "tests/integration/test_host_init.py",
        "tests/test_lxdapi_contract.py",
        # two containers made to share a block on purpose, which `ssp doctor` in
        # test_host_init (it reads every instance's blocks) reports as a problem
        "tests/integration/test_idmaps_real.py",
    ),
}
DAEMON_WIDE = "daemon_wide"


def worker() -> tuple[int, int]:
    """(this worker's index, how many workers): (0, 1) outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not name.startswith("gw"):
        return 0, 1
    return int(name[2:]), max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def port_window(window: tuple[int, int]) -> tuple[int, int]:
    """This worker's slice of a port window (all of it outside xdist)."""
    index, count = worker()
    width = (window[1] - window[0] + 1) // count
    first = window[0] + index * width
    return first, first + width - 1


def id_share(spans: tuple[IdRange, ...]) -> tuple[IdRange, ...]:
    """This worker's slice of each span of host IDs: the span cut in workers + 1 parts of
    whole blocks, worker i taking part i + 1 (all of them outside xdist). The lowest part is
    where LXD and `ssp apply` processes choose (the lowest free block first)."""
    index, count = worker()
    if count == 1:
        return spans
    share = []
    for span in spans:
        part = span.size // SIZE // (count + 1) * SIZE
        if part < SIZE:  # too small to share out: LXD refuses isolation there anyway
            continue
        share.append(IdRange(span.base + (index + 1) * part, part))
    return tuple(share)


def _group_at(where: str) -> str | None:
    """The group whose paths hold WHERE (a test file's path, with a "/" before `tests/`)."""
    return next((g for g, paths in GROUPS.items() if any(f"/{p}" in where for p in paths)), None)


def group_of(item: pytest.Item) -> str | None:
    """The group whose paths hold the test, if any."""
    return _group_at(Path(str(item.path)).as_posix())


def group_items(items: list[pytest.Item]) -> None:
    """On workers, the groups' tests first, then the rest (see ChainScheduling); within
    each, the daemon-wide tests first (they run alone: at the start, before the workers are
    busy, they wait least), then those marked `slow`. The order is the same on every worker,
    as pytest-xdist requires."""
    if worker()[1] > 1:
        items.sort(
            key=lambda item: (
                group_of(item) is None,
                not item.get_closest_marker(DAEMON_WIDE),
                not item.get_closest_marker("slow"),
            )
        )


class ChainScheduling(LoadScopeScheduling):
    """pytest-xdist's scope scheduling with a group's tests as one unit of work (the worker
    that takes it runs them one after the other) and every other test a unit of its own.
    Units go out in the items' order (`group_items`) with the largest groups first; a worker
    is given the next when it has two or fewer tests left."""

    def _split_scope(self, nodeid: str) -> str:
        group = _group_at("/" + nodeid.split("::", 1)[0])  # ids are from the repository's root
        return f"group {group}" if group else nodeid


def lock_file(run: str, name: str) -> Path:
    """Lock `name` ("daemon" or a group) of one multi-worker run (pytest-xdist's run id)."""
    return Path(tempfile.gettempdir()) / f"ssp-tests-{run}-{name}.lock"


@contextmanager
def _held(path: Path, mode: int) -> Iterator[None]:
    with path.open("a") as held:
        fcntl.flock(held, mode)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


@contextmanager
def daemon_turn(config: pytest.Config, item: pytest.Item) -> Iterator[None]:
    """Around a test's setup, call and teardown on a worker of a multi-worker run: its
    group's lock if it has one, then the daemon's, shared, or exclusive for a daemon-wide
    test. The lock files are the run's own."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")
    if not hasattr(config, "workerinput") or not run or worker()[1] == 1:
        yield
        return
    alone = item.get_closest_marker(DAEMON_WIDE) is not None
    group = group_of(item)
    with ExitStack() as stack:
        if group is not None:
            stack.enter_context(_held(lock_file(run, group), fcntl.LOCK_EX))
        # A turnstile: a daemon-wide test holds the gate while it waits for the daemon and
        # while it runs; every other test passes the gate before taking its shared lock. So
        # once one waits, no new test starts: it gets the daemon when those running end.
        # (flock gives a shared lock while an exclusive one waits: with three workers or
        # more, always one of them holding it, a daemon-wide test waited for minutes.)
        if alone:
            stack.enter_context(_held(lock_file(run, "gate"), fcntl.LOCK_EX))
            stack.enter_context(_held(lock_file(run, "daemon"), fcntl.LOCK_EX))
        else:
            with _held(lock_file(run, "gate"), fcntl.LOCK_EX):
                stack.enter_context(_held(lock_file(run, "daemon"), fcntl.LOCK_SH))
        yield
