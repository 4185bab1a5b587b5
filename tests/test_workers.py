"""The real suites on xdist workers (tests/workers.py): each worker forwards SSH from its own
ports and chooses host ID blocks from its own slice, above where LXD and `ssp apply`
processes choose; the cluster's and the fault suite's tests go whole to one worker and run
one at a time; a daemon-wide test waits only for the tests running when it asks.

Before, every test took the first free ports of one window and the lowest free ID block of
all of root's IDs, so two tests at once on two workers were given the same ones."""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
import uuid
from pathlib import Path

import pytest
from workers import (
    GROUPS,
    ChainScheduling,
    daemon_turn,
    id_share,
    lock_file,
    port_window,
    worker,
)

from provisioner.values import subids
from provisioner.values.idranges import Allocator, IdRange

WINDOW = (40000, 40999)
# This machine's /etc/subuid (and subgid): root's ~150 blocks, and UIDs 1000-1099 delegated.
SUBIDS = "_lxd:100000:10000001\nroot:100000:10000001\nroot:1000:100\n"


def as_worker(monkeypatch: pytest.MonkeyPatch, index: int, count: int = 2) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(count))


def test_outside_xdist_a_test_has_the_whole_window_and_all_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    spans = subids.id_spans(SUBIDS, SUBIDS)
    assert worker() == (0, 1)
    assert port_window(WINDOW) == WINDOW
    assert id_share(spans) == spans


def test_two_workers_forward_ssh_from_ports_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    windows = []
    for index in (0, 1):
        as_worker(monkeypatch, index)
        windows.append(port_window(WINDOW))
    (a_first, a_last), (b_first, b_last) = windows
    assert WINDOW[0] <= a_first <= a_last < b_first <= b_last <= WINDOW[1]
    assert a_last - a_first + 1 >= 200  # room for the largest lab (20 ports) many times over


def test_two_passes_at_once_on_two_workers_never_choose_the_same_host_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spans = subids.id_spans(SUBIDS, SUBIDS)
    taken: list[IdRange] = []  # an empty host
    first_blocks, shares = [], []
    for index in (0, 1):
        as_worker(monkeypatch, index)
        share = id_share(spans)
        shares.append(share)
        # Each worker's pass sees the same host (nothing made yet) and takes the first fit.
        first_blocks.append(Allocator(share, taken).new())
    lowest = Allocator(spans, taken).new()  # what LXD or an `ssp apply` process would take
    assert None not in first_blocks and lowest is not None
    assert len({*first_blocks, lowest}) == 3
    (a,), (b,) = shares
    assert not a.overlaps(b)
    assert not a.overlaps(lowest) and not b.overlaps(lowest)
    assert all(s.size // 65536 >= 40 for s in (a, b))  # 6 containers at once fit many times
    assert all(any(s.within(span) for span in spans) for s in (a, b))


class Stub:
    """What daemon_turn reads of a test and of the run's config."""

    def __init__(self, path: str, *markers: str) -> None:
        self.path = Path(__file__).parent.parent / path
        self.markers = markers
        self.workerinput: dict[str, str] = {}

    def get_closest_marker(self, name: str) -> object:
        return name if name in self.markers else None


def held_together(monkeypatch: pytest.MonkeyPatch, first: Stub, second: Stub) -> bool:
    """Whether `second` gets its turn while `first` holds its own (two workers' tests)."""
    as_worker(monkeypatch, 0)
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", uuid.uuid4().hex)
    config = Stub("tests")
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with daemon_turn(config, second):  # type: ignore[arg-type]
            inside.set()

    with daemon_turn(config, first):  # type: ignore[arg-type]
        thread = threading.Thread(target=other)
        thread.start()
        together = inside.wait(timeout=1)
        release.set()
    thread.join(timeout=5)
    assert inside.is_set()  # and its turn came once the first was done
    return together


def test_two_tests_of_one_group_never_run_at_once_on_two_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    real, host = "tests/cluster/test_cluster_real.py", "tests/cluster/test_host_cluster.py"
    cluster = Stub(real), Stub(host)
    assert not held_together(monkeypatch, *cluster)
    faults = Stub("tests/faults/test_lxd_faults.py"), Stub("tests/integration/test_host_init.py")
    assert not held_together(monkeypatch, *faults)
    # Different groups, or none, share the daemon.
    assert held_together(monkeypatch, cluster[0], faults[0])
    assert held_together(monkeypatch, Stub("tests/integration/test_apply_real.py"), faults[1])


def test_a_test_that_stops_the_daemon_holds_it_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    down = Stub("tests/faults/test_daemon_down.py", "daemon_wide")
    other = Stub("tests/integration/test_apply_real.py")
    assert not held_together(monkeypatch, down, other)
    assert not held_together(monkeypatch, other, down)


def test_every_group_path_is_there() -> None:
    root = Path(__file__).parent.parent
    for paths in GROUPS.values():
        for path in paths:
            assert (root / path).exists(), path  # a renamed file would fall out of its group


class FakeNode:
    """What pytest-xdist's scheduler uses of a worker: the tests it is sent, by index."""

    def __init__(self, name: str) -> None:
        self.gateway = type("Gateway", (), {"id": name})()
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.sent += indexes

    def shutdown(self) -> None:
        self.shutting_down = True


def test_each_group_goes_whole_to_one_worker_first_and_the_rest_one_test_at_a_time() -> None:
    config = type(
        "Config",
        (),
        {
            "getvalue": staticmethod(lambda name: ["3*popen"] if name == "tx" else None),
            "option": type("Option", (), {"loadscopereorder": True})(),
        },
    )()
    collection = [
        "tests/cluster/test_apply_cluster.py::test_a",
        "tests/cluster/test_host_cluster.py::test_b",
        "tests/faults/test_lxd_faults.py::test_c",
        "tests/test_lxdapi_contract.py::test_d[real]",
        "tests/faults/test_daemon_down.py::test_e",
        *(f"tests/integration/test_apply_real.py::test_{n}" for n in range(8)),
    ]
    scheduler = ChainScheduling(config)  # type: ignore[arg-type]
    nodes = [FakeNode(f"gw{i}") for i in range(3)]
    for node in nodes:
        scheduler.add_node(node)  # type: ignore[arg-type]
        scheduler.add_node_collection(node, collection)  # type: ignore[arg-type]
    scheduler.schedule()

    def sent(node: FakeNode) -> list[str]:
        return [collection[i] for i in node.sent]

    first, second, third = (sent(n) for n in nodes)
    assert sorted(first) == sorted(collection[2:5])  # the lowest-ids group, whole, first
    assert sorted(second[:2]) == sorted(collection[:2])  # the cluster, whole
    # then one test a unit, each worker topped up to three: with two left it gets another
    rest = collection[5:]
    assert second[2:] == [rest[1]] and third == [rest[0], rest[2]]
    finished = 0
    while scheduler.workqueue:  # as a worker finishes a test, it is given the next
        scheduler.mark_test_complete(nodes[2], nodes[2].sent[finished])  # type: ignore[arg-type]
        finished += 1
    assert sent(nodes[2]) == [rest[0], *rest[2:]]


def held_by_another(path: Path) -> bool:
    """Whether someone holds the lock file PATH (flock, exclusive)."""
    if not path.exists():
        return False
    with path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


def test_a_daemon_wide_test_waits_only_for_the_tests_running_when_it_asks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    as_worker(monkeypatch, 0, count=3)
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", uuid.uuid4().hex)
    config = Stub("tests")
    order: list[str] = []
    inside = {name: threading.Event() for name in ("alone", "later")}
    leave = {name: threading.Event() for name in ("running", "alone", "later")}

    def turn(name: str, test: Stub) -> None:
        with daemon_turn(config, test):  # type: ignore[arg-type]
            order.append(name)
            if name in inside:
                inside[name].set()
            leave[name].wait(timeout=10)

    running = threading.Thread(target=turn, args=("running", Stub("tests/test_a.py")))
    running.start()
    while not order:  # a test holds the daemon, shared
        threading.Event().wait(0.01)
    alone = threading.Thread(
        target=turn, args=("alone", Stub("tests/faults/test_daemon_down.py", "daemon_wide"))
    )
    alone.start()
    gate = lock_file(os.environ["PYTEST_XDIST_TESTRUNUID"], "gate")
    while not held_by_another(gate):  # it asks, and waits for the running test
        threading.Event().wait(0.01)
    later = threading.Thread(target=turn, args=("later", Stub("tests/test_b.py")))
    later.start()
    # Without the gate a shared lock is given beside the running one, and with three
    # workers there was always one: the daemon-wide test waited for minutes.
    assert not inside["later"].wait(timeout=0.5)
    assert not inside["alone"].is_set()
    leave["running"].set()
    assert inside["alone"].wait(timeout=5)
    assert not inside["later"].is_set()
    leave["alone"].set()
    assert inside["later"].wait(timeout=5)
    leave["later"].set()
    for thread in (running, alone, later):
        thread.join(timeout=5)
    assert order == ["running", "alone", "later"]
