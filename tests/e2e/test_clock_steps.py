"""The gateway's clock steps forward and back an hour under a running gateway: no appliance is called silent,
the rules keep advancing, and a real fault is still found (real broker, real platform stand-in)."""

from __future__ import annotations

import asyncio
import time

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.conftest import StartGateway, SteppedClock, eventually

pytestmark = pytest.mark.e2e


async def test_a_clock_stepped_forward_and_back_calls_no_appliance_silent(start_gateway: StartGateway) -> None:
    clock = SteppedClock()
    running = await start_gateway(clock=clock)
    gateway = running.gateway
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="clock-step-appliance")
    await asyncio.to_thread(client.connect, running.broker_host, running.broker_port)
    client.loop_start()
    try:
        client.publish("appliances/w1/meta", orjson.dumps({"type": "washer", "brand": "Haier"}), qos=1, retain=True)
        client.publish("appliances/w1/status", b"online", qos=1, retain=True)

        async def report(seconds: int) -> None:
            for _ in range(seconds):
                client.publish("appliances/w1/telemetry",  # the appliance's own clock is right all along
                               orjson.dumps({"ts": time.time(), "metrics": {"vibration": 0.1}}), qos=1)
                await asyncio.sleep(1.0)

        await report(3)
        await eventually(lambda: gateway.ingest.samples >= 3, 10, "the appliance's samples arrive")
        clock.offset = 3600.0  # the gateway's clock steps an hour forward
        await report(4)
        assert gateway.status()["clock_steps"] == 1
        clock.offset = 0.0  # and back
        await report(4)
        assert gateway.status()["clock_steps"] == 2
    finally:
        client.loop_stop()
        client.disconnect()
    assert gateway.incidents.opened == 0, [i.rule_id for i in gateway.db.open_incidents()]
    assert gateway.evaluator.firing_count() == 0
    assert gateway.ingest.samples >= 10 and gateway.internal_errors == 0
