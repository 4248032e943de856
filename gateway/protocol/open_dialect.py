"""The open UART dialect: our own, for appliance makers who integrate the gateway from scratch.

Specified byte by byte in docs/uart-protocol.md. Length-prefixed (no byte stuffing), CRC-16/ARC, so a
microcontroller implements it with one 256-entry table or an 8-step loop.

    A5 5A | version | type | seq | length | payload (length bytes) | CRC-16/ARC big-endian over version..payload
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from gateway.protocol.checksums import crc16_arc
from gateway.protocol.stream import NEED_MORE, FrameError, NeedMore, StreamDecoder

START = b"\xa5\x5a"
VERSION = 1
HEADER = 6
MAX_PAYLOAD = 240


class MessageType(IntEnum):
    IDENTIFY = 0x01
    TELEMETRY = 0x02
    EVENT = 0x03
    ACK = 0x04
    NACK = 0x05
    POLL = 0x06


class ApplianceCode(IntEnum):
    AIR_CONDITIONER = 0x01
    REFRIGERATOR = 0x02
    WASHER = 0x03
    WATER_HEATER = 0x04
    DISHWASHER = 0x05


APPLIANCE_TYPES = {code: code.name.lower() for code in ApplianceCode}


class NackReason(IntEnum):
    BAD_CRC = 0x01
    UNSUPPORTED_VERSION = 0x02
    UNKNOWN_TYPE = 0x03
    BAD_PAYLOAD = 0x04
    BUSY = 0x05


@dataclass(frozen=True, slots=True)
class OpenFrame:
    msg_type: int
    seq: int
    payload: bytes = b""
    version: int = VERSION

    def to_bytes(self) -> bytes:
        if len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}")
        covered = bytes([self.version, self.msg_type, self.seq & 0xFF, len(self.payload)]) + self.payload
        return START + covered + crc16_arc(covered).to_bytes(2, "big")


class OpenDecoder(StreamDecoder[OpenFrame]):
    start_marker = START

    def take_frame(self, buffer: bytearray) -> tuple[OpenFrame, int] | NeedMore:
        if len(buffer) < HEADER:
            return NEED_MORE
        length = buffer[5]
        if length > MAX_PAYLOAD:
            raise FrameError("bad_length", f"payload length {length}")
        total = HEADER + length + 2
        if len(buffer) < total:
            return NEED_MORE
        covered = bytes(buffer[2:HEADER + length])
        if crc16_arc(covered) != int.from_bytes(buffer[HEADER + length:total], "big"):
            raise FrameError("bad_crc")
        if covered[0] != VERSION:
            raise FrameError("unsupported_version", f"version {covered[0]}")
        return OpenFrame(covered[1], covered[2], covered[4:], covered[0]), total


# --- payloads ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Identify:
    appliance: ApplianceCode
    brand: str
    model: str
    serial: str
    firmware: str

    def encode(self) -> bytes:
        out = bytes([self.appliance])
        for text in (self.brand, self.model, self.serial, self.firmware):
            raw = text.encode("utf-8")
            if len(raw) > 48:
                raise ValueError(f"{text!r} is longer than 48 bytes")
            out += bytes([len(raw)]) + raw
        return out

    @classmethod
    def decode(cls, payload: bytes) -> Identify:
        try:
            appliance = ApplianceCode(payload[0])
            fields, i = [], 1
            for _ in range(4):
                size = payload[i]
                if len(payload) < i + 1 + size:
                    raise IndexError("a text runs past the payload")
                fields.append(payload[i + 1:i + 1 + size].decode("utf-8"))
                i += 1 + size
        except (IndexError, ValueError, UnicodeDecodeError) as exc:
            raise FrameError("bad_payload", f"identify: {exc}") from None
        if i != len(payload):
            raise FrameError("bad_payload", "identify: trailing bytes")
        return cls(appliance, *fields)


@dataclass(frozen=True, slots=True)
class Telemetry:
    """(metric id, value) pairs; ids are the `uart_id`s of the appliance profile's metrics."""

    values: tuple[tuple[int, float], ...]

    def encode(self) -> bytes:
        return b"".join(struct.pack(">Bf", metric, value) for metric, value in self.values)

    @classmethod
    def decode(cls, payload: bytes) -> Telemetry:
        if len(payload) % 5:
            raise FrameError("bad_payload", f"telemetry of {len(payload)} bytes is not a whole number of pairs")
        return cls(tuple(struct.iter_unpack(">Bf", payload)))


@dataclass(frozen=True, slots=True)
class Event:
    """A fault or state code; `active` False clears it."""

    code: str
    active: bool = True

    def encode(self) -> bytes:
        raw = self.code.encode("ascii")
        if not 0 < len(raw) <= 16:
            raise ValueError("an event code is 1-16 ASCII characters")
        return bytes([int(self.active), len(raw)]) + raw

    @classmethod
    def decode(cls, payload: bytes) -> Event:
        if len(payload) < 3 or payload[1] != len(payload) - 2 or payload[0] > 1:
            raise FrameError("bad_payload", "event")
        try:
            return cls(payload[2:].decode("ascii"), bool(payload[0]))
        except UnicodeDecodeError:
            raise FrameError("bad_payload", "event code is not ASCII") from None


def ack(seq: int, acked: int) -> OpenFrame:
    return OpenFrame(MessageType.ACK, seq, bytes([acked & 0xFF]))


def nack(seq: int, acked: int, reason: NackReason) -> OpenFrame:
    return OpenFrame(MessageType.NACK, seq, bytes([acked & 0xFF, reason]))


def poll(seq: int, wanted: MessageType = MessageType.TELEMETRY) -> OpenFrame:
    return OpenFrame(MessageType.POLL, seq, bytes([wanted]))
