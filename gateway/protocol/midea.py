"""Midea `0xAA` UART frames (air conditioners 0xAC, commercial AC 0xCC, heat pumps 0xC3, fridges 0xCA ...).

Frame: AA | len (= total bytes - 1) | appliance | 00 x5 | protocol version | frame type | body | checksum.
The checksum makes the bytes from `len` to the checksum sum to zero. AC state, group and capability bodies end
in a CRC-8/MAXIM of the body (some firmware puts the same two's-complement sum there instead; both are
accepted); property responses (0xB0/0xB1) are accepted without it, as the firmware sends them with bad CRCs.
Byte layouts follow mill1000/midea-msmart and midea-lan/midea-local (see ../shared/vectors/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from gateway.protocol.checksums import crc8_maxim, twos_complement_sum
from gateway.protocol.stream import NEED_MORE, FrameError, NeedMore, StreamDecoder

START = 0xAA
HEADER_LENGTH = 10
MIN_FRAME = HEADER_LENGTH + 1
AIR_CONDITIONER = 0xAC
COMMERCIAL_AC = 0xCC
HEAT_PUMP = 0xC3
REFRIGERATOR = 0xCA


class FrameType(IntEnum):
    CONTROL = 0x02
    QUERY = 0x03
    REPORT = 0x04
    NOTIFY = 0x05


class MessageId(IntEnum):
    QUERY = 0x41
    STATE = 0xC0
    GROUP_DATA = 0xC1
    CAPABILITIES = 0xB5
    PROPERTIES = 0xB0
    PROPERTIES_ALT = 0xB1


_BODY_CRC_REQUIRED = {AIR_CONDITIONER: {MessageId.STATE, MessageId.GROUP_DATA, MessageId.CAPABILITIES}}


@dataclass(frozen=True, slots=True)
class MideaFrame:
    appliance: int
    protocol_version: int
    frame_type: int
    body: bytes  # including the trailing body CRC where the message has one

    @property
    def message_id(self) -> int:
        return self.body[0] if self.body else -1

    def to_bytes(self) -> bytes:
        header = bytes([START, HEADER_LENGTH + len(self.body), self.appliance, 0, 0, 0, 0, 0,
                        self.protocol_version, self.frame_type])
        without_checksum = header + self.body
        return without_checksum + bytes([twos_complement_sum(without_checksum[1:])])

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray, appliance: int | None = None) -> MideaFrame:
        """Validate one complete frame; FrameError names why it is not acceptable."""
        if len(raw) < MIN_FRAME or raw[0] != START:
            raise FrameError("too_short" if len(raw) < MIN_FRAME else "bad_start", f"{len(raw)} bytes")
        if raw[1] != len(raw) - 1:
            raise FrameError("bad_length", f"length byte {raw[1]} for {len(raw)} bytes")
        if twos_complement_sum(raw[1:-1]) != raw[-1]:
            raise FrameError("bad_checksum")
        if appliance is not None and raw[2] != appliance:
            raise FrameError("wrong_appliance", f"0x{raw[2]:02X}, expected 0x{appliance:02X}")
        body = bytes(raw[HEADER_LENGTH:-1])
        if body and body[0] in _BODY_CRC_REQUIRED.get(raw[2], ()) and not body_crc_ok(body):
            raise FrameError("bad_crc", f"body CRC 0x{body[-1]:02X}")
        return cls(raw[2], raw[8], raw[9], body)


def body_crc_ok(body: bytes) -> bool:
    data, crc = body[:-1], body[-1]
    return crc8_maxim(data) == crc or twos_complement_sum(data) == crc


def with_body_crc(body: bytes) -> bytes:
    return body + bytes([crc8_maxim(body)])


class MideaDecoder(StreamDecoder[MideaFrame]):
    """Incremental decoder for one port; frames of another appliance type are rejected and counted."""

    start_marker = bytes([START])

    def __init__(self, appliance: int | None = AIR_CONDITIONER, max_buffer: int = 4096) -> None:
        super().__init__(max_buffer)
        self.appliance = appliance

    def take_frame(self, buffer: bytearray) -> tuple[MideaFrame, int] | NeedMore:
        if len(buffer) < 2:
            return NEED_MORE
        total = buffer[1] + 1
        if total < MIN_FRAME:
            raise FrameError("bad_length", f"length byte {buffer[1]}")
        if len(buffer) < total:
            return NEED_MORE
        return MideaFrame.from_bytes(buffer[:total], self.appliance), total


# --- queries the gateway sends ---------------------------------------------------------------------------------

def state_query(message_counter: int = 0, protocol_version: int = 3) -> MideaFrame:
    """AC state query (answered by a 0xC0 state response)."""
    body = bytes([0x41, 0x81, 0x00, 0xFF, 0x03, 0xFF, 0x00, 0x02]) + bytes(12) + bytes([0x03, message_counter & 0xFF])
    return MideaFrame(AIR_CONDITIONER, protocol_version, FrameType.QUERY, with_body_crc(body))


def group_query(group: int, message_counter: int = 0, protocol_version: int = 3) -> MideaFrame:
    """AC group-data query (answered by 0xC1 with the group: 1 compressor/temperatures, 4 energy, 5 fans)."""
    body = bytes([0x41, 0x21, 0x01, 0x40 | (group & 0x0F)]) + bytes(16) + bytes([0x03, message_counter & 0xFF])
    return MideaFrame(AIR_CONDITIONER, protocol_version, FrameType.QUERY, with_body_crc(body))


# --- responses the gateway decodes ---------------------------------------------------------------------------

class Mode(IntEnum):
    UNKNOWN = 0
    AUTO = 1
    COOL = 2
    DRY = 3
    HEAT = 4
    FAN = 5


@dataclass(frozen=True, slots=True)
class ACState:
    power_on: bool
    target_temperature: float
    mode: Mode
    fan_speed: int
    indoor_temperature: float | None
    outdoor_temperature: float | None
    fahrenheit: bool
    filter_alert: bool
    error_code: int


def _temperature(raw: int, tenths: int, fahrenheit: bool) -> float | None:
    if raw == 0xFF:
        return None
    value = (raw - 50) / 2
    if tenths and not fahrenheit:
        whole = int(value)
        value = whole + (tenths / 10 if value >= 0 else -tenths / 10)
    return value


def decode_state(body: bytes) -> ACState:
    """0xC0 state response."""
    if len(body) < 17 or body[0] != MessageId.STATE:
        raise FrameError("bad_body", "not a 0xC0 state body")
    fahrenheit = bool(body[10] & 0x04)
    tenths = body[15] if len(body) > 15 else 0
    target = (body[2] & 0x0F) + 16 + (0.5 if body[2] & 0x10 else 0.0)
    mode_value = (body[2] >> 5) & 0x07
    return ACState(
        power_on=bool(body[1] & 0x01),
        target_temperature=target,
        mode=Mode(mode_value) if mode_value in Mode._value2member_map_ else Mode.UNKNOWN,
        fan_speed=body[3] & 0x7F,
        indoor_temperature=_temperature(body[11], tenths & 0x0F, fahrenheit),
        outdoor_temperature=_temperature(body[12], tenths >> 4, fahrenheit),
        fahrenheit=fahrenheit,
        filter_alert=bool(body[13] & 0x20),
        error_code=body[16],
    )


@dataclass(frozen=True, slots=True)
class CompressorGroup:
    """0xC1 group 1: the refrigeration circuit."""

    compressor_frequency: int
    target_frequency: int
    compressor_current: int
    compressor_voltage: int
    indoor_temperature: float  # T1
    indoor_coil_temperature: float  # T2
    outdoor_coil_temperature: float  # T3
    outdoor_temperature: float  # T4
    discharge_temperature: int  # TP


@dataclass(frozen=True, slots=True)
class EnergyGroup:
    """0xC1 group 4, BCD counters: kWh and W."""

    total_energy: float | None
    current_energy: float | None
    real_time_power: float | None


@dataclass(frozen=True, slots=True)
class FanGroup:
    """0xC1 group 5."""

    humidity: int | None
    outdoor_fan_speed: int
    defrost: bool


def group_of(body: bytes) -> int:
    if len(body) < 4 or body[0] != MessageId.GROUP_DATA:
        raise FrameError("bad_body", "not a 0xC1 group body")
    return body[3] & 0x0F


def decode_compressor_group(body: bytes) -> CompressorGroup:
    if group_of(body) != 1 or len(body) < 15:
        raise FrameError("bad_body", "not a group-1 body")
    return CompressorGroup(body[4], body[5], body[7], body[8], (body[10] - 30) / 2, (body[11] - 30) / 2,
                           (body[12] - 50) / 2, (body[13] - 50) / 2, body[14])


def _bcd(byte: int) -> int:
    """Lenient BCD, as the firmware sends it: a nibble above 9 still counts its value."""
    return (byte >> 4) * 10 + (byte & 0x0F)


def decode_energy_group(body: bytes) -> EnergyGroup:
    if group_of(body) != 4 or len(body) < 19:
        raise FrameError("bad_body", "not a group-4 body")
    if not any(body[4:19]):
        return EnergyGroup(None, None, None)  # the unit does not report energy
    total = (_bcd(body[4]) * 1_000_000 + _bcd(body[5]) * 10_000 + _bcd(body[6]) * 100 + _bcd(body[7])) / 100
    current = (_bcd(body[12]) * 1_000_000 + _bcd(body[13]) * 10_000 + _bcd(body[14]) * 100
               + _bcd(body[15])) / 100
    power = (_bcd(body[16]) * 10_000 + _bcd(body[17]) * 100 + _bcd(body[18])) / 10
    return EnergyGroup(total, current, power)


def decode_fan_group(body: bytes) -> FanGroup:
    if group_of(body) != 5 or len(body) < 11:
        raise FrameError("bad_body", "not a group-5 body")
    return FanGroup(body[4] or None, body[8] * 8, body[10] != 0)


@dataclass(frozen=True, slots=True)
class HeatPumpEnergy:
    """0xC3 report 0x04: electric and thermal power (W), outdoor air and DHW tank (degC), supply voltage."""

    electric_power: int
    thermal_power: int
    outdoor_air_temperature: int
    water_tank_temperature: int
    voltage: int


# The voltage byte's position is taken from the one real capture we have (midea-msmart C3 energy report, asserted
# 225 V); the other fields' positions are confirmed by the same capture's asserted values.
HEAT_PUMP_VOLTAGE_INDEX = 156


def decode_heat_pump_energy(body: bytes) -> HeatPumpEnergy:
    if len(body) <= HEAT_PUMP_VOLTAGE_INDEX or body[0] != 0x04:
        raise FrameError("bad_body", "not a 0xC3 energy report")
    outdoor = body[10] - 256 if body[10] > 127 else body[10]
    return HeatPumpEnergy(int.from_bytes(body[2:6], "big"), int.from_bytes(body[6:10], "big"), outdoor, body[13],
                          body[HEAT_PUMP_VOLTAGE_INDEX])



# 0xCA refrigerator exception body (type 0x01): (byte, mask) -> fault, as decoded by midea-lan/midea-local.
FRIDGE_FAULT_BITS: dict[tuple[int, int], str] = {
    (1, 0x01): "fridge_door_open_overtime", (1, 0x02): "freezer_door_open_overtime",
    (1, 0x04): "bar_door_open_overtime", (1, 0x08): "flex_zone_door_open_overtime", (1, 0x10): "ice_machine_full",
    (2, 0x01): "fridge_sensor_error", (2, 0x02): "fridge_defrost_sensor_error",
    (2, 0x04): "ambient_sensor_error", (2, 0x08): "flex_zone_sensor_error", (2, 0x10): "right_flex_zone_sensor_error",
    (2, 0x20): "freezer_high_temperature", (2, 0x40): "freezer_sensor_error", (2, 0x80): "freezer_defrost_sensor_error",
    (3, 0x01): "ice_maker_motor_error", (3, 0x02): "fridge_defrost_overtime", (3, 0x04): "freezer_defrost_overtime",
    (3, 0x08): "zero_crossing_error",
}


def decode_fridge_faults(body: bytes) -> frozenset[str]:
    """Active faults in a 0xCA exception body; an empty set when the fridge reports none."""
    if len(body) < 4 or body[0] != 0x01:
        raise FrameError("bad_body", "not a 0xCA exception body")
    return frozenset(fault for (index, mask), fault in FRIDGE_FAULT_BITS.items() if body[index] & mask)


# --- encoders, for simulated appliances ------------------------------------------------------------------------

def _temperature_bytes(value: float, offset: int) -> tuple[int, int]:
    """(raw half-degree byte, tenths digit) so that decoding gives `value` to 0.1 degC."""
    value = round(value, 1)
    tenths = round(abs(value - int(value)) * 10) % 10
    if tenths == 0:
        raw = round(value * 2) + offset
    else:  # decoders add the tenths to the whole part of (raw - offset) / 2, keeping the sign of that half-value
        raw = offset + 2 * int(value) - (1 if value < 0 else 0)
    return max(0, min(254, raw)), tenths


def state_body(state: ACState) -> bytes:
    """A 0xC0 state body (with CRC) that `decode_state` reads back as `state` (Celsius)."""
    target_whole = int(state.target_temperature)
    indoor, indoor_tenths = _temperature_bytes(state.indoor_temperature or 0.0, 50)
    outdoor, outdoor_tenths = _temperature_bytes(state.outdoor_temperature or 0.0, 50)
    body = bytearray(22)
    body[0] = MessageId.STATE
    body[1] = 0x01 if state.power_on else 0x00
    body[2] = ((target_whole - 16) & 0x0F) | (0x10 if state.target_temperature % 1 else 0) | (state.mode << 5)
    body[3] = state.fan_speed & 0x7F
    body[11] = indoor if state.indoor_temperature is not None else 0xFF
    body[12] = outdoor if state.outdoor_temperature is not None else 0xFF
    body[13] = 0x20 if state.filter_alert else 0
    body[15] = indoor_tenths | (outdoor_tenths << 4)
    body[16] = state.error_code & 0xFF
    return with_body_crc(bytes(body))


def compressor_group_body(group: CompressorGroup) -> bytes:
    body = bytearray(24)
    body[0:4] = bytes([MessageId.GROUP_DATA, 0x21, 0x01, 0x41])
    body[4], body[5] = group.compressor_frequency & 0xFF, group.target_frequency & 0xFF
    body[7], body[8] = group.compressor_current & 0xFF, group.compressor_voltage & 0xFF
    body[10] = max(0, min(255, int(group.indoor_temperature * 2) + 30))
    body[11] = max(0, min(255, int(group.indoor_coil_temperature * 2) + 30))
    body[12] = max(0, min(255, int(group.outdoor_coil_temperature * 2) + 50))
    body[13] = max(0, min(255, int(group.outdoor_temperature * 2) + 50))
    body[14] = max(0, min(255, group.discharge_temperature))
    return with_body_crc(bytes(body))
