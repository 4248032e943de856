"""Fleet mode: a thousand appliances of all five types from one process over one MQTT connection, into a
gateway through a real mosquitto."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim.bulk_fleet import BulkFleet
from tests.e2e.conftest import Mosquitto, StartGateway, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def roomy_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """mosquitto queues at most 1,000 QoS 1 messages per subscriber by default; a thousand appliances
    announcing themselves at once (2,000 retained messages) need more, as in any large deployment."""
    broker = Mosquitto(tmp_path, extra_config="max_queued_messages 0\n")
    broker.start()
    yield broker
    broker.stop()


async def test_a_bulk_fleet_reaches_the_gateway_whole(start_gateway: StartGateway,
                                                      roomy_mosquitto: Mosquitto) -> None:
    running = await start_gateway(f"mqtt://127.0.0.1:{roomy_mosquitto.port}")
    fleet = BulkFleet(1000, "127.0.0.1", roomy_mosquitto.port, seed=4)
    await asyncio.to_thread(fleet.connect)
    gateway = running.gateway
    await eventually(lambda: len(gateway.registry.devices) == 1000, 20, "every appliance announced itself")
    now = time.time()
    for appliance in fleet.appliances:
        fleet.publish(appliance, now)
    await asyncio.to_thread(fleet.disconnect)
    await eventually(lambda: gateway.status()["samples"] == 1000, 20, "one report from each of the 1,000")
    status = gateway.status()
    assert status["dropped_total"] == 0 and status["internal_errors"] == 0
    types = {d.meta.appliance_type for d in gateway.registry.devices.values() if d.meta}
    assert types == {"air_conditioner", "refrigerator", "washer", "water_heater", "dishwasher"}
