"""The MQTT link's chunked socket reads (gateway/transport/chunked_reads.py) against a real mosquitto: every
message comes through whole and in order, whatever its size and wherever a chunk ends, also when the
connection is dropped with a chunk half read; and the socket is read in chunks, not a few bytes at a time."""

from __future__ import annotations

import time

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.mqtt_peer import publish_while_away
from gateway.config import BrokerConfig
from gateway.transport import chunked_reads
from gateway.transport.chunked_reads import ChunkedReadClient
from gateway.transport.mqtt import MqttLink
from tests.e2e.conftest import Mosquitto

pytestmark = pytest.mark.e2e

# sizes around the one-, two- and three-byte remaining lengths, and larger than a chunk
SIZES = [0, 1, 60, 100, 200, 16_000, 16_500, 100, 3, 200_000, 90, 127, 128, 16_383, 16_384, 2_000]


def payload(seq: int) -> bytes:
    """Message `seq`: its number, then padding to one of SIZES (the number alone where SIZES is smaller)."""
    head = orjson.dumps({"seq": seq})
    return head + b" " * max(0, SIZES[seq % len(SIZES)] - len(head))


def messages(count: int) -> list[tuple[str, bytes]]:
    return [(f"chunks/dev-{seq % 7}", payload(seq)) for seq in range(count)]


def drain(port: int, client_id: str, count: int, direct: bool, drop_after: int | None = None,
          ) -> tuple[list[tuple[str, bytes]], ChunkedReadClient, bool]:
    """Every message the client gets until it has `count` distinct ones, through paho's own path or (`direct`)
    taken from the chunk past it, as the gateway's link does. With `drop_after`: at the first message after
    that many that leaves bytes in the chunk, the client connects again at once (the chunk in hand and its
    unacknowledged messages are left behind); the third value says whether that happened."""
    got: list[tuple[str, bytes]] = []
    dropped = False
    client = ChunkedReadClient(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                               protocol=mqtt.MQTTv311)

    def received(topic: str, payload: bytes, qos: int, dup: bool) -> None:
        nonlocal dropped
        got.append((topic, payload))
        if drop_after is not None and not dropped and len(got) >= drop_after and client.buffered:
            dropped = True
            client.reconnect()

    client.on_message = lambda c, userdata, message: received(message.topic, bytes(message.payload), 1, False)
    if direct:
        client.on_received = received
    client.connect("127.0.0.1", port)
    deadline = time.monotonic() + 60
    while len({orjson.loads(p.split(b" ")[0])["seq"] for _, p in got}) < count and time.monotonic() < deadline:
        client.loop(timeout=0.2)  # as the gateway's link runs it: paho's select cannot see the chunk in hand
    client.disconnect()
    return got, client, dropped


BOTH_PATHS = pytest.mark.parametrize("direct", [False, True], ids=["paho", "direct"])


@BOTH_PATHS
def test_every_message_comes_whole_and_in_order_and_the_socket_is_read_in_chunks(
        mosquitto: Mosquitto, direct: bool) -> None:
    count = 900  # mosquitto queues at most 1,000 for a session that is away
    publish_while_away(mosquitto.port, f"chunks-whole-{direct}", "chunks/#", messages(count))
    got, client, _ = drain(mosquitto.port, f"chunks-whole-{direct}", count, direct)
    assert got == messages(count)  # QoS 1: without the acknowledgements mosquitto stops after 20
    assert client.chunks_read > 0, "paho no longer reads through _sock_recv: the chunked reads are not used"
    assert (client.taken_directly > count / 2) == direct, client.taken_directly
    # paho alone reads 3 times a message at least; mosquitto sends QoS 1 in windows of 20 unacknowledged
    assert client.chunks_read < count / 5, client.chunks_read


@BOTH_PATHS
def test_a_cap_on_packets_per_read_still_reads_the_chunk_in_hand_to_its_end(
        mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch, direct: bool) -> None:
    monkeypatch.setattr(chunked_reads, "MAX_PACKETS_PER_READ", 3)  # below mosquitto's window of 20
    count = 600
    publish_while_away(mosquitto.port, f"chunks-capped-{direct}", "chunks/#", messages(count))
    got, client, _ = drain(mosquitto.port, f"chunks-capped-{direct}", count, direct)
    assert got == messages(count)
    assert not client.buffered


@BOTH_PATHS
def test_a_connection_dropped_with_a_chunk_half_read_loses_and_garbles_nothing(
        mosquitto: Mosquitto, direct: bool) -> None:
    """The chunk of the old connection is thrown away with it: its unacknowledged messages come again on the
    new connection (QoS 1, at least once) and none of its bytes is read as the new connection's."""
    count = 900
    publish_while_away(mosquitto.port, f"chunks-dropped-{direct}", "chunks/#", messages(count))
    got, _, dropped = drain(mosquitto.port, f"chunks-dropped-{direct}", count, direct, drop_after=300)
    assert dropped, "the connection was meant to be dropped with bytes left in the chunk"
    assert set(got) == set(messages(count)), "every message whole: none lost, none made of two connections' bytes"


def test_the_gateway_link_reads_in_chunks() -> None:
    """The MQTT link the gateway runs is the chunked one (the tests above would pass with a link that does
    not use it)."""
    link = MqttLink(BrokerConfig(client_id="chunked-link"), on_message=lambda topic, body: None)
    assert isinstance(link._client, ChunkedReadClient)
    assert link._client.on_received is not None, "the link takes PUBLISH packets from the chunk directly"
