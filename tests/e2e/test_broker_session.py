"""The gateway's MQTT session outlives its own restarts and the broker's: QoS 1 telemetry published while it is
away reaches it, and two gateways on one broker each keep their own session (real mosquitto)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.platform import PlatformServer
from gateway.config import BrokerConfig, StorageConfig
from tests.e2e.conftest import Mosquitto, StartGateway, eventually

pytestmark = pytest.mark.e2e


def publish_samples(port: int, device: str, count: int) -> None:
    """`count` QoS 1 telemetry messages, each acknowledged by the broker before this returns."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"appliance-{device}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        start = time.time() - count
        infos = [client.publish(f"appliances/{device}/telemetry",
                                orjson.dumps({"ts": start + i, "type": "washer", "metrics": {"vibration": 0.1}}),
                                qos=1) for i in range(count)]
        for info in infos:
            info.wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


async def test_telemetry_published_while_the_gateway_restarts_reaches_it(
        start_gateway: StartGateway, mosquitto: Mosquitto) -> None:
    running = await start_gateway(mosquitto.url)
    await asyncio.to_thread(publish_samples, mosquitto.port, "w1", 1)
    await eventually(lambda: running.gateway.ingest.samples == 1, 10, "the first sample arrives")
    first_id = running.gateway.status()["mqtt_client_id"]
    await running.stop()

    await asyncio.to_thread(publish_samples, mosquitto.port, "w1", 40)  # nobody is connected to hear these
    restarted = await start_gateway(mosquitto.url)
    assert restarted.gateway.status()["mqtt_client_id"] == first_id  # the same session, from the same key
    await eventually(lambda: restarted.gateway.ingest.samples == 40, 10,
                     "the 40 samples queued by the broker while the gateway was away arrive")


async def test_telemetry_published_before_the_gateway_reconnects_to_a_restarted_broker_reaches_it(
        tmp_path: Path, start_gateway: StartGateway) -> None:
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Mosquitto(folder, persistent=True)
    broker.start()
    try:
        # a slow reconnect, so the appliance is surely back on the restarted broker before the gateway is
        slow = BrokerConfig(url=broker.url, reconnect_min_seconds=2.0, reconnect_max_seconds=3.0)
        running = await start_gateway(broker.url, broker=slow)
        gateway = running.gateway
        await asyncio.to_thread(publish_samples, broker.port, "w1", 1)
        await eventually(lambda: gateway.ingest.samples == 1, 10, "the first sample arrives")
        broker.stop()
        assert gateway.link is not None
        await eventually(lambda: not gateway.link.connected, 10, "the gateway notices the broker is gone")
        broker.start()
        await asyncio.to_thread(publish_samples, broker.port, "w1", 30)
        assert not gateway.link.connected, "the test needs the samples published before the gateway is back"
        await eventually(lambda: gateway.ingest.samples == 31, 15,
                         "the 30 samples published before the gateway reconnected arrive")
    finally:
        broker.stop()


async def test_two_gateways_on_one_broker_keep_their_own_sessions(
        tmp_path: Path, platform: PlatformServer, start_gateway: StartGateway, mosquitto: Mosquitto) -> None:
    first = await start_gateway(mosquitto.url)
    other = tmp_path / "second"
    other.mkdir()
    second = await start_gateway(
        mosquitto.url, storage=StorageConfig(database=str(other / "gateway.db"), key_file=str(other / "gateway.key")),
        web=replace(first.gateway.config.web, port=0))
    ids = {first.gateway.status()["mqtt_client_id"], second.gateway.status()["mqtt_client_id"]}
    assert len(ids) == 2, ids
    assert all(len(str(client_id)) <= 23 for client_id in ids)  # what every MQTT 3.1.1 broker accepts
    await asyncio.sleep(3)  # with one shared id the broker would hand the session back and forth meanwhile
    await asyncio.to_thread(publish_samples, mosquitto.port, "w2", 5)
    await eventually(lambda: first.gateway.ingest.samples == 5 and second.gateway.ingest.samples == 5, 10,
                     "each gateway hears every sample")
    for running in (first, second):
        assert running.gateway.link is not None and running.gateway.link.connects == 1
