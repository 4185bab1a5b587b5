"""`ssp status` on a real LXD, and its HTML page in a real browser.

One lab in the test's own project: alice's container, carol's whose lease ends soon, one of
carol's retired (its request removed), and bob's account on a Debian stand-in for the shared
server. `ssp status` runs as the CLI does, with the clock pinned after carol's last day, so
her container shows as expired. The page it writes is opened in headless Chromium (Debian's
package, driven by selenium): the board and tables must be there, the console must be clean,
and a screenshot is kept (under the test's tmp dir, and in $SSP_TEST_OUTPUT when set).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from integration.helpers import NOW, SHA, Adapters, LabRepo, apply_pass
from integration.test_ssh_login import make_shared_server
from provisioner import cli
from provisioner.host.usagedb import UsageDb
from provisioner.status.usage import month_of, month_span, previous_month
from provisioner.values.usage import Reading

pytestmark = [pytest.mark.lxd, pytest.mark.slow]

CAROL_ENDS = (NOW + timedelta(days=5)).date()
LATER = NOW + timedelta(days=7)  # two days after carol's last day


def ssp_status(
    lab: LabRepo, socket: str, *options: str, now: datetime = LATER, **more: str
) -> tuple[int, Path]:
    # The browser takes a page for HTML by its name: status.html, not status.out.
    out = lab.root / ("status.html" if "html" in options else "status.out")
    env = {
        **more,
        "SSP_NOW": now.isoformat(),
        "SSP_GPU_CHECK": "off",
        "LXD_DIR": str(Path(socket).parent),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    code = cli.main(["status", "--repo", str(lab.root), "--output", str(out), *options], env=env)
    return code, out


@pytest.fixture
def lab_made(tmp_path: Path, lxd_project: str, lxd_socket: str, suffix: str) -> LabRepo:
    lab = LabRepo.make(tmp_path, lxd_project, suffix, shared_ssh=True)
    make_shared_server(lab)
    adapters = Adapters.make(lxd_project, lxd_socket)
    alice = lab.container(f"alice-s-{suffix}", image="busybox", shares=[])
    carol = lab.container(
        f"carol-s-{suffix}", owner="carol", image="busybox", shares=[], expires=str(CAROL_ENDS)
    )
    gone = lab.container(f"carol-g-{suffix}", owner="carol", image="busybox", shares=[])
    account = lab.account("bob-nb")
    assert apply_pass(lab, adapters, alice, carol, gone, account).result.ok
    assert apply_pass(lab, adapters, alice, carol, account).result.ok  # carol-g retired
    return lab


def test_ssp_status_lists_containers_accounts_retired_and_expired_ones(
    lab_made: LabRepo, lxd_socket: str, suffix: str
) -> None:
    code, out = ssp_status(lab_made, lxd_socket, "--format", "json")
    assert code == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    rows = {c["name"]: c for c in data["containers"]}
    alice, carol, gone = (rows[f"{n}-{suffix}"] for n in ("alice-s", "carol-s", "carol-g"))
    assert (alice["owner"], alice["state"], alice["expires"]) == ("alice", "running", "2027-06-30")
    assert alice["ipv4"] and alice["ssh_port"] in range(*lab_made.ports)
    assert alice["days_left"] == (date(2027, 6, 30) - LATER.date()).days
    assert (carol["state"], carol["days_left"]) == ("expired", -2)
    assert (gone["state"], gone["retired"]) == ("retired", NOW.date().isoformat())
    (account,) = data["accounts"]
    assert (account["login"], account["owner"], account["state"]) == ("bob-nb", "bob", "active")
    assert data["free_gpus"] == [0, 1, 2, 3]  # nobody here asked for a GPU
    quotas = {q["member"]: q for q in data["quotas"]}
    assert (quotas["carol"]["containers"], quotas["alice"]["containers"]) == (1, 1)
    assert data["pool"]["name"] == "default" and data["pool"]["total"] > 0

    code, text = ssp_status(lab_made, lxd_socket)
    assert code == 0
    lines = text.read_text(encoding="utf-8")
    assert f"carol-s-{suffix}" in lines and "ended " in lines


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def test_the_status_page_shows_the_board_in_a_real_browser(
    lab_made: LabRepo, lxd_socket: str, suffix: str, tmp_path: Path
) -> None:
    found = _chromium()
    if found is None:
        pytest.skip("needs Debian's chromium and chromium-driver (`make test` installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    code, page = ssp_status(lab_made, lxd_socket, "--format", "html")
    assert code == 0
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        options.add_argument(flag)
    # A phone's screen (a desktop window has a minimum width): the board must still read.
    phone = {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0}}
    options.add_experimental_option("mobileEmulation", phone)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=found[1])
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get(page.as_uri())
        cards = driver.find_elements(By.CSS_SELECTOR, "#gpu-board .gpu")
        assert [c.get_attribute("data-gpu") for c in cards] == ["0", "1", "2", "3"]
        assert all("free · 空闲" in c.text for c in cards)
        assert "RTX 4090" in cards[0].text
        table = driver.find_element(By.ID, "containers").text
        assert f"alice-s-{suffix}" in table and "expired" in table and "given back" in table
        assert "bob-nb" in driver.find_element(By.ID, "accounts").text
        assert f"carol-s-{suffix}" in driver.find_element(By.ID, "upcoming").text
        # nothing overflows a phone's width but the tables, which scroll in their own box
        width, screen = driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert screen == 390 and width <= screen, (width, screen)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        shot = tmp_path / "status-page.png"
        assert driver.save_screenshot(str(shot))
        if os.environ.get("SSP_TEST_OUTPUT"):
            target = Path(os.environ["SSP_TEST_OUTPUT"])
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, target / shot.name)
    finally:
        driver.quit()


def _browser(found: tuple[str, str], phone: bool) -> Any:
    """Headless Chromium at a desktop's width, or emulating a phone (390 px wide)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(flag)
    if phone:
        metrics = {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0}}
        options.add_experimental_option("mobileEmulation", metrics)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(found[1]))


def test_the_page_is_current_matches_the_json_and_reads_at_desktop_and_phone_width(
    lab_made: LabRepo, lxd_socket: str, suffix: str, tmp_path: Path
) -> None:
    found = _chromium()
    if found is None:
        pytest.skip("needs Debian's chromium and chromium-driver (`make test` installs them)")
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    # made five minutes ago by the browser's clock; the links need the repository's address
    made = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    github = {"GITHUB_REPOSITORY": "lab/gpu-server", "GITHUB_SERVER_URL": "https://github.com"}
    code, out = ssp_status(lab_made, lxd_socket, "--format", "json", now=made)
    assert code == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    usage = {"SSP_USAGE_DB": str(_usage_db(tmp_path, made))}
    code, page = ssp_status(lab_made, lxd_socket, "--format", "html", now=made, **github, **usage)
    assert code == 0
    free, total = len(data["free_gpus"]), len(data["gpus"])
    labels = ", ".join(map(str, data["free_gpus"]))
    noun = "GPU" if free == 1 else "GPUs"
    shanghai = made.astimezone(ZoneInfo("Asia/Shanghai"))
    for phone in (False, True):
        driver = _browser(found, phone)
        try:
            driver.get(page.as_uri())
            updated = driver.find_element(By.ID, "updated").text
            assert re.fullmatch(r"updated [56] min ago · \S+ \S+ \(Asia/Shanghai\)", updated)
            assert f"{shanghai:%Y-%m-%d %H:%M}" in updated  # the lab's time, not UTC
            said = driver.find_element(By.ID, "free-gpus").text
            assert said == f"{free} of {total} free ({noun} {labels})"
            rows = driver.find_elements(By.CSS_SELECTOR, "#containers tr[data-name]")
            assert sorted(r.get_attribute("data-name") for r in rows) == sorted(
                c["name"] for c in data["containers"]
            )
            by_name = {r.get_attribute("data-name"): r for r in rows}
            gone = by_name[f"carol-g-{suffix}"]
            assert "given back" in gone.text and "days left" not in gone.text
            alice = by_name[f"alice-s-{suffix}"]
            pr = alice.find_element(By.CSS_SELECTOR, "a.pr").get_attribute("href")
            assert pr == f"https://github.com/lab/gpu-server/commit/{SHA}"
            issue = alice.find_element(By.CSS_SELECTOR, "a.issue").get_attribute("href")
            assert issue.startswith("https://github.com/lab/gpu-server/issues?q=")
            inline = alice.find_element(By.CSS_SELECTOR, ".lease-inline")
            column = alice.find_element(By.CSS_SELECTOR, "td.lease")
            # on a phone the lease sits under the name and the wide columns step aside
            assert inline.is_displayed() is phone and column.is_displayed() is not phone
            shown = inline if phone else column
            assert (
                shown.text
                == "until 2027-06-30 ("
                + str((date(2027, 6, 30) - shanghai.date()).days)
                + " days left)"
            )
            width, screen = driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]"
            )
            assert width <= screen, (phone, width, screen)
            # the containers' table fits too: its links need no sideways scrolling
            box = driver.execute_script(
                "var b = document.getElementById('containers').parentElement;"
                "return [b.scrollWidth, b.clientWidth]"
            )
            assert box[0] <= box[1], (phone, box)
            chart = _chart_reads(driver, phone)
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == []
            shot = tmp_path / f"status-{'phone' if phone else 'desktop'}.png"
            assert driver.save_screenshot(str(shot))
            hours = tmp_path / f"gpu-hours-{'phone' if phone else 'desktop'}.png"
            assert chart.screenshot(str(hours))
            if os.environ.get("SSP_TEST_OUTPUT"):
                target = Path(os.environ["SSP_TEST_OUTPUT"])
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, target / shot.name)
                shutil.copy(hours, target / hours.name)
        finally:
            driver.quit()


def _usage_db(tmp_path: Path, now: datetime) -> Path:
    """Readings for the page's chart: last month alice held a GPU 10 h at 50 % and bob 20 h
    at 0 %; this month alice 2 h at 100 %."""
    zone = "Asia/Shanghai"
    last = month_span(previous_month(now, zone), zone)[0] + 86_400
    this = month_span(month_of(now, zone), zone)[0]
    readings = [
        *(
            Reading(last + i * 300, "0000:4b:00.0", 300, 50, 0, 1, 1, "alice", "a")
            for i in range(120)
        ),
        *(Reading(last + i * 300, "0000:b1:00.0", 300, 0, 0, 1, 0, "bob", "b") for i in range(240)),
        *(
            Reading(this + i * 300, "0000:4b:00.0", 300, 100, 0, 1, 1, "alice", "a")
            for i in range(24)
        ),
    ]
    path = tmp_path / "usage.sqlite"
    with UsageDb(path) as db:
        db.record(readings)
    return path


def _chart_reads(driver: Any, phone: bool) -> Any:
    """The GPU-hours chart is shown, its figures are right, its bars are drawn to scale and it
    fits the screen."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    chart = driver.find_element(By.ID, "gpu-hours")
    assert chart.is_displayed(), phone
    members = chart.find_elements(By.CSS_SELECTOR, ".member")
    assert [m.get_attribute("data-member") for m in members] == ["alice", "bob"]
    alice, bob = [m.find_elements(By.CSS_SELECTOR, ".month") for m in members]
    assert [b.find_element(By.CSS_SELECTOR, ".num").text for b in alice] == [
        "5.0 / 10.0 h",
        "2.0 / 2.0 h",
    ]
    assert bob[0].find_element(By.CSS_SELECTOR, ".num").text == "0.0 / 20.0 h"

    def width(month: Any, part: str) -> float:
        return float(
            driver.execute_script(
                "return arguments[0].querySelector(arguments[1]).getBoundingClientRect().width",
                month,
                part,
            )
        )

    track = width(bob[0], ".track")
    assert track > 100, (phone, track)  # a bar, not a sliver, on a phone too
    # one scale for everyone: every track is as wide, whatever the figures beside it
    tracks = {round(width(month, ".track")) for month in [*alice, *bob]}
    assert tracks == {round(track)}, (phone, tracks)
    assert width(bob[0], ".held") == pytest.approx(track, abs=1)  # the widest bar
    assert width(alice[0], ".held") == pytest.approx(track / 2, abs=1)  # 10 h of 20
    assert width(alice[0], ".used") == pytest.approx(track / 4, abs=1)  # half of it used
    assert width(bob[0], ".used") == pytest.approx(0, abs=0.5)
    right = driver.execute_script("return arguments[0].getBoundingClientRect().right", chart)
    assert right <= driver.execute_script("return window.innerWidth"), (phone, right)
    return chart
