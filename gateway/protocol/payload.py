"""Decode appliance JSON payloads into plain samples, rejecting malformed ones with a reason.

Structure only: which metrics exist and their valid ranges are the profile's business (ingest).
A message is one sample `{"ts", "type", "metrics"}` or a list of them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson


class DropReason(StrEnum):
    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    BAD_SCHEMA = "bad_schema"
    WRONG_TYPE = "wrong_type"
    NON_FINITE = "non_finite"
    TS_TOO_OLD = "timestamp_too_old"
    TS_RESTAMPED = "timestamp_in_future_restamped"  # kept, at the gateway's arrival time (not a loss)
    CLOCK_WENT_BACK = "appliance_clock_went_back"  # kept, shifted onto the appliance's timeline (not a loss)
    UNKNOWN_TOPIC = "unknown_topic"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_TYPE = "unknown_appliance_type"
    UNKNOWN_METRIC = "unknown_metric"
    OUT_OF_RANGE = "out_of_range"
    QUEUE_FULL = "queue_full"
    UNKNOWN_VENDOR_CODE = "unknown_vendor_code"
    DEVICE_LIMIT = "device_limit"  # a new appliance beyond ingest.max_devices
    TYPE_DEVICE_LIMIT = "device_limit_per_type"  # ... beyond ingest.max_devices_per_type


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: DropReason
    detail: str


@dataclass(frozen=True, slots=True)
class Sample:
    ts: float
    appliance_type: str | None
    metrics: dict[str, float]
    restamped: bool = False  # its own ts was too far ahead of the gateway clock: this is the arrival time


@dataclass(slots=True)
class Decoded:
    samples: list[Sample] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PayloadLimits:
    max_bytes: int = 65_536
    max_past_seconds: float = 86_400.0
    max_future_seconds: float = 300.0
    max_samples: int = 1_000
    max_devices: int = 20_000  # appliances in all: each costs its window's memory (about 50-150 kB)
    max_devices_per_type: int = 10_000
    max_meta_length: int = 128  # characters of a meta string (brand, model, serial, firmware, a metric name)


def decode_telemetry(payload: bytes, now: float, limits: PayloadLimits) -> Decoded:
    """Decode one telemetry message. Bad samples or values are rejected one by one, the rest kept."""
    out = Decoded()
    if len(payload) > limits.max_bytes:
        out.rejections.append(Rejection(DropReason.OVERSIZED, f"{len(payload)} bytes > {limits.max_bytes}"))
        return out
    try:
        doc, exact = orjson.loads(payload), True
    except orjson.JSONDecodeError:
        doc, exact = _loads(payload), False
    if isinstance(doc, Rejection):
        out.rejections.append(doc)
        return out
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        out.rejections.append(Rejection(DropReason.BAD_SCHEMA, "an empty list of samples"))
        return out
    if len(items) > limits.max_samples:
        out.rejections.append(Rejection(DropReason.OVERSIZED, f"{len(items)} samples > {limits.max_samples}"))
        return out
    for item in items:
        _decode_sample(item, now, limits, out, exact)
    return out


_NUMBERS = (float, int, bool)


def _decode_sample(item: Any, now: float, limits: PayloadLimits, out: Decoded, exact: bool) -> None:
    """`exact`: orjson parsed it, so every float is finite and every integer fits one (orjson refuses 1e400
    and turns a 30-digit integer into a float): numbers need no further check."""
    if not isinstance(item, dict):
        out.rejections.append(Rejection(DropReason.BAD_SCHEMA, f"sample is {type(item).__name__}, not an object"))
        return
    metrics = item.get("metrics")
    appliance_type = item.get("type")
    if type(metrics) is not dict:
        out.rejections.append(Rejection(DropReason.BAD_SCHEMA, "sample needs a numeric 'ts' and a 'metrics' object"))
        return
    if not metrics:
        out.rejections.append(Rejection(DropReason.BAD_SCHEMA, "sample has no metrics"))
        return
    if appliance_type is not None and not isinstance(appliance_type, str):
        out.rejections.append(Rejection(DropReason.BAD_SCHEMA, "'type' must be a string"))
        return
    ts = checked_timestamp(item.get("ts"), now, limits)
    if isinstance(ts, Rejection):
        out.rejections.append(ts)
        return
    if ts.restamped:
        out.rejections.append(ts.restamped)
    if exact and all(type(value) in _NUMBERS for value in metrics.values()):
        out.samples.append(Sample(ts.value, appliance_type, {name: float(value) for name, value in metrics.items()},
                                  ts.restamped is not None))
        return
    values: dict[str, float] = {}
    isfinite = math.isfinite
    for name, value in metrics.items():
        kind = type(value)  # exact types on the hot path: ~3x cheaper than isinstance chains
        if kind is float or kind is int or kind is bool:
            number = _as_float(value)
            if isfinite(number):
                values[name] = number
            else:
                out.rejections.append(Rejection(DropReason.NON_FINITE, f"{name}={short_repr(value)}"))
        else:
            out.rejections.append(Rejection(DropReason.WRONG_TYPE, f"{name}={value!r:.40} is not a number"))
    if values:
        out.samples.append(Sample(ts.value, appliance_type, values, ts.restamped is not None))


@dataclass(frozen=True, slots=True)
class Timestamp:
    value: float
    restamped: Rejection | None = None  # set when the appliance's own time was replaced by the arrival time


def checked_timestamp(raw: Any, now: float, limits: PayloadLimits) -> Timestamp | Rejection:
    """An appliance's `ts` (telemetry or event), checked against the gateway clock.

    A number (not a bool, not NaN, not 10**400); not older than `max_past_seconds`. One more than
    `max_future_seconds` ahead is kept at `now`: an appliance clock set ahead must not cost its telemetry,
    nor one absurd timestamp move the appliance's (or its type's) time far into the future."""
    if not (type(raw) is int or type(raw) is float):
        return Rejection(DropReason.BAD_SCHEMA, f"'ts' must be a number of seconds, got {short_repr(raw)}")
    ts = _as_float(raw)
    if not math.isfinite(ts):
        return Rejection(DropReason.NON_FINITE, f"ts {short_repr(raw)} is not a finite number")
    if ts < now - limits.max_past_seconds:
        return Rejection(DropReason.TS_TOO_OLD, f"ts {ts!r} is more than {limits.max_past_seconds:.0f} s before "
                                                "the gateway clock")
    if ts > now + limits.max_future_seconds:
        return Timestamp(now, Rejection(DropReason.TS_RESTAMPED, f"ts {ts!r} is more than "
                                        f"{limits.max_future_seconds:.0f} s after the gateway clock; kept at "
                                        "the gateway's arrival time"))
    return Timestamp(ts)


def _as_float(value: float) -> float:
    """A JSON number as a float; an integer beyond any float (10**400) is infinite, not an OverflowError."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def short_repr(value: Any) -> str:
    """A value for a drop's detail, cut short: a 400-digit integer must not fill the log."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def decode_json_object(payload: bytes, limits: PayloadLimits) -> dict[str, Any] | Rejection:
    """Decode a small JSON object (meta, event); a Rejection says why it is not one."""
    if len(payload) > limits.max_bytes:
        return Rejection(DropReason.OVERSIZED, f"{len(payload)} bytes > {limits.max_bytes}")
    doc = _loads(payload)
    if isinstance(doc, Rejection):
        return doc
    if not isinstance(doc, dict):
        return Rejection(DropReason.BAD_SCHEMA, f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _loads(payload: bytes) -> Any:
    """orjson on the hot path; the stdlib parser only for the NaN/Infinity literals some firmware writes,
    so that one bad value costs that value and not the whole message."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        error = str(exc)[:120]
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return Rejection(DropReason.MALFORMED_JSON, error)
