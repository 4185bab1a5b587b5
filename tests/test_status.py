"""`ssp status` from what LXD holds: the GPU board, containers, accounts, quotas, leases.

The host is the in-memory LXD after real reconcile passes (tests/fakelxd.py), so the status is
read from the same labels and devices apply leaves on a real daemon (the real-LXD test is in
tests/integration/test_status_real.py).
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta

import pytest
from fakelxd import NOW, TODAY, FakeLxd, Lab

from provisioner.flows.reconcile import observe, run_pass
from provisioner.status import page as statuspage
from provisioner.status.server import Live, PoolUse, ServerStatus, build
from provisioner.validation.validate import Validation

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

PCI = {0: "0000:18:00.0", 1: "0000:3b:00.0", 2: "0000:86:00.0", 3: "0000:af:00.0"}


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("keys"))


def status_of(fake: FakeLxd, v: Validation, today: date = TODAY, **extra: object) -> ServerStatus:
    assert v.config is not None
    seen = observe(v.config, fake)
    return build(
        policy=v.config.policy,
        inventory=v.config.inventory,
        requests=(*v.valid, *v.expired),
        instances=seen.instances,
        servers=seen.servers,
        now=NOW,
        today=today,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def host(lab: Lab) -> tuple[FakeLxd, Validation]:
    """alice holds GPUs 0-1 until 2027-06-30, carol GPU 3 ([3]) until 2027-01-20, bob an
    account; dave-gone was retired (its request removed)."""
    fake = FakeLxd.seeded(present_gpus=list(PCI.values()))
    gone = lab.container("carol-gone", owner="carol", gpus=0)
    first = lab.validate(gone)
    run_pass(first, fake, fake.servers, now=NOW, sha="")
    v = lab.validate(
        lab.container("alice-x", gpus=2, expires="2027-06-30"),
        lab.container("carol-y", owner="carol", gpus=[3], expires="2027-01-20"),
        lab.account("bob-nb"),
    )
    done = run_pass(v, fake, fake.servers, now=NOW, sha="")
    assert done.result.ok, done.result.outcomes
    return fake, v


def test_the_board_says_who_holds_each_gpu_until_when(host: tuple[FakeLxd, Validation]) -> None:
    status = status_of(*host)
    board = {g.index: (g.container, g.owner, g.until) for g in status.gpus}
    assert board == {
        0: ("alice-x", "alice", date(2027, 6, 30)),
        1: ("alice-x", "alice", date(2027, 6, 30)),
        2: (None, None, None),
        3: ("carol-y", "carol", date(2027, 1, 20)),
    }
    assert status.free_gpus == (2,)


def test_containers_accounts_and_retired_ones_with_their_leases(
    host: tuple[FakeLxd, Validation],
) -> None:
    status = status_of(*host)
    rows = {c.name: (c.owner, c.state, c.gpus, c.days_left) for c in status.containers}
    assert rows == {
        "alice-x": ("alice", "running", (0, 1), 171),
        "carol-gone": ("carol", "retired", (), (date(2027, 6, 30) - TODAY).days),
        "carol-y": ("carol", "running", (3,), 10),
    }
    (account,) = status.accounts
    assert (account.login, account.owner, account.server, account.state) == (
        "bob-nb",
        "bob",
        "common",
        "active",
    )
    assert [getattr(r, "name", None) or getattr(r, "login", "") for r in status.upcoming(30)] == [
        "carol-y"
    ]


def test_a_lease_that_ended_shows_expired_until_it_is_retired(
    host: tuple[FakeLxd, Validation],
) -> None:
    fake, v = host
    later = TODAY + timedelta(days=11)  # carol-y's last day was 2027-01-20
    status = status_of(fake, v, today=later)
    states = {c.name: c.state for c in status.containers}
    assert states["carol-y"] == "expired"
    assert statuspage.lease(next(c for c in status.containers if c.name == "carol-y")) == (
        "ended 2027-01-20 (1 days ago)"
    )


def test_an_expired_container_kept_stopped_shows_expired_and_holds_no_gpu(
    lab: Lab, host: tuple[FakeLxd, Validation]
) -> None:
    fake, v = host
    later = TODAY + timedelta(days=11)  # carol-y's last day was 2027-01-20
    then = lab.validate(
        lab.container("alice-x", gpus=2, expires="2027-06-30"),
        lab.container("carol-y", owner="carol", gpus=[3], expires="2027-01-20"),
        lab.account("bob-nb"),
        now=NOW + timedelta(days=11),
    )
    assert [i.request.name for i in then.expired] == ["carol-y"]
    assert run_pass(then, fake, fake.servers, now=NOW + timedelta(days=11), sha="").result.ok
    assert fake.record("carol-y").status == "Stopped"
    status = status_of(fake, v, today=later)
    row = next(c for c in status.containers if c.name == "carol-y")
    assert (row.state, row.retired) == ("expired", later)
    assert {c.name: c.state for c in status.containers}["carol-gone"] == "retired"
    assert 3 in status.free_gpus
    assert "carol-y" in [getattr(r, "name", "") for r in status.upcoming(30)]


def test_quota_use_counts_live_containers_and_their_gpus(
    host: tuple[FakeLxd, Validation],
) -> None:
    quotas = {q.member: (q.containers, q.containers_limit, q.gpus, q.gpus_limit) for q in
              status_of(*host).quotas}  # fmt: skip
    assert quotas["alice"] == (1, 2, 2, 2)
    assert quotas["carol"] == (1, 4, 1, 4)  # the retired one no longer counts
    assert quotas["bob"] == (0, 2, 0, 2)


def test_text_json_markdown_and_html_carry_the_same_facts(
    host: tuple[FakeLxd, Validation],
) -> None:
    live = {PCI[0]: Live(87, 20 * 2**30, 24 * 2**30)}
    pool = PoolUse("default", 300 * 2**30, 1024 * 2**30)
    status = status_of(*host, live=live, pool=pool)
    text = "\n".join(statuspage.text_lines(status))
    assert "  GPU 0  NVIDIA GeForce RTX 4090" in text
    assert "alice-x (alice, until 2027-06-30)  87% busy, 20GiB of 24GiB" in text
    assert "  free: 2" in text
    assert "Pool default: 300GiB of 1TiB used (29%)" in text
    data = json.loads(statuspage.to_json(status))
    assert data["free_gpus"] == [2]
    assert data["gpus"][0]["live"]["utilization"] == 87
    assert data["containers"][0]["expires"] == "2027-06-30"
    md = statuspage.markdown(status)
    assert "| 2 | NVIDIA GeForce RTX 4090 | **free · 空闲** | – |" in md
    page = statuspage.html(status)
    assert page.startswith("<!doctype html>")
    assert '<strong id="free-gpus">2</strong>' in page
    assert "87% busy · 利用率" in page
    # self-contained: nothing fetched from elsewhere, no script
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_html_escapes_what_it_shows(host: tuple[FakeLxd, Validation]) -> None:
    status = status_of(*host)
    odd = status.__class__(**{**status.__dict__, "host": "<b>x</b>", "notes": ("a<script>",)})
    page = statuspage.html(odd)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "a<script>" not in page
