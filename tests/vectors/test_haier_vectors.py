"""A real Haier washer's UART traffic (shmrymbd/haier-decoder, MIT), replayed into our decoder.
Source: ../shared/vectors/haier_washer_uart_captures.json (405 frames validated there)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from gateway.protocol.haier import HaierDecoder, HaierFrame, MachineState, decode_washer_status
from tests.vectors.conftest import load_vectors


def captures() -> dict[str, Any]:
    captured: dict[str, Any] = load_vectors("haier_washer_uart_captures.json")["captures"]
    return captured


def replay(lines: list[dict[str, Any]], chunking: str) -> dict[str, list[HaierFrame]]:
    decoders = {"machine": HaierDecoder(), "modem": HaierDecoder()}
    out: dict[str, list[HaierFrame]] = {"machine": [], "modem": []}
    for line in lines:
        data = bytes.fromhex(line["hex"])
        size = {"original": len(data), "halved": max(1, len(data) // 2), "byte_by_byte": 1}[chunking]
        for i in range(0, len(data), size):
            out[line["direction"]] += decoders[line["direction"]].feed(data[i:i + size])
    return out


@pytest.mark.parametrize("chunking", ["original", "halved", "byte_by_byte"])
def test_capture_replay_yields_exactly_the_listed_frames(chunking: str) -> None:
    total = 0
    for name, capture in captures().items():
        out = replay(capture["raw_lines"], chunking)
        for direction in ("machine", "modem"):
            expected = [f for f in capture["frames"] if f["direction"] == direction]
            assert [f.unstuffed().hex() for f in out[direction]] == [f["frame_hex"] for f in expected], name
            assert [f.to_wire().hex() for f in out[direction]] == [f["wire_hex"] for f in expected], name
            total += len(expected)
    assert total == 405


def test_flipping_any_byte_of_a_frame_rejects_it() -> None:
    frames = [bytes.fromhex(f["wire_hex"]) for c in captures().values() for f in c["frames"]][:40]
    for wire in frames:
        for position in range(2, len(wire)):
            broken = bytearray(wire)
            broken[position] ^= 0x01 if broken[position] != 0xFE else 0x02  # never create an FF by accident
            decoder = HaierDecoder()
            out = decoder.feed(bytes(broken) + wire)
            assert [f.to_wire() for f in out] == [wire], (wire.hex(), position)


def test_status_frames() -> None:
    """Upstream: state 0x01 with 30 30 is standby, 0x0N with B0 31 is program N running."""
    seen: Counter[tuple[int, str]] = Counter()
    for capture in captures().values():
        for frame in replay(capture["raw_lines"], "original")["machine"]:
            status = decode_washer_status(frame)
            if status is not None:
                seen[(status.program, status.state.value)] += 1
    assert seen[(1, MachineState.STANDBY.value)] > 0
    assert all(seen[(n, MachineState.RUNNING.value)] > 0 for n in (1, 2, 3, 4))
    assert seen[(1, MachineState.READY.value)] > 0


def test_hand_written_vectors() -> None:
    """From the frame layout, computed by hand: an ACK (type 0x05) without data or CRC:
    len 08, flags 00, five 00, type 05, checksum 08+05 = 0D."""
    ack = bytes.fromhex("ff ff 08 00 00 00 00 00 00 05 0d")
    [frame] = HaierDecoder().feed(b"\x00\x13" + ack)
    assert frame == HaierFrame(0x05, b"", flags=0x00)
    assert frame.to_wire() == ack
    # A data byte FF is stuffed on the wire and counted once in the checksum: 08+1 data, 05, FF -> 0x0E+0xFF
    stuffed = bytes.fromhex("ff ff 09 00 00 00 00 00 00 05 ff 55 0d")
    [frame] = HaierDecoder().feed(stuffed)
    assert frame.data == b"\xff" and frame.to_wire() == stuffed


def test_alarm_frames_become_raw_events() -> None:
    from gateway.ingest.uart import HaierAdapter
    from gateway.protocol.topics import TopicKind

    alarms = [f for c in captures().values() for f in c["frames"] if int(f["type"], 16) in (0x04, 0x74)]
    assert alarms, "the capture has reset/alarm reports"
    [frame] = HaierDecoder().feed(bytes.fromhex(alarms[0]["wire_hex"]))
    [(kind, event)] = HaierAdapter().records(frame, 1.0)
    assert kind is TopicKind.EVENT
    assert event["code"] == f"HAIER-{frame.frame_type:02X}" and event["raw"] == frame.data.hex()
    assert event["interpreted"] is False
