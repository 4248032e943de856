"""Midea frames captured by users of mill1000/midea-msmart (MIT) and midea-lan/midea-local (MIT), with the values
their authors asserted, against our decoder. Sources: ../shared/vectors/midea_msmart_frames.json,
midea_local_vectors.json; each entry names its upstream test."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.protocol import midea
from gateway.protocol.midea import MideaDecoder, MideaFrame
from tests.vectors.conftest import load_vectors

MSMART = "midea_msmart_frames.json"


def full_frames() -> list[dict[str, Any]]:
    return [f for f in load_vectors(MSMART)["frames"] if f["kind"] == "full_frame"]


def must_reject(entry: dict[str, Any]) -> bool:
    """Upstream expected a rejection, or upstream's own decoder raised on the frame."""
    return bool(entry.get("upstream_expects_rejection") or entry.get("reference_decode_error"))


def decode_all(raw: bytes, appliance: int, chunk: int | None) -> tuple[list[MideaFrame], MideaDecoder]:
    decoder = MideaDecoder(appliance=appliance)
    step = chunk or len(raw)
    frames = [f for i in range(0, len(raw), step) for f in decoder.feed(raw[i:i + step])]
    return frames, decoder


@pytest.mark.parametrize("chunking", ["whole", "halved", "byte_by_byte"])
def test_every_captured_frame_is_accepted_or_rejected_as_upstream_says(chunking: str) -> None:
    entries = full_frames()
    assert len(entries) == 76
    for entry in entries:
        raw = bytes.fromhex(entry["frame_hex"])
        chunk = {"whole": None, "halved": max(1, len(raw) // 2), "byte_by_byte": 1}[chunking]
        frames, decoder = decode_all(raw, int(entry["device_type_code"], 16), chunk)
        if must_reject(entry):
            assert frames == [], entry["id"]
            assert decoder.counters["resyncs"] >= 1, entry["id"]
        else:
            assert len(frames) == 1, (entry["id"], dict(decoder.counters))
            assert frames[0].to_bytes() == raw, entry["id"]  # and back: encode(decode(x)) == x


def test_rejections_carry_the_reason_upstream_gives() -> None:
    reasons = {}
    for entry in full_frames():
        if must_reject(entry):
            _, decoder = decode_all(bytes.fromhex(entry["frame_hex"]), int(entry["device_type_code"], 16), None)
            reasons[entry["id"]] = sorted(k for k in decoder.counters if k not in ("resyncs", "garbage_bytes"))
    assert reasons == {
        "midea-ac-046": ["bad_checksum"], "midea-ac-048": ["bad_crc"], "midea-ac-050": ["wrong_appliance"],
        "midea-ac-102": ["wrong_appliance"], "midea-cc-150": ["bad_checksum"], "midea-cc-152": ["wrong_appliance"],
        "midea-cc-164": ["wrong_appliance"],
    }


def test_frames_hidden_in_garbage_and_back_to_back_all_come_out() -> None:
    good = [bytes.fromhex(e["frame_hex"]) for e in full_frames()
            if not must_reject(e) and e["device_type_code"] == "0xAC"]
    bad = [bytes.fromhex(e["frame_hex"]) for e in full_frames() if must_reject(e) and e["device_type_code"] == "0xAC"]
    stream = b"\x00\xaa\x05garbage"
    for i, frame in enumerate(good):
        stream += frame + (bad[i % len(bad)] if i % 3 == 0 else b"") + (frame if i % 5 == 0 else b"") + b"\x13\x37"
    decoder = MideaDecoder()
    out = [f.to_bytes() for i in range(0, len(stream), 7) for f in decoder.feed(stream[i:i + 7])]
    expected = [f for i, f in enumerate(good) for f in ([f, f] if i % 5 == 0 else [f])]
    assert out == expected
    assert decoder.counters["frames"] == len(expected)


# Upstream fields the gateway decodes, per message, mapped to our names. Fields not listed are settings or
# capabilities rather than diagnostic telemetry, and the gateway does not decode them (listed below).
STATE_FIELDS = {"indoor_temperature": "indoor_temperature", "outdoor_temperature": "outdoor_temperature",
                "target_temperature": "target_temperature", "device.indoor_temperature": "indoor_temperature",
                "device.outdoor_temperature": "outdoor_temperature",
                "device.target_temperature": "target_temperature", "device.operational_mode": "mode",
                "device.fan_speed": "fan_speed"}
ENERGY_FIELDS = {"total_energy": "total_energy", "current_energy": "current_energy",
                 "real_time_power": "real_time_power"}
NOT_DECODED = {"device.eco", "device.turbo", "device.sleep", "device.swing_mode", "device.freeze_protection",
               "total_energy_binary", "current_energy_binary", "real_time_power_binary"}


# msmart asserts some fields as enum members; these are their values in the protocol
UPSTREAM_ENUMS = {"AC.FanSpeed.AUTO": 102}


def comparable(value: Any) -> Any:
    """Our enums compare by name with upstream's ("AC.OperationalMode.COOL"); numbers compare approximately."""
    if isinstance(value, str):
        return UPSTREAM_ENUMS.get(value, value.rsplit(".", 1)[-1])
    if isinstance(value, midea.Mode):
        return value.name
    return pytest.approx(value) if isinstance(value, float) else value


def test_decoded_values_equal_what_upstream_asserted() -> None:
    checked = 0
    for entry in full_frames():
        asserted = entry.get("upstream_asserted") or {}
        if must_reject(entry) or entry["device_type_code"] != "0xAC" or not asserted:
            continue
        body = MideaFrame.from_bytes(bytes.fromhex(entry["frame_hex"])).body
        if body[0] == midea.MessageId.STATE:
            decoded, fields = midea.decode_state(body), STATE_FIELDS
        elif body[0] == midea.MessageId.GROUP_DATA and midea.group_of(body) == 4:
            decoded, fields = midea.decode_energy_group(body), ENERGY_FIELDS
        elif body[0] == midea.MessageId.GROUP_DATA and midea.group_of(body) == 5:
            decoded, fields = midea.decode_fan_group(body), {"humidity": "humidity"}
        else:
            continue
        for key, value in asserted.items():
            if key in NOT_DECODED:
                continue
            assert key in fields, (entry["id"], key)
            assert comparable(getattr(decoded, fields[key])) == comparable(value), (entry["id"], key)
            checked += 1
    assert checked >= 40


def test_heat_pump_energy_report() -> None:
    [entry] = [e for e in full_frames() if e["device_type_code"] == "0xC3" and e.get("upstream_asserted")]
    body = MideaFrame.from_bytes(bytes.fromhex(entry["frame_hex"]), appliance=midea.HEAT_PUMP).body
    report = midea.decode_heat_pump_energy(body)
    assert {k: getattr(report, k) for k in entry["upstream_asserted"]} == entry["upstream_asserted"]


def test_compressor_group_from_a_real_capture() -> None:
    """midea-local test_captured_c1_0x41_response: compressor 43 Hz, 3 A, 214 V."""
    entry = next(e for e in load_vectors("midea_local_vectors.json")["ac_frames"] if e["id"] == "ml-ac-001")
    [frame] = MideaDecoder().feed(bytes.fromhex(entry["frame_hex"]))
    group = midea.decode_compressor_group(frame.body)
    asserted = entry["upstream_asserted"]
    assert (group.compressor_frequency, group.target_frequency, group.compressor_current,
            group.compressor_voltage) == (asserted["compressor_frequency"], asserted["target_compressor_frequency"],
                                          asserted["compressor_current"], asserted["compressor_voltage"])


def test_state_query_matches_the_captured_query() -> None:
    """msmart TestCommand.test_frame: the state query body as captured (message counter 0x11)."""
    [entry] = [e for e in load_vectors(MSMART)["frames"] if e["id"] == "midea-ac-001"]
    assert midea.state_query(message_counter=0x11).body == bytes.fromhex(entry["frame_hex"])


def test_refrigerator_fault_bits() -> None:
    """midea-local TestCAExceptionMessageBody: 01 1f ff 0f raises every listed fault, 01 00 00 00 none."""
    faults = load_vectors("midea_local_vectors.json")["refrigerator_faults"]
    [everything, nothing] = faults["vectors"]
    active = midea.decode_fridge_faults(bytes.fromhex(everything["body_hex"]))
    assert {"fridge_door_open_overtime", "freezer_door_open_overtime", "ice_machine_full", "freezer_high_temperature",
            "fridge_defrost_overtime", "freezer_defrost_overtime", "zero_crossing_error"} <= active
    assert {f for f in midea.FRIDGE_FAULT_BITS.values() if f.endswith("sensor_error")} <= active
    assert midea.decode_fridge_faults(bytes.fromhex(nothing["body_hex"])) == frozenset()


def test_hand_written_vector() -> None:
    """From the frame layout, computed by hand: an AC query frame whose body is the single byte 0x41.
    Checksum: 0B + AC + 03 + 41 = 0xFB; its two's complement is 0x05."""
    raw = bytes.fromhex("aa 0b ac 00 00 00 00 00 00 03 41 05")
    [frame] = MideaDecoder().feed(b"\x00\x01" + raw)
    assert (frame.appliance, frame.frame_type, frame.body) == (midea.AIR_CONDITIONER, midea.FrameType.QUERY, b"\x41")
    assert frame.to_bytes() == raw
    assert MideaDecoder().feed(raw[:-1] + b"\x06") == []  # one off in the checksum
