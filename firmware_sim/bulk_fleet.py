"""Fleet mode: thousands of simulated appliances from one process over one MQTT connection.

One connection per appliance does not scale to 10,000 in one process (10,000 sockets and threads), so a bulk
fleet publishes for all of its appliances through a single paho client, each message still on its own
appliance's topics (meta and status retained, telemetry, vendor codes on the event topic), as a cloud bridge
or a building's concentrator would. Reports go out in rounds, one per appliance per interval, spread over
the interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.models import MODELS, FaultableModel, WasherModel
from firmware_sim.mqtt_peer import report_messages
from firmware_sim.scenario import SHORT

MIX = ("air_conditioner", "refrigerator", "washer", "water_heater", "dishwasher")


@dataclass
class BulkAppliance:
    device_id: str
    model: FaultableModel


class BulkFleet:
    def __init__(self, size: int, host: str, port: int, seed: int = 1, prefix: str = "appliances",
                 first: int = 0) -> None:
        """`first`: the number of the first appliance (fleets on several connections need distinct ids)."""
        self.appliances: list[BulkAppliance] = []
        for n in range(first, first + size):
            appliance = MIX[n % len(MIX)]
            model = MODELS[appliance](seed * 1_000_000 + n)
            if isinstance(model, WasherModel):
                model.use(1.0)
            self.appliances.append(BulkAppliance(f"{SHORT[appliance]}-{n:05d}", model))
        self.prefix = prefix
        self.published = 0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bulk-fleet-{seed}-{first}-{size}",
                                   protocol=mqtt.MQTTv311)
        self._client.max_queued_messages_set(0)
        self._client.max_inflight_messages_set(1000)  # the retained meta of thousands of appliances is QoS 1
        self._host, self._port = host, port
        self._last: mqtt.MQTTMessageInfo | None = None

    def connect(self, timeout: float = 60.0) -> None:
        """Connect and announce every appliance (retained meta and status, QoS 1), waiting until the broker
        has them all: a gateway must know an appliance's type before its first report."""
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        last = None
        for appliance in self.appliances:
            meta = {"type": appliance.model.appliance_type, "brand": "Bulk", "model": "B1",
                    "serial": f"SN-{appliance.device_id}"}
            self._client.publish(f"{self.prefix}/{appliance.device_id}/meta", orjson.dumps(meta), qos=1, retain=True)
            last = self._client.publish(f"{self.prefix}/{appliance.device_id}/status", b"online", qos=1,
                                        retain=True)
        if last is not None:
            last.wait_for_publish(timeout)

    def publish(self, appliance: BulkAppliance, ts: float) -> None:
        messages = report_messages(appliance.device_id, appliance.model, ts, self.prefix)
        for topic, payload, qos in messages:
            info = self._client.publish(topic, payload, qos=qos)
            if qos == 0:
                self._last = info
        self.published += 1

    async def run(self, stop: asyncio.Event, interval: float = 10.0, batch: int = 500) -> None:
        """Every appliance once per `interval`, in batches spread over it, until `stop`."""
        while not stop.is_set():
            round_start = time.monotonic()
            for first in range(0, len(self.appliances), batch):
                now = time.time()
                for appliance in self.appliances[first:first + batch]:
                    self.publish(appliance, now)
                due = round_start + interval * (first + batch) / len(self.appliances)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=max(0.0, due - time.monotonic()))
                if stop.is_set():
                    return

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until the last report has left for the broker (queued QoS 0 messages die with a disconnect)."""
        if self._last is not None:
            self._last.wait_for_publish(timeout)

    def disconnect(self) -> None:
        self.flush()
        self._client.disconnect()
        self._client.loop_stop()
