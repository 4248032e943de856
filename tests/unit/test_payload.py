import orjson
import pytest

from gateway.protocol.payload import DropReason, PayloadLimits, decode_json_object, decode_telemetry

NOW = 1_750_000_000.0
LIMITS = PayloadLimits(max_bytes=65_536, max_past_seconds=86_400, max_future_seconds=300)


def reasons(payload: bytes) -> list[DropReason]:
    return [r.reason for r in decode_telemetry(payload, NOW, LIMITS).rejections]


def test_one_sample() -> None:
    decoded = decode_telemetry(b'{"ts": 1750000000.5, "type": "washer", "metrics": {"phase": 2, "vibration": 0.3}}',
                               NOW, LIMITS)
    assert decoded.rejections == []
    [sample] = decoded.samples
    assert sample.ts == 1750000000.5
    assert sample.appliance_type == "washer"
    assert sample.metrics == {"phase": 2.0, "vibration": 0.3}


def test_list_of_samples_keeps_order() -> None:
    payload = orjson.dumps([{"ts": NOW - 2, "metrics": {"a": 1}}, {"ts": NOW - 1, "metrics": {"a": 2}}])
    decoded = decode_telemetry(payload, NOW, LIMITS)
    assert [s.metrics["a"] for s in decoded.samples] == [1.0, 2.0]


def test_booleans_become_numbers() -> None:
    [sample] = decode_telemetry(b'{"ts": 1750000000, "metrics": {"door_open": true}}', NOW, LIMITS).samples
    assert sample.metrics == {"door_open": 1.0}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", DropReason.MALFORMED_JSON),
        (b"", DropReason.MALFORMED_JSON),
        (b'"a string"', DropReason.BAD_SCHEMA),
        (b'{"metrics": {"a": 1}}', DropReason.BAD_SCHEMA),
        (b'{"ts": "yesterday", "metrics": {"a": 1}}', DropReason.BAD_SCHEMA),
        (b'{"ts": 1750000000, "metrics": [1, 2]}', DropReason.BAD_SCHEMA),
        (b'{"ts": 1750000000, "type": 7, "metrics": {"a": 1}}', DropReason.BAD_SCHEMA),
        (b'{"ts": 1000, "metrics": {"a": 1}}', DropReason.TS_TOO_OLD),
        (b'{"ts": 1850000000, "metrics": {"a": 1}}', DropReason.TS_RESTAMPED),
        (b'{"ts": 1750000000, "metrics": {"a": "hot"}}', DropReason.WRONG_TYPE),
        (b'{"ts": 1750000000, "metrics": {"a": null}}', DropReason.WRONG_TYPE),
        (b'{"ts": 1750000000, "metrics": {"a": NaN}}', DropReason.NON_FINITE),
        (b'{"ts": 1750000000, "metrics": {"a": Infinity}}', DropReason.NON_FINITE),
        (b'{"ts": 1750000000, "metrics": {"a": 1e400}}', DropReason.NON_FINITE),
        (b'{"ts": NaN, "metrics": {"a": 1}}', DropReason.NON_FINITE),
        (b'{"ts": true, "metrics": {"a": 1}}', DropReason.BAD_SCHEMA),
        (b'{"ts": 1' + b"0" * 400 + b', "metrics": {"a": 1}}', DropReason.NON_FINITE),
    ],
)
def test_rejections_carry_a_reason(payload: bytes, reason: DropReason) -> None:
    assert reasons(payload) == [reason]


def test_a_timestamp_far_ahead_keeps_its_values_at_the_gateways_time() -> None:
    """An appliance clock 400 s fast (or set to 2100) costs nothing: its faults must still be found."""
    for ts in (NOW + 400, 4_102_444_800.0):
        decoded = decode_telemetry(b'{"ts": %.1f, "metrics": {"a": 1}}' % ts, NOW, LIMITS)
        assert [(s.ts, s.metrics) for s in decoded.samples] == [(NOW, {"a": 1.0})]
        assert [r.reason for r in decoded.rejections] == [DropReason.TS_RESTAMPED]


def test_oversized_payload_is_rejected_before_parsing() -> None:
    payload = b'{"ts": 1750000000, "metrics": {"a": 1}, "pad": "' + b"x" * 70_000 + b'"}'
    assert reasons(payload) == [DropReason.OVERSIZED]


def test_one_bad_value_keeps_the_good_ones() -> None:
    decoded = decode_telemetry(b'{"ts": 1750000000, "metrics": {"a": NaN, "b": 2, "c": "x"}}', NOW, LIMITS)
    assert [s.metrics for s in decoded.samples] == [{"b": 2.0}]
    assert sorted(r.reason for r in decoded.rejections) == [DropReason.NON_FINITE, DropReason.WRONG_TYPE]


def test_decode_json_object() -> None:
    assert decode_json_object(b'{"type": "washer"}', LIMITS) == {"type": "washer"}
    rejected = decode_json_object(b"[1]", LIMITS)
    assert not isinstance(rejected, dict) and rejected.reason is DropReason.BAD_SCHEMA


def test_an_integer_beyond_any_float_costs_that_value_and_keeps_the_others() -> None:
    """10**400 raised OverflowError out of the decoder: the whole message was lost, with a traceback."""
    decoded = decode_telemetry(b'{"ts": 1750000000, "metrics": {"a": 1' + b"0" * 400 + b', "b": 2}}', NOW, LIMITS)
    assert decoded.samples[0].metrics == {"b": 2.0}
    [rejection] = decoded.rejections
    assert rejection.reason is DropReason.NON_FINITE and len(rejection.detail) < 60
