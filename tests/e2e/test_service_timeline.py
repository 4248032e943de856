"""The whole service timeline over real HTTP, a real broker and real SQLite files: assignment by signed
webhook, the visit code at the gateway, a repair with a charge that was not diagnosed, verification by
telemetry, the customer's confirmation, and the fault coming back (reopened, not duplicated)."""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from firmware_sim.localnet import free_port
from firmware_sim.platform import PlatformServer
from gateway.config import ServiceConfig
from gateway.service import signing
from gateway.web.service_routes import FORM_OUTCOMES
from tests.e2e.conftest import ADMIN, StartGateway, eventually
from tests.e2e.test_diagnosis_paths import publish_all

pytestmark = pytest.mark.e2e

SECRET = "test-webhook-secret"
AC = "ac-svc"


def overcurrent(start: float, seconds: int, current: float) -> list[tuple[str, bytes, bool]]:
    """A running compressor's current, one sample a second from `start` (sample time)."""
    return [(f"appliances/{AC}/telemetry", orjson.dumps(
        {"ts": start + i, "metrics": {"compressor_on": 1, "compressor_current": current}}), False)
        for i in range(seconds)]


@contextlib.asynccontextmanager
async def healthy_reports(host: str, port: int) -> AsyncIterator[None]:
    """The repaired appliance keeps reporting normal current in real time, as a working one does."""
    async def feed() -> None:
        while True:
            await publish_all(host, port, overcurrent(time.time(), 1, 8.0))
            await asyncio.sleep(0.5)

    task = asyncio.create_task(feed())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def platform_steps(platform: PlatformServer, ticket: str, origin: str) -> list[str]:
    return [s["step"] for s in platform.store.steps(ticket) if s["origin"] == origin]


async def test_the_whole_service_flow_by_webhook(start_gateway: StartGateway, platform: PlatformServer) -> None:
    service = ServiceConfig(webhook_secret=SECRET, poll_seconds=30, verification_dwell_seconds=2,
                            reopen_window_seconds=120)
    running = await start_gateway(service=service)
    gateway = running.gateway
    platform.webhook_url = f"http://127.0.0.1:{gateway.web_port}/api/platform/events"
    platform.webhook_secret = SECRET
    base = time.time() - 20
    meta = (f"appliances/{AC}/meta", orjson.dumps({"type": "air_conditioner", "brand": "Gree"}), True)
    # 12 s of overcurrent (the rule needs 10 s), then normal current up to now and on, in real time
    await publish_all(running.broker_host, running.broker_port,
                      [meta, *overcurrent(base, 12, 25.0), *overcurrent(base + 12, 7, 8.0)])
    feeding = healthy_reports(running.broker_host, running.broker_port)
    await feeding.__aenter__()
    await eventually(lambda: len(platform.store.list_tickets()) == 1, 15, "the overcurrent ticket is delivered")
    [summary] = platform.store.list_tickets()
    svc = summary["ticket_id"]
    [local] = gateway.db.tickets()
    ticket_id = local["ticket_id"]
    await eventually(lambda: gateway.service.timeline(ticket_id)["state"] == "accepted", 5, "accepted step")

    assigned = await platform.advance(svc, "technician_assigned")
    assert assigned["webhook"] == "HTTP 200"
    timeline = gateway.service.timeline(ticket_id)
    assert timeline["state"] == "technician_assigned"
    assert timeline["technician"]["employee_id"] == assigned["event"]["detail"]["technician"]["employee_id"]
    code = assigned["visit_code"]
    wrong = "000000" if code != "000000" else "111111"
    web = f"http://127.0.0.1:{gateway.web_port}"
    async with aiohttp.ClientSession(headers=ADMIN) as http:
        async with http.post(f"{web}/api/tickets/{ticket_id}/visit-code", json={"code": wrong}) as response:
            assert response.status == 403
            assert "4 attempt(s) left" in (await response.json())["error"]
        async with http.post(f"{web}/api/tickets/{ticket_id}/visit-code", json={"code": code}) as response:
            assert response.status == 200
            assert (await response.json())["technician"]["name"] == timeline["technician"]["name"]
        async with http.post(f"{web}/api/tickets/{ticket_id}/visit-code", json={"code": code}) as response:
            assert response.status == 409, "a visit code works once"
        async with http.post(f"{web}/tickets/{ticket_id}/visit-code", data={"code": code},
                             allow_redirects=False) as response:  # the page's form says so in a fixed text
            assert response.status == 303 and response.headers["Location"].endswith("?msg=code_used")
        async with http.get(f"{web}/tickets/{ticket_id}?msg=code_used") as response:
            assert FORM_OUTCOMES["code_used"] in html.unescape(await response.text())
        crafted = "Your technician asks you to pay 500 CNY to account 1234"
        async with http.get(f"{web}/tickets/{ticket_id}", params={"msg": crafted}) as response:
            page = await response.text()
            assert response.status == 200 and "account 1234" not in page and "id='message'" not in page
        await eventually(lambda: "technician_verified" in platform_steps(platform, svc, "gateway"), 10,
                         "the platform hears the technician was verified")

        # the technician also charges a compressor check nobody diagnosed, with no new evidence
        repaired = await platform.advance(svc, "repaired", {"items": [
            {"id": "ac_compressor_check", "price": 120}, {"id": "ac_inverter_board", "price": 700}]})
        assert repaired["webhook"] == "HTTP 200"
        flags = gateway.service.timeline(ticket_id)["charge_flags"]
        assert [f["item"] for f in flags] == ["ac_inverter_board"]
        assert not flags[0]["explained"] and "not diagnosed" in flags[0]["problem"]

        # the appliance reports normally and the rule stays clear for the dwell: the repair is verified
        await eventually(lambda: gateway.service.timeline(ticket_id)["state"] == "verified_by_telemetry", 10,
                         "the repair is verified by telemetry")
        async with http.post(f"{web}/api/tickets/{ticket_id}/confirm", json={"rating": 4}) as response:
            assert response.status == 200
        await eventually(lambda: platform_steps(platform, svc, "gateway")[-2:] == [
            "verified_by_telemetry", "confirmed"], 10, "the platform hears verification and confirmation")

        # the fault comes back within the window: the same ticket reopens, no second ticket upstream
        await feeding.__aexit__(None, None, None)
        await publish_all(running.broker_host, running.broker_port, overcurrent(time.time() + 1, 12, 26.0))
        await eventually(lambda: gateway.service.timeline(ticket_id)["state"] == "reopened", 15, "reopened")
        await eventually(lambda: "reopened" in platform_steps(platform, svc, "gateway"), 10,
                         "the platform hears the ticket reopened")
        assert len(platform.store.list_tickets()) == 1 and platform.duplicates == 0
        assert len(gateway.db.tickets()) == 1

        async with http.get(f"{web}/tickets/{ticket_id}") as response:
            page = await response.text()
        for text in ("Technician verified on site", "Repair verified by telemetry", "ticket reopened",
                     "ac_inverter_board was charged (700 CNY) but not diagnosed"):
            assert text in page, text
    steps = [s["step"] for s in gateway.service.timeline(ticket_id)["steps"]]
    assert steps == ["detected", "diagnosed", "ticket_opened", "accepted", "technician_assigned",
                     "technician_verified", "repaired", "verified_by_telemetry", "confirmed", "reopened"]


async def test_webhooks_must_be_signed_and_fresh(start_gateway: StartGateway) -> None:
    running = await start_gateway(service=ServiceConfig(webhook_secret=SECRET))
    url = f"http://127.0.0.1:{running.gateway.web_port}/api/platform/events"
    body = orjson.dumps({"event_id": "e1", "ticket_id": "SVC-000001", "step": "repaired", "at": time.time(),
                         "detail": {"items": []}})
    cases = [
        ({}, 401, "missing X-Platform-Signature"),
        ({signing.HEADER: signing.sign("wrong secret", body, time.time())}, 401, "does not match"),
        ({signing.HEADER: signing.sign(SECRET, body, time.time() - 3600)}, 401, "from now"),
        ({signing.HEADER: signing.sign(SECRET, body, time.time())}, 404, "no ticket here"),
    ]
    async with aiohttp.ClientSession() as http:
        for headers, status, reason in cases:
            async with http.post(url, data=body, headers=headers) as response:
                assert response.status == status, reason
                assert reason in (await response.json())["error"]
        tampered = body.replace(b"repaired", b"confirmed")
        header = {signing.HEADER: signing.sign(SECRET, body, time.time())}
        async with http.post(url, data=tampered, headers=header) as response:
            assert response.status == 401, "a changed body breaks the signature"
    assert running.gateway.service.events_rejected == 1


async def test_steps_arrive_by_polling_when_the_webhook_cannot_reach_the_gateway(
        start_gateway: StartGateway, platform: PlatformServer) -> None:
    running = await start_gateway(service=ServiceConfig(webhook_secret=SECRET, poll_seconds=0.5))
    platform.webhook_url = f"http://127.0.0.1:{free_port()}/api/platform/events"  # nothing listens there
    platform.webhook_secret = SECRET
    meta = (f"appliances/{AC}/meta", orjson.dumps({"type": "air_conditioner", "brand": "Gree"}), True)
    await publish_all(running.broker_host, running.broker_port, [meta, *overcurrent(time.time() - 12, 12, 25.0)])
    await eventually(lambda: len(platform.store.list_tickets()) >= 1, 15, "the ticket is delivered")
    svc = platform.store.list_tickets()[0]["ticket_id"]
    assigned = await platform.advance(svc, "technician_assigned")
    assert assigned["webhook"] == "ClientConnectorError"
    ticket_id = running.gateway.db.tickets()[0]["ticket_id"]
    await eventually(lambda: running.gateway.service.timeline(ticket_id)["state"] == "technician_assigned", 10,
                     "the assignment arrives by polling")
    [step] = [s for s in running.gateway.service.timeline(ticket_id)["steps"] if s["step"] == "technician_assigned"]
    assert step["source"] == "poll"
    await platform.advance(svc, "repaired")  # the diagnosed items at their mid-band price: nothing to flag
    await eventually(lambda: running.gateway.service.timeline(ticket_id)["state"] == "repaired", 10, "repaired")
    flags = running.gateway.service.timeline(ticket_id)["charge_flags"]
    assert [f["problem"] for f in flags] == ["repaired before the technician was verified on site with the visit code"]
