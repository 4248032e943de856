import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.protocol.checksums import crc16_arc
from gateway.protocol.open_dialect import (
    ApplianceCode,
    Event,
    Identify,
    MessageType,
    NackReason,
    OpenDecoder,
    OpenFrame,
    Telemetry,
    nack,
    poll,
)
from gateway.protocol.stream import FrameError

frames = st.builds(OpenFrame, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=240))
texts = st.text(max_size=12)
identities = st.builds(Identify, st.sampled_from(list(ApplianceCode)), texts, texts, texts, texts)
telemetry = st.builds(Telemetry, st.lists(st.tuples(st.integers(0, 255), st.floats(width=32, allow_nan=False)),
                                          max_size=48).map(tuple))
events = st.builds(Event, st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=16),
                   st.booleans())


def test_crc_check_value() -> None:
    assert crc16_arc(b"123456789") == 0xBB3D  # the catalogued check value of CRC-16/ARC


def test_worked_example_of_the_spec() -> None:
    """docs/uart-protocol.md, written out by hand: AC telemetry, seq 7, 25.5 degC and compressor on."""
    wire = bytes.fromhex("a5 5a 01 02 07 0a 01 41 cc 00 00 05 3f 80 00 00 ff 73")
    [frame] = OpenDecoder().feed(wire)
    assert (frame.msg_type, frame.seq) == (MessageType.TELEMETRY, 7)
    assert Telemetry.decode(frame.payload).values == ((1, 25.5), (5, 1.0))


@given(frames)
def test_frame_roundtrip(frame: OpenFrame) -> None:
    assert OpenDecoder().feed(frame.to_bytes()) == [frame]


@given(identities)
def test_identify_roundtrip(identify: Identify) -> None:
    assert Identify.decode(identify.encode()) == identify


@given(telemetry)
def test_telemetry_roundtrip(values: Telemetry) -> None:
    assert Telemetry.decode(values.encode()) == values


@given(events)
def test_event_roundtrip(event: Event) -> None:
    assert Event.decode(event.encode()) == event


def test_unsupported_version_and_oversize_are_rejected_with_a_reason() -> None:
    decoder = OpenDecoder()
    future = OpenFrame(MessageType.POLL, 1, b"\x02", version=2).to_bytes()
    assert decoder.feed(future) == []
    assert decoder.counters["unsupported_version"] == 1
    with pytest.raises(ValueError, match="exceeds 240"):
        OpenFrame(MessageType.TELEMETRY, 1, bytes(241)).to_bytes()


@pytest.mark.parametrize("payload", [b"", b"\x09", b"\x01\x05abc", b"\x01\x00\x00\x00\x00\x00"])
def test_broken_identify_payloads(payload: bytes) -> None:
    with pytest.raises(FrameError):
        Identify.decode(payload)


def test_control_frames() -> None:
    assert poll(3).payload == bytes([MessageType.TELEMETRY])
    assert nack(4, 9, NackReason.BAD_CRC).payload == b"\x09\x01"
    assert struct.unpack(">Bf", Telemetry(((7, 2.5),)).encode()) == (7, 2.5)
