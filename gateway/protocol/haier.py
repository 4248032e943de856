"""Haier `FF FF` UART frames (washers, air conditioners), as exchanged between the Wi-Fi module and the machine.

Frame: FF FF | len | flags | 00 x5 | type | data | checksum | [CRC hi, CRC lo when flags & 0x40].
`len` counts the bytes after itself up to and including the checksum. The checksum is the low byte of the
sum from `len` to the last data byte; the CRC is CRC-16/ARC over the same bytes, sent big-endian. On the wire
every 0xFF after the FF FF start is sent as FF 55; checksums cover the unstuffed bytes. Verified against a real
washer capture (shmrymbd/haier-decoder, ../shared/vectors/haier_washer_uart_captures.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gateway.protocol.checksums import crc16_arc, sum8
from gateway.protocol.stream import NEED_MORE, FrameError, NeedMore, StreamDecoder

START = b"\xff\xff"
FLAG_CRC = 0x40
MIN_LEN = 8  # flags + 5 reserved + type + checksum


@dataclass(frozen=True, slots=True)
class HaierFrame:
    frame_type: int
    data: bytes
    flags: int = FLAG_CRC

    @property
    def has_crc(self) -> bool:
        return bool(self.flags & FLAG_CRC)

    def unstuffed(self) -> bytes:
        covered = bytes([len(self.data) + MIN_LEN, self.flags, 0, 0, 0, 0, 0, self.frame_type]) + self.data
        frame = START + covered + bytes([sum8(covered)])
        return frame + crc16_arc(covered).to_bytes(2, "big") if self.has_crc else frame

    def to_wire(self) -> bytes:
        return START + self.unstuffed()[2:].replace(b"\xff", b"\xff\x55")


class HaierDecoder(StreamDecoder[HaierFrame]):
    start_marker = START

    def take_frame(self, buffer: bytearray) -> tuple[HaierFrame, int] | NeedMore:
        out = bytearray()
        needed = 2  # len and flags, then we know the rest
        i = 2
        while len(out) < needed:
            if i >= len(buffer):
                return NEED_MORE
            byte = buffer[i]
            if byte == 0xFF:
                if i + 1 >= len(buffer):
                    return NEED_MORE
                if buffer[i + 1] != 0x55:
                    raise FrameError("truncated", "a new frame started inside this one")
                i += 2
            else:
                i += 1
            out.append(byte)
            if len(out) == 2:
                length, flags = out[0], out[1]
                if length < MIN_LEN:
                    raise FrameError("bad_length", f"len {length}")
                needed = 1 + length + (2 if flags & FLAG_CRC else 0)
        length, flags = out[0], out[1]
        covered = bytes(out[:length])
        if sum8(covered) != out[length]:
            raise FrameError("bad_checksum")
        if flags & FLAG_CRC and crc16_arc(covered) != int.from_bytes(out[length + 1:length + 3], "big"):
            raise FrameError("bad_crc")
        return HaierFrame(covered[7], covered[8:], flags), i


class MachineState(Enum):
    STANDBY = "standby"
    READY = "ready"
    RUNNING = "running"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class WasherStatus:
    """Status frames (type 0x02 or 0x06, data 6D 01 ...): byte 2 is the program (or state), bytes 3-4 the run state."""

    program: int
    state: MachineState
    raw_state: bytes


STATUS_TYPES = {0x02, 0x06}
# "reset/alarm-status related report" and "query alarm response" (type names from the capture's upstream docs);
# no public source establishes what their bits mean, so they are passed on raw, never interpreted.
ALARM_TYPES = {0x04, 0x74}
_RUN_STATES = {b"\x30\x30": MachineState.STANDBY, b"\x30\x10": MachineState.READY, b"\xb0\x31": MachineState.RUNNING}


def decode_washer_status(frame: HaierFrame) -> WasherStatus | None:
    """The washer's status, or None when the frame is not a status frame."""
    if frame.frame_type not in STATUS_TYPES or frame.data[:2] != b"\x6d\x01" or len(frame.data) < 5:
        return None
    raw = frame.data[3:5]
    return WasherStatus(frame.data[2], _RUN_STATES.get(raw, MachineState.UNKNOWN), raw)
