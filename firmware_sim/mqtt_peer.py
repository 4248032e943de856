"""A simulated appliance's MQTT side: retained meta and status, last will, telemetry and events."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.models import ApplianceModel
from gateway.protocol.topics import TopicKind, appliance_topic


@dataclass(frozen=True)
class Identity:
    device_id: str
    brand: str
    model: str
    serial: str
    firmware: str = "1.0.0"


def report_messages(device_id: str, model: ApplianceModel, ts: float,
                    prefix: str = "appliances") -> list[tuple[str, bytes, int]]:
    """One report as firmware sends it: (topic, payload, QoS) of the telemetry, then each active vendor code
    again on the event topic."""
    stamp = round(ts, 3)
    messages = [(appliance_topic(device_id, TopicKind.TELEMETRY, prefix),
                 orjson.dumps({"ts": stamp, "type": model.appliance_type, "metrics": model.sample(ts)}), 0)]
    messages += [(appliance_topic(device_id, TopicKind.EVENT, prefix), orjson.dumps({"ts": stamp, "code": code}), 1)
                 for code in model.codes(ts)]
    return messages


class MqttAppliance:
    def __init__(self, identity: Identity, model: ApplianceModel, host: str, port: int,
                 prefix: str = "appliances") -> None:
        self.identity = identity
        self.model = model
        self.prefix = prefix
        self.published = 0
        self._host, self._port = host, port
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{identity.device_id}",
                                   protocol=mqtt.MQTTv311)
        self._client.will_set(self._topic(TopicKind.STATUS), b"offline", qos=1, retain=True)

    def _topic(self, kind: TopicKind) -> str:
        return appliance_topic(self.identity.device_id, kind, self.prefix)

    def connect(self) -> None:
        self._client.connect(self._host, self._port, keepalive=15)
        self._client.loop_start()
        meta = {"type": self.model.appliance_type, "brand": self.identity.brand, "model": self.identity.model,
                "serial": self.identity.serial, "firmware": self.identity.firmware}
        self._client.publish(self._topic(TopicKind.META), orjson.dumps(meta), qos=1, retain=True)
        self._client.publish(self._topic(TopicKind.STATUS), b"online", qos=1, retain=True)

    def publish_sample(self, ts: float | None = None) -> None:
        ts = time.time() if ts is None else ts
        for topic, payload, qos in report_messages(self.identity.device_id, self.model, ts, self.prefix):
            self._client.publish(topic, payload, qos=qos)
        self.published += 1

    def disconnect(self, graceful: bool = True) -> None:
        """Graceful: say offline and leave. Not graceful: drop the socket so the broker sends the last will."""
        if graceful:
            self._client.publish(self._topic(TopicKind.STATUS), b"offline", qos=1, retain=True).wait_for_publish(2)
            self._client.disconnect()
        else:
            sock = self._client.socket()
            if sock is not None:
                sock.close()
        self._client.loop_stop()


def publish_while_away(port: int, session_id: str, topic_filter: str,
                       messages: Iterable[tuple[str, bytes]]) -> None:
    """Appliances reporting while a subscriber is away: a persistent QoS 1 session `session_id` subscribes to
    `topic_filter` and leaves, then `messages` (topic, payload) are published at QoS 1 and queued for it at the
    broker on loopback `port` (mosquitto keeps at most its max_queued_messages, 1,000 by default)."""
    subscribed = threading.Event()
    session = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=session_id, clean_session=False,
                          protocol=mqtt.MQTTv311)
    session.on_subscribe = lambda *_: subscribed.set()
    session.connect("127.0.0.1", port)
    session.subscribe(topic_filter, qos=1)
    deadline = time.monotonic() + 10
    while not subscribed.is_set() and time.monotonic() < deadline:
        session.loop(0.05)
    session.disconnect()
    if not subscribed.is_set():
        raise TimeoutError(f"the broker on port {port} did not acknowledge the subscription of {session_id}")
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{session_id}-publisher")
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    try:
        info = None
        for i, (topic, payload) in enumerate(messages):
            info = publisher.publish(topic, payload, qos=1)
            if i % 500 == 499:
                info.wait_for_publish(30)  # a window at a time: paho's queue stays small
        if info is not None:
            info.wait_for_publish(30)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
