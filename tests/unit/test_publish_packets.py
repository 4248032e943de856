"""The chunked client's own PUBLISH reader (gateway/transport/chunked_reads.py `_take_publishes`) on crafted
byte streams: it takes exactly the whole QoS 0 and 1 PUBLISH packets at the chunk's position and leaves every
other byte where paho will read it. (tests/e2e/test_chunked_reads.py runs it against mosquitto.)"""

from __future__ import annotations

import struct

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gateway.transport.chunked_reads import ChunkedReadClient


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: bytes, payload: bytes, qos: int = 0, mid: int = 0, dup: bool = False) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"") + payload
    return bytes([0x30 | qos << 1 | (0x08 if dup else 0)]) + remaining_length(len(body)) + body


PINGRESP = b"\xd0\x00"


class NoSocket:
    """Where the client's socket would be: the reader only compares it (paho closes it when the client goes)."""

    def close(self) -> None:
        pass


class Reader:
    """A ChunkedReadClient over an in-memory chunk: no socket, the acknowledgements it would send recorded."""

    def __init__(self, chunk: bytes, protocol: int = mqtt.MQTTv311) -> None:
        self.client = ChunkedReadClient(CallbackAPIVersion.VERSION2, client_id="unit", protocol=protocol)
        self.client._sock = self.client._chunk_socket = NoSocket()  # type: ignore[assignment]
        self.client._chunk, self.client._position = chunk, 0
        self.got: list[tuple[str, bytes, int, bool]] = []
        self.acked: list[int] = []

        def puback(mid: int) -> MQTTErrorCode:
            self.acked.append(mid)
            return MQTTErrorCode.MQTT_ERR_SUCCESS

        self.client._send_puback = puback  # type: ignore[method-assign]

    def take(self) -> int:
        return self.client._take_publishes(lambda *message: self.got.append(message))

    @property
    def position(self) -> int:
        return self.client._position


def test_whole_qos0_and_qos1_packets_are_taken_and_qos1_acknowledged() -> None:
    stream = publish(b"a/dev-1/telemetry", b'{"x":1}') + publish(b"a/dev-2/telemetry", b"", qos=1, mid=513,
                                                                   dup=True)
    reader = Reader(stream)
    assert reader.take() == 2
    assert reader.got == [("a/dev-1/telemetry", b'{"x":1}', 0, False), ("a/dev-2/telemetry", b"", 1, True)]
    assert reader.acked == [513]
    assert reader.position == len(stream)


@pytest.mark.parametrize("after", [
    PINGRESP,                                             # not a PUBLISH: paho reads it
    publish(b"a/b/c", b"x", qos=2, mid=7),                # QoS 2 has paho's state machine
    publish(b"", b"x"),                                   # an empty topic: malformed, paho says so
    publish("ä".encode("latin-1"), b"x"),                 # a topic that is not UTF-8
    b"\x30\x01\x00",                                      # shorter than a topic length
    b"\x30\x05\x00\x09abc",                               # a topic longer than the packet
    b"\x30\xff\xff\xff\xff\x01",                          # a remaining length of five bytes
], ids=["ping", "qos2", "empty-topic", "not-utf8", "short", "topic-too-long", "length-5"])
def test_the_reader_stops_at_what_paho_must_read(after: bytes) -> None:
    first = publish(b"a/dev-1/telemetry", b"1")
    reader = Reader(first + after + publish(b"a/dev-3/telemetry", b"3"))
    assert reader.take() == 1
    assert reader.position == len(first), "the rest is left for paho, from its first byte"
    assert reader.acked == []


@pytest.mark.parametrize("cut", [1, 2, 3, 300], ids=["command", "length", "topic", "payload"])
def test_a_packet_cut_off_by_the_chunk_end_is_left_to_paho(cut: int) -> None:
    first, last = publish(b"a/dev-1/telemetry", b"1"), publish(b"a/b/c", b"x" * 300, qos=1, mid=9)
    reader = Reader(first + last[:cut])
    assert reader.take() == 1
    assert reader.position == len(first)
    assert reader.acked == []


def test_mqtt5_packets_are_left_to_paho() -> None:
    reader = Reader(publish(b"a/b/c", b"x"), protocol=mqtt.MQTTv5)
    assert reader.take() == 0
    assert reader.position == 0


def test_a_callback_that_reconnects_ends_the_chunk() -> None:
    reader = Reader(publish(b"a/b/c", b"1", qos=1, mid=1) + publish(b"a/b/c", b"2"))

    def reconnects(*message: object) -> None:
        reader.client._sock = NoSocket()  # type: ignore[assignment]

    assert reader.client._take_publishes(reconnects) == 1
    assert reader.acked == [], "the acknowledgement belonged to the old connection"


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=20).map(lambda b: b.hex().encode()),
                          st.binary(max_size=20_000), st.integers(0, 1), st.integers(1, 65_535)),
                min_size=1, max_size=8))
def test_any_run_of_publish_packets_comes_out_as_it_went_in(
        messages: list[tuple[bytes, bytes, int, int]]) -> None:
    reader = Reader(b"".join(publish(topic, payload, qos, mid) for topic, payload, qos, mid in messages))
    assert reader.take() == len(messages)
    assert reader.got == [(topic.decode(), payload, qos, False) for topic, payload, qos, _ in messages]
    assert reader.acked == [mid for _, _, qos, mid in messages if qos]


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=20).map(lambda b: b.hex().encode()),
                          st.binary(max_size=500), st.integers(0, 1)), min_size=1, max_size=8),
       st.data())
def test_a_chunk_cut_anywhere_yields_exactly_the_packets_before_the_cut(
        messages: list[tuple[bytes, bytes, int]], data: st.DataObject) -> None:
    packets = [publish(topic, payload, qos, mid=n + 1) for n, (topic, payload, qos) in enumerate(messages)]
    stream = b"".join(packets)
    cut = data.draw(st.integers(0, len(stream)), label="chunk ends at")
    ends = [sum(len(p) for p in packets[:n + 1]) for n in range(len(packets))]
    whole = sum(1 for end in ends if end <= cut)
    reader = Reader(stream[:cut])
    assert reader.take() == whole
    assert reader.position == (ends[whole - 1] if whole else 0), "the cut packet left for paho from its first byte"
    assert reader.got == [(t.decode(), p, q, False) for t, p, q in messages[:whole]]
    assert reader.acked == [n + 1 for n, (_, _, q) in enumerate(messages[:whole]) if q]
