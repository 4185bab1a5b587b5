"""Who waits in line for GPUs, in `ssp status` (text, JSON, Markdown, the page) and in the
published snapshot: each waiting request with its place by merge order (not path order),
the GPU it waits for and the day that GPU frees.

The host is the in-memory LXD after real `ssp apply` runs (tests/fakelxd.py) on a git
checkout whose history gives the merge order; the status is observed as `ssp status` and
`ssp publish` observe it (`flows.observe.observe_status`).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from fakegithub import FakeGitHub
from fakelxd import NOW, FakeLxd, Lab
from test_comments import (  # noqa: F401  (lab, fake_lxd: fixtures)
    commit,
    fake_lxd,
    lab,
    merged,
    skip_without_tools,
    ssp_apply,
)

from provisioner.flows.observe import observe_status
from provisioner.status import page as statuspage
from provisioner.status import snapshot as snapshots
from provisioner.values.policymodels import Policy
from provisioner.values.state import Pool


class _Host:
    """The in-memory LXD as `ssp status` reaches it (no storage pool to show)."""

    def __init__(self, fake: FakeLxd) -> None:
        self.fake = fake

    def __getattr__(self, name: str) -> object:
        return getattr(self.fake, name)

    def storage_pool(self, name: str, member: str = "") -> Pool | None:
        return None


@skip_without_tools
def test_status_and_the_snapshot_list_who_waits_in_merge_order(
    lab: Lab,  # noqa: F811
    fake_lxd: FakeLxd,  # noqa: F811
    fake_github: FakeGitHub,
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    bob = lab.container("bob-two", owner="bob", gpus=2, expires="2027-01-15")  # GPUs 0 and 1
    sha = commit(lab, repo, bob)
    assert ssp_apply(repo, fake_github, sha, tmp_path)[0] == 0
    # carol pins GPU 1, then alice pins GPU 0 (merged later, though her path sorts first)
    carol = lab.container("carol-pin", owner="carol", gpus=[1])
    alice = lab.container("alice-pin", gpus=[0])
    for requests in ((bob, carol), (bob, carol, alice)):
        sha = commit(lab, repo, *requests)
        merged(fake_github, sha, requests[-1][0].split("/")[1], requests[-1][0])
        assert ssp_apply(repo, fake_github, sha, tmp_path)[0] == 0

    connect = lambda _p: (_Host(fake_lxd), fake_lxd.servers)  # noqa: E731
    seen, _v = observe_status(repo, NOW, connect, read_gpus=False)  # type: ignore[arg-type]
    assert seen is not None
    status = seen.status
    assert [(w.place, w.name, w.owner, w.gpus) for w in status.waiting] == [
        (1, "carol-pin", "carol", (1,)),
        (2, "alice-pin", "alice", (0,)),
    ]
    text = "\n".join(statuspage.text_lines(status))
    assert "Waiting for GPUs (in line by merge order):" in text
    assert "    1. carol-pin" in text and "1st in line; GPU 1 frees on 2027-01-16" in text
    assert "    2. alice-pin" in text and "2nd in line; GPU 0 frees on 2027-01-16" in text
    data = json.loads(statuspage.to_json(status))
    assert [(w["place"], w["request_path"], w["frees"]) for w in data["waiting"]] == [
        (1, "requests/carol/carol-pin.yaml", "2027-01-16"),
        (2, "requests/alice/alice-pin.yaml", "2027-01-16"),
    ]
    assert "| 2 | alice\\-pin | alice | 2nd in line; GPU 0 frees on 2027\\-01\\-16 |" in (
        statuspage.markdown(status)
    )
    page = statuspage.html(status)
    assert '<table id="waiting">' in page
    assert '<tr data-name="alice-pin"><td class="place">2</td>' in page

    # The snapshot the PR check reads carries the line, and reads back the same.
    policy: Policy = seen.policy
    snap = snapshots.make(status, seen.instances, policy)
    again = snapshots.parse(
        snapshots.to_json(snap).encode(), NOW + timedelta(hours=1), timedelta(hours=30)
    )
    assert again.status.waiting == status.waiting
