"""The console as a technician reads it on a phone (390x844) and at a desk (1366x900), in a real headless
Chromium: no page scrolls sideways, chart text is at least 11 px, the rule's limit is drawn with its value,
the incident's metrics come first, a value that breaks the rule is red, the ticket states the case (measured
against limit, checks), /tickets lists a repaired ticket until it is confirmed, and confirmation waits for the
telemetry. Screenshots are saved in the test's temporary folder (the path is printed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from firmware_sim.platform import PlatformServer
from gateway.config import ServiceConfig
from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, StartGateway, eventually
from tests.e2e.test_console_browser import AC, faulty_ac, start_chromium, text_of

pytestmark = pytest.mark.e2e

SECRET = "phone-test-secret"
SIZES = {"phone": (390, 844), "desktop": (1366, 900)}

# the widest the document is against the window, and the smallest chart text as drawn (its font size times the
# chart's scale), in CSS pixels
OVERFLOW_JS = "return [document.documentElement.scrollWidth, window.innerWidth];"
SMALLEST_CHART_TEXT_JS = """
var smallest = 1e9;
document.querySelectorAll('svg.chart').forEach(function(svg){
  var scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  svg.querySelectorAll('text').forEach(function(t){
    if (!t.textContent) { return; }
    smallest = Math.min(smallest, parseFloat(getComputedStyle(t).fontSize) * scale);
  });
});
return smallest;"""


@pytest.fixture(params=sorted(SIZES))
def sized_browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[webdriver.Chrome, str, Path]]:
    driver = start_chromium(tmp_path / "chromium-profile", *SIZES[request.param])
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots ({request.param}): {shots}")
    yield driver, request.param, shots
    driver.quit()


def fits(browser: webdriver.Chrome, page: str) -> None:
    document_width, window_width = browser.execute_script(OVERFLOW_JS)
    assert document_width <= window_width, f"{page} scrolls sideways: {document_width} px in {window_width} px"


def shoot(browser: webdriver.Chrome, shots: Path, name: str, screens: int = 6) -> None:
    """Screenshots of the page a screen at a time, as it is read on the device (name-0.png, name-1.png ...)."""
    height = int(browser.execute_script("return document.documentElement.scrollHeight;"))
    screen = int(browser.execute_script("return window.innerHeight;"))
    for i in range(min(screens, -(-height // screen))):
        browser.execute_script("window.scrollTo(0, arguments[0]);", i * screen)
        browser.save_screenshot(str(shots / f"{name}-{i}.png"))
    browser.execute_script("window.scrollTo(0, 0);")


async def test_the_console_reads_on_a_phone_and_a_desk_and_the_flow_keeps_its_order(
        start_gateway: StartGateway, platform: PlatformServer,
        sized_browser: tuple[webdriver.Chrome, str, Path]) -> None:
    browser, size, shots = sized_browser
    running, ticket_id = await faulty_ac(start_gateway, platform,
                                         ServiceConfig(webhook_secret=SECRET, poll_seconds=30))
    gateway = running.gateway
    base = f"http://127.0.0.1:{gateway.web_port}"
    platform.webhook_url = f"{base}/api/platform/events"
    platform.webhook_secret = SECRET
    [summary] = platform.store.list_tickets()
    await asyncio.to_thread(appliance_pages, browser, base, shots, size)

    # the technician repairs it; the telemetry has not verified it yet
    assigned = await platform.advance(summary["ticket_id"], "technician_assigned")
    assert assigned["webhook"] == "HTTP 200"
    assert (await platform.advance(summary["ticket_id"], "repaired"))["webhook"] == "HTTP 200"
    await eventually(lambda: gateway.service.timeline(ticket_id)["state"] == "repaired", 10, "the repair is recorded")
    async with aiohttp.ClientSession(headers=ADMIN) as http, \
            http.post(f"{base}/api/tickets/{ticket_id}/confirm", json={"rating": 5}) as response:
        assert response.status == 409 and "not verified the repair yet" in (await response.json())["error"]
    await asyncio.to_thread(ticket_pages, browser, base, shots, size, ticket_id)


def appliance_pages(browser: webdriver.Chrome, base: str, shots: Path, size: str) -> None:
    browser.get(f"{base}/?token={ADMIN_TOKEN}")
    assert browser.execute_script("return window.innerWidth;") == SIZES[size][0], "the page is as wide as asked"
    fits(browser, "the appliance list")
    assert AC in text_of(browser, "#faulty"), "a banner names the faulty appliance"
    first = browser.find_elements(By.CSS_SELECTOR, "#devices tr[data-device]")[0]
    assert first.get_attribute("data-device") == AC, "the faulty appliance comes first"
    shoot(browser, shots, f"{size}-list")

    browser.get(f"{base}/devices/{AC}")
    fits(browser, "the appliance page")
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    compared = {"discharge_pressure", "discharge_temperature", "compressor_on"}  # what the rule compared
    assert {c.get_attribute("data-metric") for c in charts[:2]} <= compared, "the incident's metrics come first"
    smallest = browser.execute_script(SMALLEST_CHART_TEXT_JS)
    assert smallest >= 11, f"chart text drawn at {smallest:.1f} px"
    pressure = browser.find_element(By.CSS_SELECTOR, "svg[data-metric='discharge_pressure']")
    assert pressure.find_elements(By.CSS_SELECTOR, "line.threshold"), "the rule's limit is drawn"
    assert "limit > 3,800 kPa" in pressure.find_element(By.CSS_SELECTOR, "text.threshold-label").text
    assert pressure.find_elements(By.CSS_SELECTOR, "polyline.breaking"), "the part that breaks it is red"
    ratio = browser.execute_script("var b=arguments[0].getBoundingClientRect(),v=arguments[0].viewBox.baseVal;"
                                   "return (b.width/b.height)/(v.width/v.height);", pressure)
    assert abs(ratio - 1) < 0.02, "the chart is not stretched"
    row = browser.find_element(By.CSS_SELECTOR, "#latest tr[data-metric='discharge_pressure']")
    assert "breaks its rule" in row.text and row.find_elements(By.CSS_SELECTOR, ".valid-bad")
    assert "kPa" in row.text and "degC" not in text_of(browser, "#latest"), "units as people write them"
    assert "1" in text_of(browser, "svg[data-metric='discharge_pressure'] + figcaption"), "markers are named"
    shoot(browser, shots, f"{size}-appliance")
    browser.get(f"{base}/devices/{AC}?range=incident")
    assert browser.find_elements(By.CSS_SELECTOR, "svg[data-metric='discharge_pressure'] line.incident")
    fits(browser, "the appliance page around the incident")
    browser.get(f"{base}/gateway")
    fits(browser, "the gateway page")
    shoot(browser, shots, f"{size}-gateway", screens=2)


def ticket_pages(browser: webdriver.Chrome, base: str, shots: Path, size: str, ticket_id: int) -> None:
    browser.get(f"{base}/tickets/{ticket_id}")
    fits(browser, "the ticket page")
    observed = text_of(browser, "#observed")
    assert "above 3,800 kPa" in observed and "kPa" in observed, observed
    assert text_of(browser, "#checks"), "the checks to make"
    assert "CNY" in text_of(browser, "#timeline"), "the charged items with their currency"
    assert "Repaired" in text_of(browser, "#state")
    assert not browser.find_elements(By.CSS_SELECTOR, "form#confirm"), "no confirmation before verification"
    assert browser.find_elements(By.CSS_SELECTOR, "form#confirm-unverified select[required]")
    assert not browser.find_elements(By.CSS_SELECTOR, "option[selected]"), "no rating is preset"
    smallest = browser.execute_script(SMALLEST_CHART_TEXT_JS)
    assert smallest >= 11, f"evidence chart text drawn at {smallest:.1f} px"
    shoot(browser, shots, f"{size}-ticket")

    browser.get(f"{base}/tickets")
    fits(browser, "the ticket list")
    row = browser.find_element(By.CSS_SELECTOR, f"#tickets tr[data-ticket='{ticket_id}']")
    assert row.get_attribute("data-state") == "repaired" and "Repaired" in row.text
    browser.get(f"{base}/tickets?state=confirmed")
    assert not browser.find_elements(By.CSS_SELECTOR, f"#tickets tr[data-ticket='{ticket_id}']")
    shoot(browser, shots, f"{size}-tickets")
