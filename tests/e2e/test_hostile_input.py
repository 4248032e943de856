"""Hostile input against a running gateway (real broker, real HTTP): nothing answers 500, nothing reaches the
last line of defence (`internal_errors`), every dropped message is counted with its reason, and the gateway
still finds a real fault afterwards."""

from __future__ import annotations

import logging
import time

import aiohttp
import orjson
import pytest
from yarl import URL

from firmware_sim.platform import PlatformServer
from gateway.config import ServiceConfig
from gateway.web.access import Access
from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, StartGateway, eventually
from tests.e2e.test_diagnosis_paths import publish_all

pytestmark = pytest.mark.e2e

BIG = b"1" + b"0" * 400  # 10**400: beyond any float


def hostile_mqtt(now: float) -> list[tuple[str, bytes, bool]]:
    wh = "appliances/wh-x"
    return [
        (f"{wh}/meta", orjson.dumps({"type": "water_heater", "brand": "A"}), True),
        (f"{wh}/telemetry", b'{"ts": NaN, "metrics": {"tank_temperature": 50}}', False),
        (f"{wh}/telemetry", b'{"ts": true, "metrics": {"tank_temperature": 50}}', False),
        (f"{wh}/telemetry", b'{"ts": ' + BIG + b', "metrics": {"tank_temperature": 50}}', False),
        (f"{wh}/telemetry", b'{"ts": %d, "metrics": {"tank_temperature": ' % int(now) + BIG + b"}}", False),
        (f"{wh}/telemetry", b"[" * 30_000 + b"]" * 30_000, False),
        (f"{wh}/telemetry", b"\xff\xfe\x00garbage", False),
        (f"{wh}/telemetry", orjson.dumps({"ts": now, "metrics": {"tank_temperature": "hot", "x" * 300: 1}}), False),
        (f"{wh}/event", b'{"ts": true, "code": "E1"}', False),
        (f"{wh}/event", b'{"ts": NaN, "code": "E1"}', False),
        (f"{wh}/event", orjson.dumps({"code": "E" * 10_000}), False),
        (f"{wh}/meta", orjson.dumps({"type": "refrigerator"}), True),  # the type of a known appliance never changes
        ("appliances/wh-y/meta", orjson.dumps({"type": "water_heater", "brand": "B" * 1000}), True),
        (f"{wh}/status", b"\x00" * 1000, False),
        ("appliances/..%2F/telemetry", b"{}", False),  # a device id outside [A-Za-z0-9_.:-]
        ("appliances/" + "d" * 300 + "/telemetry", b"{}", False),  # ... or longer than 128
        (f"{wh}/firmware", b"{}", False),  # no such kind
    ]


async def test_hostile_mqtt_and_http_input_is_refused_with_reasons_and_the_gateway_keeps_working(
        start_gateway: StartGateway, platform: PlatformServer) -> None:
    running = await start_gateway(service=ServiceConfig(webhook_secret="hostile-secret"))
    gateway = running.gateway
    base = f"http://127.0.0.1:{gateway.web_port}"
    now = time.time()
    await publish_all(running.broker_host, running.broker_port, hostile_mqtt(now))
    messages = hostile_mqtt(now)
    await eventually(lambda: gateway.ingest.messages >= len(messages), 10, "every hostile message was taken in")
    dropped = gateway.drops.as_dict()
    assert dropped.get("non_finite", 0) >= 3, dropped  # NaN ts, 10**400 as ts and as a value
    assert dropped.get("bad_schema", 0) >= 6, dropped  # bool ts (x2), long code, type change, long brand, status
    assert dropped.get("malformed_json", 0) >= 2 and dropped.get("unknown_topic", 0) == 3, dropped
    assert gateway.registry.appliance_type("wh-x") == "water_heater"
    assert gateway.registry.get("wh-y") is None

    async with aiohttp.ClientSession(headers=ADMIN) as owner, aiohttp.ClientSession() as nobody:
        answers = {}
        for name, session, method, path, kwargs in [
            ("23-digit ticket id", owner, "GET", "/api/tickets/12345678901234567890123", {}),
            ("23-digit ticket page", owner, "GET", "/tickets/12345678901234567890123", {}),
            ("ticket id 2**63", owner, "GET", "/api/tickets/9223372036854775808", {}),
            ("unicode digits in a link", nobody, "GET", "/t/\u00b2\u00b3.\u0661\u0662.abc", {}),
            ("a link of 10,000 characters", nobody, "GET", "/t/" + "1" * 10_000, {}),
            ("a forged link", nobody, "GET", "/t/1.99999999999." + "0" * 32, {}),
            ("a link as a cookie", nobody, "GET", "/tickets/1", {"cookies": {"gw_technician": "1.\u00b2.x"}}),
            ("non-ASCII signature", nobody, "POST", "/api/platform/events",
             {"data": b"{}", "headers": {"X-Platform-Signature": "t=1,v1=\u00e9\u00e9"}}),
            ("unicode-digit signature time", nobody, "POST", "/api/platform/events",
             {"data": b"{}", "headers": {"X-Platform-Signature": "t=\u0661\u0662,v1=00"}}),
            ("oversized webhook", nobody, "POST", "/api/platform/events", {"data": b"x" * 200_000}),
            ("bad page", owner, "GET", "/api/devices?limit=-5", {}),
            ("huge page", owner, "GET", "/api/tickets?limit=100000000", {}),
            ("23-digit offset", owner, "GET", "/api/tickets?offset=12345678901234567890123", {}),
            ("history from NaN", owner, "GET", "/api/devices/wh-x/history?from=nan", {}),
            ("history to inf", owner, "GET", "/api/devices/wh-x/history?to=inf", {}),
            ("device id of 10,000 chars", owner, "GET", "/api/devices/" + "d" * 10_000, {}),
            ("a token of another script", nobody, "GET", "/api/status",
             {"headers": {"Authorization": "Bearer \u00e9\u00e9\u00e9"}}),
            ("visit code not JSON", owner, "POST", "/api/tickets/1/visit-code", {"data": b"{not json"}),
            ("confirm with a list", owner, "POST", "/api/tickets/1/confirm", {"json": [1, 2]}),
        ]:
            async with session.request(method, base + path, allow_redirects=False, **kwargs) as response:
                answers[name] = response.status
        assert all(400 <= status < 500 for status in answers.values()), answers
        async with owner.get(base + "/api/status") as response:
            status = await response.json()
    assert status["internal_errors"] == 0 and status["pipeline_alive"], status

    # and a real fault is still found and delivered
    await publish_all(running.broker_host, running.broker_port, [
        ("appliances/ac-ok/meta", orjson.dumps({"type": "air_conditioner", "brand": "Gree"}), True),
        *[("appliances/ac-ok/telemetry", orjson.dumps(
            {"ts": now + i, "metrics": {"compressor_on": 1, "compressor_current": 25.0}}), False) for i in range(15)]])
    await eventually(lambda: len(platform.store.list_tickets()) == 1, 15, "the real fault's ticket is delivered")


async def test_the_console_refuses_cross_site_changes_and_leaks_no_credential(
        start_gateway: StartGateway, platform: PlatformServer, caplog: pytest.LogCaptureFixture) -> None:
    """A cookie-only POST with a foreign Origin was accepted (visit-code attempts consumed, a ticket confirmed);
    the technician link was written to the access log and accepted as ?access=; the session cookie held the
    owner's token itself; no CSP, X-Frame-Options or Referrer-Policy."""
    running = await start_gateway()
    gateway = running.gateway
    base = f"http://127.0.0.1:{gateway.web_port}"
    link = Access(ADMIN_TOKEN, gateway.seal_key, gateway.db).technician_link(1)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:  # cookies of an IP
        async with browser.get(f"{base}/?token={ADMIN_TOKEN}") as response:
            assert response.status == 200
            for header in ("Content-Security-Policy", "X-Frame-Options", "Referrer-Policy", "X-Content-Type-Options"):
                assert header in response.headers, header
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        session = browser.cookie_jar.filter_cookies(URL(base))["gw_session"].value
        assert session and ADMIN_TOKEN not in session
        for origin in ("http://evil.example", f"http://127.0.0.1:{gateway.web_port + 1}", "null"):
            async with browser.post(f"{base}/api/tickets/1/confirm", json={"rating": 1},
                                    headers={"Origin": origin}) as response:
                assert response.status == 403 and "must come from a page of this console" in await response.text()
        async with browser.post(f"{base}/tickets/1/visit-code", data={"code": "123456"},
                                allow_redirects=False) as response:
            assert response.status == 403  # neither Origin nor Referer
        async with browser.post(f"{base}/api/tickets/1/confirm", json={"rating": 1},
                                headers={"Origin": base}) as response:
            assert response.status == 409  # from this console: it reaches the handler (no ticket 1 to confirm)
        async with browser.get(f"{base}/no-such-page") as response:
            assert response.status == 404 and "Content-Security-Policy" in response.headers
    async with aiohttp.ClientSession() as stranger:
        with caplog.at_level(logging.INFO, logger="gateway.web.access"):
            async with stranger.get(f"{base}/api/devices?access={link}") as response:
                assert response.status == 401  # a link is not a URL parameter
            async with stranger.get(f"{base}/t/{link}", allow_redirects=False) as response:
                assert response.status in (303, 403)
        assert link.split(".")[2] not in caplog.text and "/t/<link>" in caplog.text
