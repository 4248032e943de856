"""The web console in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium):
charts drawn with the incident marker, the ticket page through a technician link, and the 401/403 cases.
Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from firmware_sim.platform import PlatformServer
from gateway.config import PROJECT_ROOT, ServiceConfig
from gateway.web.access import Access
from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, RunningGateway, StartGateway, eventually
from tests.e2e.test_diagnosis_paths import publish_all

pytestmark = pytest.mark.e2e

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "console"
AC = "ac-web"
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync")


def start_chromium(profile: Path, width: int = 412, height: int = 915) -> webdriver.Chrome:
    """Headless Chromium with a window of `width` x `height` CSS pixels (default: a phone's screen); the test
    fails, saying why, where Chromium or its driver is missing or does not start."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(chromium).exists() and Path(driver_path).exists()):
        pytest.fail("Chromium and its driver are needed: `make test` installs them (apt-get install chromium "
                    "chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
    except WebDriverException as exc:
        pytest.fail(f"headless Chromium did not start: {exc.msg}")
    driver.set_page_load_timeout(30)
    # a headless window is at least 500 px wide: the page's viewport is set to the size asked for, as a phone's is
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
    return driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    driver = start_chromium(tmp_path / "chromium-profile")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def ac_half_hour(now: float) -> list[tuple[str, bytes, bool]]:
    """30 minutes of a cooling AC every 10 s; its condenser fan fails 3 minutes before now."""
    rng = random.Random(5)
    meta = (f"appliances/{AC}/meta", orjson.dumps({"type": "air_conditioner", "brand": "Midea",
                                                    "model": "KFR-35GW", "serial": "SN-WEB-1"}), True)
    other = ("appliances/fridge-web/meta", orjson.dumps({"type": "refrigerator", "brand": "Haier"}), True)
    messages = [meta, other]
    for i in range(180):
        ts = now - 1800 + i * 10
        failed = ts > now - 180
        metrics = {"compressor_on": 1, "outdoor_temperature": 31 + rng.uniform(-0.3, 0.3),
                   "local_temperature": 25 + rng.uniform(-0.2, 0.2),
                   "discharge_pressure": (4150 if failed else 2650) + rng.uniform(-20, 20),
                   "discharge_temperature": (108 if failed else 74) + rng.uniform(-1, 1),
                   "compressor_current": 7.5 + rng.uniform(-0.3, 0.3)}
        messages.append((f"appliances/{AC}/telemetry", orjson.dumps({"ts": ts, "metrics": metrics}), False))
    return messages


async def faulty_ac(start_gateway: StartGateway, platform: PlatformServer,
                    service: ServiceConfig | None = None) -> tuple[RunningGateway, int]:
    running = await start_gateway(**({"service": service} if service else {}))
    await publish_all(running.broker_host, running.broker_port, ac_half_hour(time.time()))
    await eventually(lambda: len(platform.store.list_tickets()) == 1, 20, "the condenser ticket is delivered")
    return running, running.gateway.db.tickets()[0]["ticket_id"]


def text_of(browser: webdriver.Chrome, css: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, css).text)


# The gateway serves these pages from this test's event loop, so every browser session runs on a thread.

async def test_device_page_draws_the_chart_and_the_incident_marker(
        start_gateway: StartGateway, platform: PlatformServer, browser: webdriver.Chrome) -> None:
    running, _ = await faulty_ac(start_gateway, platform)
    await asyncio.to_thread(owner_pages, browser, f"http://127.0.0.1:{running.gateway.web_port}")


def owner_pages(browser: webdriver.Chrome, base: str) -> None:
    browser.get(f"{base}/devices/{AC}?range=1h&token={ADMIN_TOKEN}")
    chart = browser.find_element(By.CSS_SELECTOR, "svg[data-metric='discharge_pressure']")
    points = chart.find_element(By.CSS_SELECTOR, "polyline.line").get_attribute("points") or ""
    assert int(chart.get_attribute("data-points") or 0) >= 100 and len(points.split()) >= 100
    assert chart.find_elements(By.CSS_SELECTOR, "line.incident"), "the incident's onset is marked"
    assert chart.find_elements(By.CSS_SELECTOR, "line.threshold"), "the rule's limit is drawn"
    assert "kPa" in (chart.get_attribute("aria-label") or "")
    assert "condenser airflow loss" in text_of(browser, "#incidents")
    assert "High-side gauge pressure" in text_of(browser, "#latest")
    browser.save_screenshot(str(ARTIFACTS / "device-page.png"))

    browser.get(f"{base}/?type=air_conditioner")  # the session cookie from ?token= signs the owner in
    assert AC in text_of(browser, "#devices") and "fridge-web" not in text_of(browser, "#devices")
    browser.get(f"{base}/gateway")
    assert "messages/s" in text_of(browser, "#rates")
    browser.save_screenshot(str(ARTIFACTS / "gateway-page.png"))


async def test_a_technician_link_shows_only_its_ticket_and_appliance(
        start_gateway: StartGateway, platform: PlatformServer, browser: webdriver.Chrome) -> None:
    running, ticket_id = await faulty_ac(start_gateway, platform)
    base = f"http://127.0.0.1:{running.gateway.web_port}"
    async with aiohttp.ClientSession(headers=ADMIN) as http, \
            http.get(f"{base}/api/tickets/{ticket_id}/technician-link") as response:
        link = (await response.json())["path"]
    expired = Access(ADMIN_TOKEN, running.gateway.seal_key, running.gateway.db).technician_link(
        ticket_id, now=time.time() - 8 * 86400)
    await asyncio.to_thread(technician_pages, browser, base, ticket_id, link, expired)


def technician_pages(browser: webdriver.Chrome, base: str, ticket_id: int, link: str, expired: str) -> None:
    browser.get(f"{base}/")
    assert text_of(browser, "#status") == "401 Sign in needed"
    browser.save_screenshot(str(ARTIFACTS / "401.png"))

    browser.get(base + link)
    assert browser.current_url == f"{base}/tickets/{ticket_id}"
    assert "Condenser airflow loss" in text_of(browser, "#title") and "冷凝器散热不良" in text_of(browser, "#title")
    assert "Replace outdoor fan motor" in text_of(browser, "#price")
    timeline = text_of(browser, "#timeline")
    for step in ("Fault detected", "Diagnosed", "Ticket opened", "Accepted by the service platform"):
        assert step in timeline
    assert text_of(browser, "#seal").startswith("Seal: valid")
    assert browser.find_elements(By.CSS_SELECTOR, "#evidence svg line.incident")
    assert not browser.find_elements(By.CSS_SELECTOR, "form"), "a technician cannot enter codes or confirm"
    browser.save_screenshot(str(ARTIFACTS / "ticket-technician.png"))

    browser.get(f"{base}/devices/{AC}")
    assert browser.find_elements(By.CSS_SELECTOR, "svg[data-metric='discharge_pressure']")
    for forbidden in ("/gateway", "/", "/devices/fridge-web"):
        browser.get(base + forbidden)
        assert text_of(browser, "#status") == "403 Not allowed", forbidden
    browser.save_screenshot(str(ARTIFACTS / "403-other-device.png"))
    browser.get(f"{base}/metrics")
    assert '"error": "a technician link shows only its ticket and its appliance"' in browser.page_source

    browser.delete_all_cookies()
    browser.get(f"{base}/t/{expired}")
    assert text_of(browser, "#reason") == "this technician link has expired"
    browser.get(f"{base}/t/{link.rsplit('/', 1)[1][:-4]}beef")
    assert text_of(browser, "#reason") == "not a technician link of this gateway"
