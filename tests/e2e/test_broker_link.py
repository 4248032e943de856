"""The MQTT link survives the broker going away and coming back, and says so once each way."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.conftest import Mosquitto, StartGateway, eventually

pytestmark = pytest.mark.e2e


async def publish_one(port: int, value: float) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{value}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = orjson.dumps({"ts": time.time(), "type": "washer", "metrics": {"vibration": value}})
    try:
        await asyncio.to_thread(client.publish("appliances/w1/telemetry", payload, qos=1).wait_for_publish, 5)
    finally:
        client.loop_stop()
        client.disconnect()


async def test_reconnects_and_resubscribes_after_broker_restart(
        start_gateway: StartGateway, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.mqtt")
    running = await start_gateway(f"mqtt://127.0.0.1:{mosquitto.port}")
    gateway = running.gateway
    await publish_one(mosquitto.port, 0.1)
    await eventually(lambda: gateway.ingest.samples == 1, 10, "the first sample arrives")

    mosquitto.stop()
    assert gateway.link is not None
    await eventually(lambda: not gateway.link.connected, 10, "the gateway notices the broker is gone")
    assert gateway.evaluator.hearing_since == math.inf  # no appliance is silent while the gateway is deaf
    await asyncio.sleep(2)  # several failed reconnect attempts
    mosquitto.start()
    await eventually(lambda: gateway.link.connected, 15, "the gateway reconnects")
    assert time.time() - 15 < gateway.evaluator.hearing_since <= time.time()  # silence counts from now
    await publish_one(mosquitto.port, 0.2)
    await eventually(lambda: gateway.ingest.samples == 2, 10, "a sample after the restart arrives")

    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.mqtt"]
    assert sum("lost MQTT broker" in m for m in messages) == 1, messages
    assert sum("recovered MQTT broker" in m for m in messages) == 1, messages
    assert len(messages) == 3, messages  # connected, lost, recovered: nothing per retry
