"""Vendor codes and data-quality problems through the real MQTT path to the platform."""

from __future__ import annotations

import asyncio
import time

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.platform import PlatformServer
from tests.e2e.conftest import StartGateway, eventually

pytestmark = pytest.mark.e2e


async def publish_all(host: str, port: int, messages: list[tuple[str, bytes, bool]]) -> None:
    """Publish with QoS 1 and wait for each acknowledgement. Every blocking paho call runs on a thread: the
    embedded broker may be serving from this very event loop."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{time.time_ns()}")
    await asyncio.to_thread(client.connect, host, port)
    client.loop_start()
    try:
        for topic, payload, retain in messages:
            info = client.publish(topic, payload, qos=1, retain=retain)
            await asyncio.to_thread(info.wait_for_publish, 5)
    finally:
        await asyncio.to_thread(client.disconnect)
        await asyncio.to_thread(client.loop_stop)


async def test_a_vendor_code_becomes_a_diagnosed_ticket(start_gateway: StartGateway, platform: PlatformServer) -> None:
    running = await start_gateway()
    now = time.time()
    await publish_all(running.broker_host, running.broker_port, [
        ("appliances/wm-lg/meta", orjson.dumps({"type": "washer", "brand": "LG", "model": "FCV1209"}), True),
        ("appliances/wm-lg/event", orjson.dumps({"ts": now, "code": "CL"}), False),   # child lock: no fault
        ("appliances/wm-lg/event", orjson.dumps({"ts": now + 1, "code": "ZZ"}), False),  # not in the table
        ("appliances/wm-lg/event", orjson.dumps({"ts": now + 2, "code": "OE"}), False),  # drain timeout
    ])
    await eventually(lambda: len(platform.store.list_tickets()) == 1, 15, "the drain fault reaches the platform")
    [summary] = platform.store.list_tickets()
    ticket = platform.store.get(summary["ticket_id"])
    assert ticket is not None
    body = ticket["ticket"]
    assert body["fault"]["code"] == "WM-DRAIN" and body["appliance"]["brand"] == "LG"
    assert body["probable_causes"][0]["cause"].startswith("Drain filter clogged")
    assert body["price"]["items"][0]["id"] == "washer_drain_pump"
    assert running.gateway.status()["dropped"] == {"unknown_vendor_code": 1}


async def test_impossible_sensor_values_open_a_sensor_ticket_not_a_fault(
        start_gateway: StartGateway, platform: PlatformServer) -> None:
    running = await start_gateway()
    now = time.time()
    healthy = {"compressor_on": 1, "discharge_pressure": 4100, "outdoor_temperature": 31}
    messages = [("appliances/ac-x/meta", orjson.dumps({"type": "air_conditioner", "brand": "Gree"}), True)]
    # the discharge-temperature sensor reads 999 degC (outside its valid range) again and again
    messages += [("appliances/ac-x/telemetry", orjson.dumps(
        {"ts": now + i, "metrics": {**healthy, "discharge_temperature": 999.0}}), False) for i in range(5)]
    await publish_all(running.broker_host, running.broker_port, messages)
    await eventually(lambda: len(platform.store.list_tickets()) == 1, 15, "a ticket reaches the platform")
    await asyncio.sleep(1.5)
    [summary] = platform.store.list_tickets()
    ticket = platform.store.get(summary["ticket_id"])
    assert ticket is not None
    assert ticket["ticket"]["fault"]["code"] == "DQ-RANGE"
    assert ticket["ticket"]["fault"]["category"] == "data_quality"
    assert ticket["ticket"]["price"]["items"][0]["id"] == "sensor_or_connectivity"
    assert running.gateway.status()["dropped"]["out_of_range"] == 5
