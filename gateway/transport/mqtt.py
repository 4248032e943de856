"""MQTT link on paho-mqtt 2.x: its own network thread, reconnect with jittered backoff, resubscribe.

A persistent session (clean_session False) under a client id that is unique to this gateway and the same across
its restarts: the broker keeps the subscription while the gateway is away and queues the QoS 1 messages for it,
and two gateways on one broker never take each other's session.

Logs only when the connection state changes ("connected", "lost", "recovered"), never per retry.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import BrokerConfig
from gateway.protocol.topics import subscription
from gateway.transport.chunked_reads import ChunkedReadClient
from gateway.transport.redelivery import Redeliveries

log = logging.getLogger("gateway.mqtt")

BROKER_DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"  # mosquitto's own count of messages it dropped


CLIENT_ID_PREFIX = "appliance-gw-"

# After each turn of paho's loop the link thread pauses this long, so that the next turn reads in one chunk what
# arrived meanwhile. Without it, at 8,000 msg/s a turn (a select, a read, paho's housekeeping and a hand-over of
# the interpreter lock to the pipeline thread and back) ran for every one or two messages; with it, for eight
# or so, and the gateway's CPU there fell from 64-65 % to 52-55 % of a core, its latency the same within the
# noise (../shared/bench-peers, gateway-full, measured before the link took PUBLISH packets from the chunk
# itself; 2 ms saved no more). A message reaches the handoff at most 1 ms
# later; the pipeline thread gathers for 2-10 ms between rule passes under load anyway.
READ_PAUSE_SECONDS = 0.001


def stable_client_id(key: bytes) -> str:
    """23 characters (what every MQTT 3.1.1 broker must accept), derived from the gateway key: another gateway
    has another key, and this one keeps its id, and so its session on the broker, across restarts."""
    digest = hmac.new(key, b"mqtt-client-id", hashlib.sha256).hexdigest()
    return CLIENT_ID_PREFIX + digest[:23 - len(CLIENT_ID_PREFIX)]


class MqttLink:
    def __init__(self, config: BrokerConfig, on_message: Callable[[str, bytes], None],
                 on_broker_dropped: Callable[[int], None] | None = None,
                 on_state: Callable[[bool], None] | None = None) -> None:
        """`on_broker_dropped`: told the broker's own count of dropped messages, where it publishes one ($SYS);
        `on_state`: told each change of the connection (True: subscribed and hearing; False: lost)."""
        self.config = config
        self._on_message = on_message
        self._on_broker_dropped = on_broker_dropped
        self._on_state = on_state
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = "new"  # new -> connected <-> down
        self.connects = 0
        self.received = 0
        self.endpoint = config.host_port()  # the node connected to (or tried last)
        self._attempt = 0
        self._subscribe_mid: int | None = None  # the telemetry subscription's, on the connection in hand
        self.redeliveries = Redeliveries()  # QoS 1 copies of messages taken in already: dropped, counted
        self._client = self._make_client()

    def _make_client(self) -> ChunkedReadClient:
        cfg = self.config
        client = ChunkedReadClient(CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
                                   clean_session=not cfg.persistent_session, protocol=mqtt.MQTTv311)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password or None)
        if cfg.uses_tls:
            client.tls_set(ca_certs=cfg.tls_ca_file or None, certfile=cfg.tls_cert_file or None,
                           keyfile=cfg.tls_key_file or None, cert_reqs=ssl.CERT_REQUIRED)
            client.tls_insecure_set(cfg.tls_insecure)
        client.on_connect = self._handle_connect
        client.on_subscribe = self._handle_subscribe
        client.on_message = self._handle_message
        client.on_received = self._received
        return client

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError, ValueError):  # already gone; nothing left to close
            self._client.disconnect()

    def _run(self) -> None:
        """Connect, loop, and after a failure try the next node (several in `broker.url`: one cluster) after a
        jittered, growing pause; a connection that worked resets the pause."""
        endpoints = self.config.endpoints()
        delay = self.config.reconnect_min_seconds
        while not self._stop.is_set():
            host, port = self.endpoint = endpoints[self._attempt % len(endpoints)]
            try:
                self._client.connect(host, port, keepalive=self.config.keepalive_seconds)
                rc = mqtt.MQTT_ERR_SUCCESS
                while not self._stop.is_set() and rc == mqtt.MQTT_ERR_SUCCESS:
                    rc = self._client.loop(timeout=0.2)
                    time.sleep(READ_PAUSE_SECONDS)
                reason = mqtt.error_string(rc)
            except (OSError, ssl.SSLError, ValueError) as exc:
                reason = str(exc) or type(exc).__name__
            if self._stop.is_set():
                break
            if self.connected:
                delay = self.config.reconnect_min_seconds
            self._set_state(False, reason)
            self._attempt += 1
            self._stop.wait(random.uniform(self.config.reconnect_min_seconds, delay))
            delay = min(self.config.reconnect_max_seconds, delay * 2)

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                        properties: Any) -> None:
        if reason.is_failure:
            self._set_state(False, f"broker refused the connection: {reason}")
            client.disconnect()
            return
        _, self._subscribe_mid = client.subscribe(subscription(self.config.topic_prefix), qos=1)
        if self._on_broker_dropped is not None:
            client.subscribe(BROKER_DROPPED_TOPIC, qos=0)

    def _handle_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                          properties: Any) -> None:
        """Connected means hearing: once the broker has taken the subscription (what an appliance publishes
        between the connection and this is not sent to the gateway)."""
        if mid != self._subscribe_mid:
            return
        if any(reason.is_failure for reason in reasons):
            self._set_state(False, f"broker refused the subscription: {reasons[0]}")
            client.disconnect()
            return
        self._set_state(True, "")

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """A message paho read itself (the others come to `_received` from the chunk directly)."""
        self._received(message.topic, bytes(message.payload), message.qos, bool(message.dup))

    def _received(self, topic: str, payload: bytes, qos: int, dup: bool) -> None:
        if topic.startswith("$SYS/"):
            with contextlib.suppress(ValueError):
                if self._on_broker_dropped is not None and topic == BROKER_DROPPED_TOPIC:
                    self._on_broker_dropped(int(payload.decode("ascii", "replace").strip()))
            return
        self.received += 1
        if self.redeliveries.is_repeat(topic, payload, qos, dup):
            if self.redeliveries.repeats == 1:
                log.info("the broker sent again a QoS 1 message taken in already (after a restart or a lost "
                         "acknowledgement); such repeats are dropped and counted (mqtt_repeats_dropped)")
            return
        self._on_message(topic, payload)

    @property
    def connected(self) -> bool:
        return self._state == "connected"

    def _set_state(self, connected: bool, reason: str) -> None:
        new = "connected" if connected else "down"
        if new == self._state:
            return
        previous, self._state = self._state, new
        if self._on_state is not None:
            self._on_state(connected)
        host, port = self.endpoint
        if connected:
            self.connects += 1
            verb = "recovered" if previous == "down" and self.connects > 1 else "connected to"
            log.info("%s MQTT broker %s:%d", verb, host, port)
        elif previous == "connected":
            log.warning("lost MQTT broker %s:%d: %s; reconnecting with backoff", host, port, reason)
        else:
            log.warning("cannot reach MQTT broker %s:%d: %s; retrying with backoff", host, port, reason)
