"""Host ID blocks on a real LXD: containers made at once never share one; a shared one is mended.

LXD 5.0.2 gave two isolated containers created at the same moment the same
`volatile.idmap.base` (root in one was root in the other on the host). ssp now chooses
every block itself; these tests make six containers four at a time and read each one's
map three ways: LXD's config, LXD's record of the running map, and `/proc/self/uid_map`
inside the container. SSP_IDMAP_RUNS repeats the make-and-remove cycle (bench/idmap_runs.py
runs it 20 times).
"""

from __future__ import annotations

import itertools
import json
import os

import pytest
import yaml

from integration.helpers import (
    Adapters,
    LabRepo,
    apply_pass,
    eventually,
    host_id_spans,
    in_instance,
    lxc,
)
from provisioner.doctor import checks as doctor
from provisioner.doctor.checks import Status
from provisioner.values.idranges import IdRange, overlaps, use_of

pytestmark = pytest.mark.lxd

RUNS = int(os.environ.get("SSP_IDMAP_RUNS", "1"))
OWNERS = ("carol", "carol", "carol", "carol", "alice", "alice")  # within the sample quotas


def config_of(project: str, name: str) -> dict[str, str]:
    out = lxc("config", "show", "--project", project, name).stdout
    config = yaml.safe_load(out)["config"]
    assert isinstance(config, dict)
    return {str(k): str(v) for k, v in config.items()}


def inside_block(project: str, name: str) -> IdRange:
    """Container UID 0's block as the kernel has it: the first line of /proc/self/uid_map."""
    # Read until it prints: LXD 5.0.2 under load sometimes ends an exec before its output
    # reached the client (an empty stdout, exit 0).
    out = eventually(lambda: in_instance(project, name, "cat", "/proc/self/uid_map").stdout, 10)
    first = out.split("\n")[0].split()
    assert first[0] == "0", first
    return IdRange(int(first[1]), 65536)


def blocks_of(project: str, names: list[str]) -> dict[str, IdRange]:
    found: dict[str, IdRange] = {}
    for name in names:
        config = config_of(project, name)
        use = use_of(project, name, config)
        assert use.current == use.next, (name, use)  # running with the block it was given
        assert use.current is not None
        assert config["volatile.idmap.base"] == config["security.idmap.base"]
        assert inside_block(project, name).base == use.current.base
        found[name] = use.current
    return found


def test_six_containers_made_four_at_a_time_get_six_blocks_of_their_own(
    lab: LabRepo, adapters: Adapters, suffix: str, lxd_project: str
) -> None:
    names = [f"{owner}-id{i}-{suffix}" for i, owner in enumerate(OWNERS)]
    requests = [
        lab.container(name, owner=owner, image="busybox", shares=[])
        for name, owner in zip(names, OWNERS, strict=True)
    ]
    spans = host_id_spans()
    for run in range(RUNS):
        seen = {(u.project, u.name) for u in adapters.main.id_maps()}
        done = apply_pass(lab, adapters, *requests, jobs=4)
        failed = {o.name: o.message for o in done.result.outcomes if not o.ok}
        assert not failed, (run, failed)
        blocks = blocks_of(lxd_project, names)
        values = sorted(blocks.values())
        assert len(set(values)) == 6, (run, blocks)
        assert not any(a.overlaps(b) for a, b in itertools.pairwise(values)), blocks
        assert all(any(b.within(s) for s in spans) for b in values), (blocks, spans)
        # ... and clear of every instance the host had when the pass looked, in every project
        # (other tests may be making containers of their own at the same moment).
        ours_or_seen = seen | {(lxd_project, n) for n in names}
        clashes = [
            o.describe()
            for o in overlaps(adapters.main.id_maps())
            if lxd_project in (o.first.project, o.second.project)
            and {(o.first.project, o.first.name), (o.second.project, o.second.name)} <= ours_or_seen
        ]
        assert clashes == []
        for name in names:  # the next run makes them anew (the removal is not under test)
            lxc("config", "set", "--project", lxd_project, name, "security.protection.delete=false")
            lxc("delete", "--force", "--project", lxd_project, name)


def test_apply_mends_two_containers_that_lxd_gave_the_same_block(
    lab: LabRepo, adapters: Adapters, suffix: str, lxd_project: str
) -> None:
    a, b = f"alice-a-{suffix}", f"alice-b-{suffix}"
    requests = [lab.container(n, image="busybox", shares=[]) for n in (a, b)]
    first = apply_pass(lab, adapters, *requests)
    assert all(o.ok for o in first.result.outcomes), first.result.outcomes
    # What LXD's race left behind: b running in a's block. (Unsetting the keys to look
    # exactly like LXD's own choice makes LXD choose afresh, so b is pinned there by hand.)
    shared = config_of(lxd_project, a)["security.idmap.base"]
    lxc("config", "set", "--project", lxd_project, b, f"security.idmap.base={shared}")
    lxc("restart", "--project", lxd_project, b)
    assert inside_block(lxd_project, a) == inside_block(lxd_project, b)
    spans = host_id_spans()
    found = doctor.check_idmaps(adapters.main.id_maps(), spans)
    assert found.status is Status.PROBLEM
    assert f"{lxd_project}/{a} and {lxd_project}/{b} share host IDs" in found.detail

    mended = apply_pass(lab, adapters, *requests)
    by_name = {o.name: o for o in mended.result.outcomes}
    assert (by_name[a].action, by_name[a].ok) == ("unchanged", True)  # first by path: kept
    assert by_name[b].action == "updated" and by_name[b].ok
    assert by_name[b].message.startswith(
        f"its host IDs {IdRange(int(shared))} overlapped another instance's: moved to "
    )
    assert by_name[b].message.endswith("(restarts the container)")
    blocks = blocks_of(lxd_project, [a, b])  # b restarted: the kernel has its new block
    assert blocks[a] == IdRange(int(shared)) and not blocks[a].overlaps(blocks[b])
    assert not [o.describe() for o in overlaps(adapters.main.id_maps()) if suffix in o.describe()]
    # A third pass has nothing left to do.
    before = len(adapters.mutations())
    third = apply_pass(lab, adapters, *requests)
    assert {o.action for o in third.result.outcomes} == {"unchanged"}
    assert len(adapters.mutations()) == before
    assert json.loads(config_of(lxd_project, b)["volatile.idmap.current"])


def test_a_container_made_before_ssp_chose_blocks_is_pinned_where_it_runs_without_a_restart(
    lab: LabRepo, adapters: Adapters, suffix: str, lxd_project: str
) -> None:
    name = f"alice-old-{suffix}"
    request = lab.container(name, image="busybox", shares=[])
    assert apply_pass(lab, adapters, request).result.ok
    running = inside_block(lxd_project, name)
    # An older ssp left the choice to LXD: no security.idmap.* keys. Removing them makes
    # LXD pick a block for the next start, which may differ from the running one.
    for key in ("security.idmap.base", "security.idmap.size"):
        lxc("config", "unset", "--project", lxd_project, name, key)
    pid = in_instance(lxd_project, name, "cat", "/proc/1/stat").stdout.split()[21]  # start time
    done = apply_pass(lab, adapters, request)
    (outcome,) = done.result.outcomes
    assert (outcome.action, outcome.ok) == ("updated", True)
    assert outcome.message == f"host IDs pinned at {running}"
    # Not restarted (init's start time is the same), and the next start keeps the block.
    assert in_instance(lxd_project, name, "cat", "/proc/1/stat").stdout.split()[21] == pid
    assert blocks_of(lxd_project, [name]) == {name: running}
