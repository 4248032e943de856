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
from tests.e2e.conftest import SteppedClock, eventually

pytestmark = pytest.mark.e2e

VALID = {"appliance": {"device_id": "ac-1"}, "fault": {"code": "AC-CND-01"},
         "probable_causes": [{"cause": "fan", "likelihood": 0.5, "reason": "r"}], "evidence": {}}


def queue_ticket(db: Database, key: str, payload: dict[str, object], device: str = "ac-1") -> None:
    now = time.time()
    open_incident(db, NewEpisode("rule", "v1", device, "fault", now, now, key), {"rule": "rule"},
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


async def test_a_refused_token_holds_every_ticket_until_the_platform_accepts_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = Database(tmp_path / "gw.db")
    queue_ticket(db, "key-1", VALID)
    queue_ticket(db, "key-old", {**VALID, "appliance": {"device_id": "ac-2"}}, device="ac-2")
    with db._transaction() as conn:  # a ticket an older version dead-lettered for a 401
        conn.execute("UPDATE outbox SET state='dead', last_error='HTTP 401 missing or wrong bearer token' "
                     "WHERE outbox_id=2")
    platform = PlatformServer(tmp_path / "platform.db", token="the-new-token")
    await platform.start()
    sender = OutboxSender(db, UpstreamConfig(url=platform.url, token="the-old-token", retry_min_seconds=0.1,
                                             retry_max_seconds=0.3), SystemClock())
    task = asyncio.create_task(sender.run())
    try:
        await eventually(lambda: sender.failed_attempts >= 4, 10, "the refused tickets are retried")
        counts = db.outbox_counts()
        assert counts["dead"] == 0 and counts["queued"] + counts["sending"] == 2, counts
        assert sender.auth_refused.startswith("HTTP 401")
        refusals = [r for r in caplog.records if "refuses the gateway's credentials" in r.getMessage()]
        assert len(refusals) == 1 and refusals[0].levelname == "ERROR"  # said once, loudly
        platform.token = "the-old-token"  # the platform's side is fixed
        await eventually(lambda: db.outbox_counts()["delivered"] == 2, 10, "both are delivered once accepted")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await platform.stop()
    assert sender.auth_refused == "" and platform.duplicates == 0
    assert any("accepts the gateway's credentials again" in r.getMessage() for r in caplog.records)
    db.close()


async def test_a_clock_stepped_back_does_not_hold_back_a_ticket(tmp_path: Path) -> None:
    db = Database(tmp_path / "gw.db")
    queue_ticket(db, "key-1", VALID)
    port = free_port()
    clock = SteppedClock()
    sender = OutboxSender(db, UpstreamConfig(url=f"http://127.0.0.1:{port}", retry_min_seconds=0.1,
                                             retry_max_seconds=0.3, timeout_seconds=2), clock)
    task = asyncio.create_task(sender.run())
    platform = PlatformServer(tmp_path / "platform.db", port=port)
    try:
        await eventually(lambda: sender.failed_attempts >= 2, 10, "the platform is down: retried")
        clock.offset = -7200.0  # the clock steps back two hours while the next attempt is scheduled
        await platform.start()
        await eventually(lambda: db.outbox_counts()["delivered"] == 1, 10,
                         "delivered within the retry backoff, not two hours later")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await platform.stop()
    db.close()


async def test_one_slow_request_does_not_hold_the_other_slots(tmp_path: Path) -> None:
    """The outbox sent a batch of due entries and waited for all of them: while one request took seconds,
    the other slots of `max_in_flight` stood idle and every ticket that came meanwhile waited behind it."""
    db = Database(tmp_path / "gw.db")
    platform = PlatformServer(tmp_path / "platform.db")
    await platform.start()
    platform.faults.slow_next, platform.faults.slow_seconds = 1, 4.0
    queue_ticket(db, "slow", VALID)
    sender = OutboxSender(db, UpstreamConfig(url=platform.url, max_in_flight=4, timeout_seconds=10,
                                             group_wait_seconds=0), SystemClock())
    task = asyncio.create_task(sender.run())
    try:
        await eventually(lambda: platform.posts == 1, 5, "the slow ticket is in flight")
        started = time.monotonic()
        for i in range(6):
            queue_ticket(db, f"quick-{i}", VALID, device=f"ac-{i + 2}")
        sender.wake()
        await eventually(lambda: db.outbox_counts()["delivered"] >= 6, 10, "the six quick tickets are delivered")
        quick = time.monotonic() - started
        slow_in_flight = db.outbox_counts().get("sending", 0)
        await eventually(lambda: db.outbox_counts()["delivered"] == 7, 10, "and then the slow one")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await platform.stop()
        db.close()
    assert quick < 2.0, f"the quick tickets waited {quick:.1f} s behind the slow request"
    assert slow_in_flight == 1, "the slow one was still in flight when the quick ones were through"
    assert platform.duplicates == 0
