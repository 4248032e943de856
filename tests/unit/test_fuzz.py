"""Property-based fuzzing of the two parsers hostile input reaches first: the MQTT payload decoder (through the
whole ingest, as a message from the broker) and the rule expression parser. No exception escapes either; every
drop has a reason; what is kept is finite and inside the gateway's limits; an expression that compiles evaluates
on any numbers, NaN and infinities included."""

from __future__ import annotations

import json
import math
import os
import warnings
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.clock import FakeClock
from gateway.engine.expr import ExprError, MappingContext, compile_expr
from gateway.engine.functions import FUNCTIONS
from gateway.ingest.drops import DropCounter
from gateway.ingest.registry import DeviceRegistry
from gateway.ingest.router import Ingest
from gateway.protocol.payload import DropReason, PayloadLimits, decode_telemetry
from gateway.store.window import WindowStore
from tests.unit.helpers import PROFILES

NOW = 1_750_000_000.0
LIMITS = PayloadLimits()
# FUZZ_EXAMPLES=20000 for a long run; the test command's 300 each take a few seconds
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# numbers a hostile or broken appliance sends: huge integers, floats at the edges, bools, timestamps near now
numbers = st.one_of(st.integers(), st.integers(min_value=10**300, max_value=10**400), st.floats(),
                    st.floats(min_value=NOW - 2 * 86400, max_value=NOW + 86400), st.booleans())
json_values = st.recursive(
    st.one_of(st.none(), numbers, st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20)
metric_names = st.sampled_from(["vibration", "phase", "water_level", "door_locked", "drum_speed", "nope", ""])
samples = st.fixed_dictionaries(
    {"ts": numbers, "metrics": st.dictionaries(metric_names, st.one_of(numbers, json_values), max_size=5)},
    optional={"type": st.sampled_from(["washer", "refrigerator", "toaster", 5]), "extra": json_values})


def dumps(document: Any) -> bytes:
    """JSON as an appliance might write it: orjson where it can, Python's own text for the integers and
    non-finite floats orjson refuses (NaN and 1e999 are what broken firmware sends)."""
    try:
        return orjson.dumps(document)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(document).encode()


payloads = st.one_of(st.binary(max_size=200), samples.map(dumps), st.lists(samples, max_size=4).map(dumps),
                     json_values.map(dumps))
topics = st.one_of(st.sampled_from(["appliances/w1/telemetry", "appliances/w1/meta", "appliances/w1/event",
                                    "appliances/w1/status", "appliances/f1/telemetry"]),
                   st.text(max_size=40), st.builds(lambda d, k: f"appliances/{d}/{k}", st.text(max_size=10),
                                                   st.sampled_from(["telemetry", "meta", "event", "status", "x"])))


def fresh_ingest() -> Ingest:
    store = WindowStore({n: p.stored_names for n, p in PROFILES.items()}, slots=8)
    return Ingest(PROFILES, DeviceRegistry(set(PROFILES)), store, DropCounter(), LIMITS, FakeClock(NOW))


@FUZZ
@given(payloads)
def test_the_telemetry_decoder_keeps_only_finite_values_inside_the_limits(payload: bytes) -> None:
    decoded = decode_telemetry(payload, NOW, LIMITS)
    for sample in decoded.samples:
        assert NOW - LIMITS.max_past_seconds <= sample.ts <= NOW + LIMITS.max_future_seconds
        assert sample.metrics and all(math.isfinite(v) for v in sample.metrics.values())
    assert all(isinstance(r.reason, DropReason) and r.detail for r in decoded.rejections)
    assert decoded.samples or decoded.rejections, "a message that yields nothing says why"


@FUZZ
@given(st.lists(st.tuples(topics, payloads), min_size=1, max_size=8))
def test_no_message_from_the_broker_raises_and_every_drop_has_a_reason(messages: list[tuple[str, bytes]]) -> None:
    ingest = fresh_ingest()
    ingest.handle("appliances/w1/meta", b'{"type": "washer", "brand": "Haier"}')
    for topic, payload in messages:
        ingest.handle(topic, payload)  # an exception here is the failure
    assert ingest.messages == len(messages) + 1
    assert all(isinstance(reason, DropReason) for reason in ingest.drops.by_reason)
    for window in ingest.store.windows.values():
        rows = len(window.device_ids)
        latest = window.latest[:rows]
        assert not np.isinf(latest).any(), "a stored value is finite (NaN only where never reported)"
        stored = window.latest_ts[:rows]
        assert np.all(np.isnan(stored) | (stored <= NOW + LIMITS.max_future_seconds))


# --- the expression parser --------------------------------------------------------------------------------

UNITS = {"a": "degC", "b": "kPa", "c": ""}
TOKENS = ["a", "b", "c", "0", "1", "2.5", "-1", "1e308", "x", "(", ")", ",", "+", "-", "*", "/", ">", "<", ">=",
          "<=", "==", "!=", "and", "or", "not", "5m", "1h", "0s", "if", "true", "degF", "%", "avg", "max", "min",
          "delta", "rate", "changes", "fraction", "count", "last", *sorted(FUNCTIONS)]
token_soup = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=14).map(" ".join)


def _atom(depth: int) -> st.SearchStrategy[str]:
    leaf = st.sampled_from(["a", "b", "c", "0", "1", "2.5", "-3", "100"])
    if depth == 0:
        return leaf
    inner = _atom(depth - 1)
    return st.one_of(
        leaf,
        st.builds(lambda x, op, y: f"({x} {op} {y})", inner, st.sampled_from(["+", "-", "*", "/"]), inner),
        st.builds(lambda f, x: f"{f}({x})", st.sampled_from(["abs", "tsat_r32"]), inner),
        st.builds(lambda x, y: f"min({x}, {y})", inner, inner),
        st.builds(lambda f, x, w: f"{f}({x}, {w})", st.sampled_from(["avg", "max", "delta", "rate"]), inner,
                  st.sampled_from(["5m", "1h", "0s", "10"])),
    )


def _condition(depth: int) -> st.SearchStrategy[str]:
    comparison = st.builds(lambda x, op, y: f"{x} {op} {y}", _atom(2), st.sampled_from([">", "<", ">=", "==", "!="]),
                           _atom(2))
    if depth == 0:
        return comparison
    inner = _condition(depth - 1)
    return st.one_of(comparison, st.builds(lambda x, op, y: f"({x}) {op} ({y})", inner, st.sampled_from(["and", "or"]),
                                           inner), inner.map(lambda x: f"not ({x})"))


@FUZZ
@given(st.one_of(st.text(max_size=60), token_soup, _condition(3)))
def test_the_expression_parser_raises_only_its_own_error_and_what_compiles_evaluates(source: str) -> None:
    try:
        compiled = compile_expr(source, UNITS)
    except ExprError as exc:
        assert exc.column >= 1 and exc.message
        return
    if compiled.windows:
        return  # a window function needs a ring buffer: the evaluator tests cover those
    columns = {name: np.array([0.0, -1.0, 1e308, -1e308, math.nan, math.inf, 25.0, 3000.0]) for name in UNITS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow to inf is an answer, not an error
        held = np.broadcast_to(compiled.holds(MappingContext(columns)), (8,))
    assert held.dtype == np.bool_
