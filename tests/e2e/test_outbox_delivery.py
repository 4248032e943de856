"""The outbox sender against the real platform stand-in: down, failing, rejecting, and back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from firmware_sim.localnet import free_port
from firmware_sim.platform import PlatformServer
from gateway.clock import SystemClock
from gateway.config import UpstreamConfig
from gateway.incidents.cases import open_incident
from gateway.model import CasePolicy, NewEpisode
from gateway.outbox.sender import OutboxSender
from gateway.store.db import Database
from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e

VALID = {"appliance": {"device_id": "ac-1"}, "fault": {"code": "AC-CND-01"},
         "probable_causes": [{"cause": "fan", "likelihood": 0.5, "reason": "r"}], "evidence": {}}


def queue_ticket(db: Database, key: str, payload: dict[str, object]) -> None:
    now = time.time()
    open_incident(db, NewEpisode("rule", "v1", "ac-1", "fault", now, now, key), {"rule": "rule"},
                  lambda findings, k, _at: {**payload, "findings_detail": findings}, now, CasePolicy())


async def test_platform_down_then_up_delivers_once(tmp_path: Path) -> None:
    db = Database(tmp_path / "gw.db")
    queue_ticket(db, "key-1", VALID)
    port = free_port()
    sender = OutboxSender(db, UpstreamConfig(url=f"http://127.0.0.1:{port}", retry_min_seconds=0.1,
                                             retry_max_seconds=0.3, timeout_seconds=2), SystemClock())
    task = asyncio.create_task(sender.run())
    platform = PlatformServer(tmp_path / "platform.db", port=port)
    try:
        await eventually(lambda: sender.failed_attempts >= 3, 10, "connection refused attempts are retried")
        [ticket] = db.tickets()
        assert ticket["delivery"] == "queued" and "ClientConnectorError" in ticket["last_error"]

        await platform.start()
        platform.fail_next(2, status=503)
        await eventually(lambda: db.outbox_counts()["delivered"] == 1, 10, "delivered once the platform is up")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await platform.stop()
    [ticket] = db.tickets()
    assert ticket["platform_ticket_id"] == "SVC-000001"
    assert ticket["attempts"] >= 6
    assert platform.duplicates == 0
    db.close()


async def test_rejected_ticket_is_dead_lettered_with_the_reason(tmp_path: Path) -> None:
    db = Database(tmp_path / "gw.db")
    queue_ticket(db, "key-bad", {"appliance": {}})
    platform = PlatformServer(tmp_path / "platform.db")
    await platform.start()
    sender = OutboxSender(db, UpstreamConfig(url=platform.url, retry_min_seconds=0.1), SystemClock())
    task = asyncio.create_task(sender.run())
    try:
        await eventually(lambda: db.outbox_counts()["dead"] == 1, 10, "the ticket is dead-lettered")
        await asyncio.sleep(0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await platform.stop()
    [ticket] = db.tickets()
    assert ticket["last_error"] == "HTTP 422 appliance.device_id is required"
    assert platform.posts == 1, "a 4xx rejection is not retried"
    db.close()


async def test_resending_an_accepted_ticket_returns_the_same_ticket(tmp_path: Path) -> None:
    platform = PlatformServer(tmp_path / "platform.db")
    await platform.start()
    try:
        async with aiohttp.ClientSession() as session:
            answers = []
            for _ in range(3):
                async with session.post(platform.url + "/v1/tickets", data=orjson.dumps(VALID),
                                        headers={"Idempotency-Key": "same"}) as response:
                    answers.append((response.status, (await response.json())["ticket_id"]))
            async with session.get(platform.url + "/v1/tickets/" + answers[0][1]) as response:
                stored = await response.json()
            async with session.get(platform.url + "/v1/tickets/SVC-999999") as response:
                missing = response.status
    finally:
        await platform.stop()
    assert answers == [(201, "SVC-000001"), (200, "SVC-000001"), (200, "SVC-000001")]
    assert stored["ticket"]["fault"]["code"] == "AC-CND-01"
    assert missing == 404
