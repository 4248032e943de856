"""For every dialect: any stream of valid frames with garbage between them yields exactly those frames,
in order, however it is chunked. Garbage never contains the dialect's first start byte: a start marker followed by
bytes that happen to pass an 8-bit checksum is, by construction, a frame (real corrupted traffic is covered by
the serial end-to-end tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol.haier import HaierDecoder, HaierFrame
from gateway.protocol.midea import AIR_CONDITIONER, MideaDecoder, MideaFrame, with_body_crc
from gateway.protocol.open_dialect import OpenDecoder, OpenFrame
from gateway.protocol.stream import StreamDecoder

midea_frames = st.builds(
    lambda body, version, kind: MideaFrame(AIR_CONDITIONER, version, kind, with_body_crc(bytes([0xC0]) + body)),
    st.binary(min_size=1, max_size=60), st.integers(0, 9), st.integers(2, 5))
haier_frames = st.builds(HaierFrame, st.integers(0, 0xFE), st.binary(max_size=60), st.sampled_from([0x00, 0x40]))
open_frames = st.builds(OpenFrame, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=80))

DIALECTS: dict[str, tuple[Any, Callable[[], StreamDecoder[Any]], int, Callable[[Any], bytes]]] = {
    "midea": (midea_frames, MideaDecoder, 0xAA, lambda f: f.to_bytes()),
    "haier": (haier_frames, HaierDecoder, 0xFF, lambda f: f.to_wire()),
    "open": (open_frames, OpenDecoder, 0xA5, lambda f: f.to_bytes()),
}


def check(dialect: str, data: st.DataObject) -> None:
    frames_strategy, make_decoder, start_byte, wire = DIALECTS[dialect]
    garbage = st.binary(max_size=30).map(lambda b: b.replace(bytes([start_byte]), b""))
    frames = data.draw(st.lists(frames_strategy, max_size=8))
    stream = b"".join(data.draw(garbage) + wire(f) for f in frames) + data.draw(garbage)
    chunk = data.draw(st.integers(1, 64))
    decoder = make_decoder()
    out = [f for i in range(0, len(stream), chunk) for f in decoder.feed(stream[i:i + chunk])]
    assert out == frames


@settings(max_examples=150)
@given(st.data())
def test_midea_stream(data: st.DataObject) -> None:
    check("midea", data)


@settings(max_examples=150)
@given(st.data())
def test_haier_stream(data: st.DataObject) -> None:
    check("haier", data)


@settings(max_examples=150)
@given(st.data())
def test_open_stream(data: st.DataObject) -> None:
    check("open", data)


def test_buffer_is_capped_while_waiting_for_a_frame() -> None:
    decoder = OpenDecoder(max_buffer=64)
    decoder.feed(b"\xa5\x5a\x01\x02\x07\xf0" + bytes(100))  # a header promising 240 bytes, only 100 so far
    assert decoder.buffered == 64
    assert decoder.counters["buffer_overflows"] == 1
    good = OpenFrame(2, 1, b"ok").to_bytes()
    assert decoder.feed(bytes(300) + good) == [OpenFrame(2, 1, b"ok")]  # and it recovers
