"""A simulated fleet over a real broker -> the gateway -> the platform stand-in over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.fleet import FleetSpec, SimClock, build_fleet, run_fleet
from firmware_sim.mqtt_peer import MqttAppliance
from firmware_sim.platform import PlatformServer
from gateway.diagnosis.seal import load_or_create_key, verify
from tests.e2e.conftest import ADMIN, StartGateway, eventually

pytestmark = pytest.mark.e2e

TIME_SCALE = 10.0  # simulated seconds per real second


@contextlib.asynccontextmanager
async def fleet_running(spec: FleetSpec, host: str, port: int,
                        scale: float = TIME_SCALE) -> AsyncIterator[list[MqttAppliance]]:
    clock = SimClock(scale)
    devices = build_fleet(spec, host, port, clock.start)
    stop = asyncio.Event()
    task = asyncio.create_task(run_fleet(devices, stop, clock))
    try:
        yield devices
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


async def test_condenser_fan_failure_opens_exactly_one_diagnosed_ticket(
        start_gateway: StartGateway, platform: PlatformServer, broker_url: str) -> None:
    running = await start_gateway(broker_url)
    spec = FleetSpec(air_conditioners=2, refrigerators=1, washers=1, faulty_device="ac-01",
                     fault_after_seconds=5, fault_ramp_seconds=5)
    async with fleet_running(spec, running.broker_host, running.broker_port):
        await eventually(lambda: len(platform.store.list_tickets()) >= 1, 30, "the platform receives a ticket")
        await asyncio.sleep(3)  # 30 more simulated seconds with the fault still present
    [summary] = platform.store.list_tickets()
    ticket = platform.store.get(summary["ticket_id"])
    assert ticket is not None
    body = ticket["ticket"]
    assert body["appliance"]["device_id"] == "ac-01"
    assert body["appliance"]["brand"] and body["appliance"]["serial"].startswith("SN")
    assert body["appliance"]["site"] == "test-home"
    assert body["fault"]["code"] == "AC-CND-01"
    assert body["fault"]["title"]["zh"]
    assert body["probable_causes"][0]["cause"] == "Outdoor fan motor failed"
    assert body["fault"]["explanation"]["en"] and body["fault"]["explanation"]["zh"]
    price = body["price"]
    assert price["currency"] == "CNY" and [i["id"] for i in price["items"]] == ["ac_outdoor_fan_motor"]
    assert price["total_band"] == [330.0, 670.0]  # labour 150-250 plus parts 180-420
    observed = {o["quantity"]: o for o in body["evidence"]["observed"]}
    assert observed["discharge_pressure"]["value"] > observed["discharge_pressure"]["threshold"] == 3800
    assert observed["discharge_temperature"]["value"] > 100
    window = body["evidence"]["window"]
    onset = body["evidence"]["onset_ts"]
    assert window["ts"][0] < onset <= window["ts"][-1], "the window covers the time before and at the onset"
    assert len(window["metrics"]["discharge_pressure"]) == len(window["ts"])
    assert summary["idempotency_key"] == body["idempotency_key"]
    key = load_or_create_key(Path(running.gateway.config.storage.key_file))
    assert verify(body, key).valid, "the ticket the platform holds is exactly as the gateway sealed it"
    assert platform.duplicates == 0

    status = running.gateway.status()
    assert status["tickets_delivered"] == 1 and status["open_incidents"] == 1
    assert status["dropped_total"] == 0 and status["internal_errors"] == 0

    async with aiohttp.ClientSession(headers=ADMIN) as session:
        base = f"http://127.0.0.1:{running.gateway.web_port}"
        async with session.get(base + "/") as response:
            page = await response.text()
        async with session.get(base + "/api/devices") as response:
            devices = await response.json()
    assert response.status == 200
    assert "AC-CND-01" in page and "ac-01" in page and "fridge-01" in page
    assert {d["device_id"] for d in devices} == {"ac-01", "ac-02", "fridge-01", "washer-01"}


async def test_healthy_fleet_opens_no_ticket(
        start_gateway: StartGateway, platform: PlatformServer, broker_url: str) -> None:
    running = await start_gateway(broker_url)
    spec = FleetSpec(faulty_device=None)  # the demo's 20 appliances, all healthy
    async with fleet_running(spec, running.broker_host, running.broker_port, scale=20.0):
        await asyncio.sleep(6)  # two simulated minutes
        status = running.gateway.status()
    assert status["samples"] > 1000  # at most ~1,430 in two simulated minutes; connecting takes some
    assert status["devices"] == 20
    assert status["incidents_opened"] == 0
    assert platform.store.list_tickets() == []
    assert status["dropped_total"] == 0


async def test_malformed_messages_are_counted_and_ingest_goes_on(
        start_gateway: StartGateway, broker_url: str) -> None:
    running = await start_gateway(broker_url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bad-actor")
    client.connect(running.broker_host, running.broker_port)
    client.loop_start()
    now = time.time()
    good = {"ts": now, "type": "washer", "metrics": {"vibration": 0.2}}
    bad = [
        b"{definitely not json",
        orjson.dumps({**good, "metrics": {"vibration": "strong"}}),
        b'{"ts": %d, "type": "washer", "metrics": {"vibration": NaN}}' % int(now),
        orjson.dumps({**good, "ts": now - 30 * 86400}),
        orjson.dumps({**good, "ts": now + 86400}),
        orjson.dumps({**good, "metrics": {"sparkle": 1}}),
        orjson.dumps({**good, "metrics": {"vibration": 1e9}}),
        b"[" + b"1," * 40_000 + b"1]",
    ]
    messages = [("appliances/washer-x/telemetry", payload) for payload in bad]
    messages.append(("appliances/nobody/telemetry", orjson.dumps({"ts": now, "metrics": {"a": 1}})))
    messages.append(("appliances/washer-x/telemetry", orjson.dumps(good)))
    try:
        for topic, payload in messages:
            # off the loop thread: the embedded broker runs in this event loop
            await asyncio.to_thread(client.publish(topic, payload, qos=1).wait_for_publish, 5)
    finally:
        client.loop_stop()
        client.disconnect()
    gateway = running.gateway
    await eventually(lambda: gateway.ingest.messages >= len(messages), 10, "all messages are handled")
    assert gateway.status()["dropped"] == {
        "malformed_json": 1, "wrong_type": 1, "non_finite": 1, "timestamp_too_old": 1,
        "timestamp_in_future_restamped": 1, "unknown_metric": 1, "out_of_range": 1, "oversized": 1,
    }
    assert gateway.status()["waiting_for_meta"] == 1, "the sample of `nobody` waits a minute for its meta"
    assert gateway.ingest.samples == 3, ("the good sample got through, the one a day ahead was kept at the gateway's "
                                         "time, and the out-of-range one left its marker")
    assert gateway.internal_errors == 0
    assert not running.task.done()


async def test_status_holds_every_sample_handled_before_a_drop_it_counts(
        start_gateway: StartGateway, broker_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline thread handles messages while the status is read: a sample and then a bad message handled
    in the middle of the read must not show the bad message's drop without the sample before it."""
    running = await start_gateway(broker_url)
    gateway = running.gateway
    drops_as_dict = gateway.drops.as_dict
    good = orjson.dumps({"ts": time.time(), "type": "washer", "metrics": {"vibration": 0.2}})

    def handled_meanwhile() -> dict[str, int]:
        with gateway.pipeline.store.lock:
            gateway.pipeline.stage("appliances/washer-status/telemetry", good)
            gateway.pipeline.stage("appliances/washer-status/telemetry", b"{not json")
        return drops_as_dict()

    monkeypatch.setattr(gateway.drops, "as_dict", handled_meanwhile)
    status = gateway.status()
    assert status["dropped"] == {"malformed_json": 1}
    assert (status["samples"], status["messages"]) == (1, 2), "the sample handled before the counted drop"


async def test_last_will_marks_an_appliance_offline(start_gateway: StartGateway, broker_url: str) -> None:
    running = await start_gateway(broker_url)
    [device] = build_fleet(FleetSpec(air_conditioners=1, refrigerators=0, washers=0, faulty_device=None),
                           running.broker_host, running.broker_port, time.time())
    await asyncio.to_thread(device.connect)
    registry = running.gateway.registry
    await eventually(lambda: (d := registry.get("ac-01")) is not None and d.online is True, 10, "ac-01 online")
    device.disconnect(graceful=False)
    await eventually(lambda: registry.get("ac-01").online is False, 30, "the last will marks ac-01 offline")
