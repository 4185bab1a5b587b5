"""`ssp status` from what LXD holds: the GPU board, containers, accounts, quotas, leases.

The host is the in-memory LXD after real reconcile passes (tests/fakelxd.py), so the status is
read from the same labels and devices apply leaves on a real daemon (the real-LXD test is in
tests/integration/test_status_real.py).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
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
    assert "  1 of 4 free (GPU 2)" in text
    assert "Pool default: 300GiB of 1TiB used (29%)" in text
    data = json.loads(statuspage.to_json(status))
    assert data["free_gpus"] == [2]
    assert data["gpus"][0]["live"]["utilization"] == 87
    assert data["containers"][0]["expires"] == "2027-06-30"
    md = statuspage.markdown(status)
    assert "| 2 | NVIDIA GeForce RTX 4090 | **free · 空闲** | – |" in md
    page = statuspage.html(status)
    assert page.startswith("<!doctype html>")
    assert '<strong id="free-gpus">1 of 4 free (GPU 2)</strong>' in page
    assert "87% busy · 利用率" in page
    # self-contained: nothing fetched from elsewhere, one inline script of ours, no links
    # without a repository to link to
    assert page.count("<script") == 1 and "<script>" in page and " src=" not in page
    assert "http://" not in page and "https://" not in page


def test_html_escapes_what_it_shows(host: tuple[FakeLxd, Validation]) -> None:
    status = status_of(*host)
    odd = status.__class__(**{**status.__dict__, "host": "<b>x</b>", "notes": ("a<script>",)})
    page = statuspage.html(odd)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "a<script>" not in page


def test_the_page_says_how_many_are_free_which_and_when_the_next_one_frees(
    host: tuple[FakeLxd, Validation],
) -> None:
    status = status_of(*host)  # GPU 2 free; carol's GPU 3 lease ends 2027-01-20, alice's later
    assert statuspage.free_summary(status) == "1 of 4 free (GPU 2)"
    assert statuspage.next_frees(status) == date(2027, 1, 21)  # the day after her last day
    text = "\n".join(statuspage.text_lines(status))
    assert "  next GPU frees 2027-01-21" in text and "free: 2" not in text
    assert "GPUs · 显卡: **1 of 4 free (GPU 2)** · next GPU frees 2027-01-21" in (
        statuspage.markdown(status)
    )
    assert '<span id="next-free">next GPU frees 2027-01-21' in statuspage.html(status)


def test_times_are_the_labs_with_the_iso_time_for_the_age_script(
    host: tuple[FakeLxd, Validation],
) -> None:
    status = status_of(*host)  # made 2027-01-10 04:00 UTC: noon in Shanghai
    page = statuspage.html(status, "Asia/Shanghai")
    assert 'data-generated="2027-01-10T04:00:00+00:00"' in page
    assert ">updated · 更新于 2027-01-10 12:00 (Asia/Shanghai)</span>" in page
    assert "\n".join(statuspage.text_lines(status, "Asia/Shanghai")).startswith(
        "super-server at 2027-01-10 12:00 (Asia/Shanghai)"
    )


def test_given_back_and_expired_rows_say_so_not_a_running_lease(
    lab: Lab, host: tuple[FakeLxd, Validation]
) -> None:
    fake, v = host
    gone = next(c for c in status_of(fake, v).containers if c.name == "carol-gone")
    # its request asked until 2027-06-30, but it was given back: no "days left"
    assert statuspage.lease(gone) == f"given back {gone.retired}, stopped and kept"
    later = NOW + timedelta(days=11)
    then = lab.validate(
        lab.container("alice-x", gpus=2, expires="2027-06-30"),
        lab.container("carol-y", owner="carol", gpus=[3], expires="2027-01-20"),
        lab.account("bob-nb"),
        now=later,
    )
    assert run_pass(then, fake, fake.servers, now=later, sha="").result.ok
    rows = {c.name: c for c in status_of(fake, v, today=later.date()).containers}
    assert statuspage.lease(rows["carol-y"]) == "ended 2027-01-20 (1 days ago), stopped and kept"
    page = statuspage.html(status_of(fake, v, today=later.date()))
    assert "given back · 已归还" in page


def test_rows_link_to_their_pr_and_lease_issue_only_on_a_repository_address(
    host: tuple[FakeLxd, Validation],
) -> None:
    status = status_of(*host)
    sha = "0123456789abcdef0123456789abcdef01234567"
    row = next(c for c in status.containers if c.name == "alice-x")
    links = statuspage.links(replace(row, sha=sha), "https://github.com/lab/gpu-server")
    assert links["pr"] == f"https://github.com/lab/gpu-server/commit/{sha}"
    assert links["issue"].startswith("https://github.com/lab/gpu-server/issues?q=label%3Assp-lease")
    assert "Lease%20of%20container%20alice-x" in links["issue"]
    page = statuspage.html(status, "UTC", "https://github.com/lab/gpu-server")
    assert page.count('class="issue" href="https://github.com/lab/gpu-server/issues?q=') == 3
    for bad in ("javascript:alert(1)", 'https://github.com/lab/x"><b>', "http://github.com/a/b"):
        assert statuspage.links(row, bad) == {}
