import logging

import numpy as np
import orjson
import pytest

from gateway.clock import FakeClock
from gateway.ingest.drops import DropCounter
from gateway.ingest.registry import DeviceRegistry
from gateway.ingest.router import Ingest
from gateway.model import DeviceEvent
from gateway.protocol.payload import DropReason, PayloadLimits
from gateway.store.window import WindowStore
from tests.unit.helpers import PROFILES

NOW = 1_750_000_000.0


def make(flush: list[int] | None = None) -> tuple[Ingest, list[DeviceEvent]]:
    events: list[DeviceEvent] = []
    store = WindowStore({n: p.stored_names for n, p in PROFILES.items()}, slots=8)

    def flush_rules() -> None:
        if flush is not None:
            flush.append(1)
        for window in store.windows.values():
            window.take_dirty()

    ingest = Ingest(PROFILES, DeviceRegistry(set(PROFILES)), store, DropCounter(), PayloadLimits(),
                    FakeClock(NOW), flush_rules=flush_rules, on_event=events.append)
    return ingest, events


def telemetry(metrics: dict[str, object], ts: float = NOW, **extra: object) -> bytes:
    return orjson.dumps({"ts": ts, "metrics": metrics, **extra})


def test_meta_then_telemetry_lands_in_the_type_window() -> None:
    ingest, _ = make()
    ingest.handle("appliances/w1/meta", b'{"type": "washer", "brand": "Haier", "model": "EG100"}')
    ingest.handle("appliances/w1/status", b"online")
    ingest.handle("appliances/w1/telemetry", telemetry({"vibration": 0.4, "phase": 2}))
    window = ingest.store.windows["washer"]
    row = window.rows["w1"]
    assert window.latest[row, window.metric_index["vibration"]] == 0.4
    device = ingest.registry.get("w1")
    assert device is not None and device.online and device.last_seen == NOW
    assert device.meta is not None and device.meta.brand == "Haier"
    assert ingest.drops.total == 0


def test_type_in_payload_is_enough_without_meta() -> None:
    ingest, _ = make()
    ingest.handle("appliances/f1/telemetry", telemetry({"door_open": 1}, type="refrigerator"))
    assert "f1" in ingest.store.windows["refrigerator"].rows


def test_every_kind_of_bad_input_is_counted_and_ingest_continues() -> None:
    ingest, _ = make()
    ingest.handle("appliances/w1/meta", b'{"type": "washer"}')
    bad = [
        ("appliances/w1/telemetry", b"{oops"),
        ("appliances/w1/telemetry", telemetry({"vibration": "high"})),
        ("appliances/w1/telemetry", b'{"ts": 1750000000, "metrics": {"vibration": NaN}}'),
        ("appliances/w1/telemetry", telemetry({"vibration": 0.1}, ts=NOW - 10 * 86400)),
        ("appliances/w1/telemetry", telemetry({"vibration": 0.1}, ts=NOW + 3600)),
        ("appliances/w1/telemetry", telemetry({"colour": 3})),
        ("appliances/w1/telemetry", telemetry({"vibration": 99.0})),
        ("appliances/w1/telemetry", b"x" * 70_000),
        ("appliances/ghost/telemetry", telemetry({"vibration": 0.1})),
        ("appliances/w1/telemetry", telemetry({"vibration": 0.1}, type="refrigerator")),
        ("elsewhere/w1/telemetry", telemetry({"vibration": 0.1})),
        ("appliances/w1/status", b"maybe"),
        ("appliances/w2/meta", b'{"type": "toaster"}'),
        ("appliances/w1/event", b'{"ts": 1}'),
    ]
    for topic, payload in bad:
        ingest.handle(topic, payload)
    assert ingest.drops.as_dict() == {
        "bad_schema": 3, "malformed_json": 1, "non_finite": 1, "out_of_range": 1, "oversized": 1,
        "timestamp_in_future_restamped": 1, "timestamp_too_old": 1, "unknown_appliance_type": 1,
        "unknown_metric": 1, "unknown_topic": 1, "wrong_type": 1,
    }
    assert ingest.waiting.count == 1, "the ghost's sample waits for a meta ..."
    ingest.expire_waiting(NOW + 61)
    assert ingest.drops.as_dict()["unknown_device"] == 1, "... for a minute, then it is dropped and counted"
    window = ingest.store.windows["washer"]
    column = window.metric_index["dq_out_of_range"]
    assert window.latest[window.rows["w1"], column] == 1.0  # the absurd value is gone, but its arrival is recorded
    # the one sample kept: an hour ahead, at the gateway's time (the absurd 99.0 never became a value)
    assert window.latest[window.rows["w1"], window.metric_index["vibration"]] == 0.1
    ingest.handle("appliances/w1/telemetry", telemetry({"vibration": 0.2}))
    assert ingest.samples == 3  # the restamped sample, the out-of-range marker and the good sample


def test_a_second_sample_of_the_same_device_flushes_rules_first() -> None:
    flushes: list[int] = []
    ingest, _ = make(flushes)
    ingest.handle("appliances/w1/meta", b'{"type": "washer"}')
    samples = [{"ts": NOW - 2 + i, "metrics": {"vibration": float(i)}} for i in range(3)]
    ingest.handle("appliances/w1/telemetry", orjson.dumps(samples))
    assert ingest.samples == 3
    assert len(flushes) == 2  # every sample is evaluated, none is overwritten unseen


def test_events_are_decoded() -> None:
    ingest, events = make()
    ingest.handle("appliances/w1/event", b'{"ts": 1750000000, "code": "E21", "text": "drain"}')
    assert events == [DeviceEvent("w1", 1750000000.0, "E21", {"text": "drain"})]


@pytest.mark.parametrize(("ts", "reason"), [
    (b"NaN", DropReason.NON_FINITE), (b"true", DropReason.BAD_SCHEMA), (b"1" + b"0" * 400, DropReason.NON_FINITE),
    (b"1000", DropReason.TS_TOO_OLD), (b'"now"', DropReason.BAD_SCHEMA)])
def test_an_event_with_a_bad_timestamp_is_dropped_with_its_reason(ts: bytes, reason: DropReason) -> None:
    """`"ts": true` gave an onset in 1970 and 10**400 an OverflowError: the event timestamp was never checked."""
    ingest, events = make()
    ingest.handle("appliances/w1/event", b'{"ts": ' + ts + b', "code": "E21"}')
    assert events == [] and ingest.drops.by_reason[reason] == 1


def test_an_event_from_a_clock_far_ahead_is_kept_at_the_arrival_time() -> None:
    """One event stamped in 2100 must not move the appliance's (and its type's) time into the future."""
    ingest, events = make()
    ingest.handle("appliances/w1/event", b'{"ts": 4102444800, "code": "E21"}')
    ingest.handle("appliances/w1/event", b'{"code": "' + b"E" * 65 + b'"}')
    assert [e.ts for e in events] == [NOW]
    assert ingest.drops.by_reason[DropReason.TS_RESTAMPED] == 1 and ingest.drops.by_reason[DropReason.BAD_SCHEMA] == 1


def test_drops_are_logged_once_per_device_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    ingest, _ = make()
    with caplog.at_level(logging.WARNING, logger="gateway.ingest"):
        for _ in range(5):
            ingest.handle("appliances/w1/telemetry", b"{oops")
        ingest.handle("appliances/w2/telemetry", b"{oops")
    assert ingest.drops.by_reason[DropReason.MALFORMED_JSON] == 6
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "dropped input from w1", "dropped input from w2"]


def test_status_of_more_appliances_than_the_window_holds_grows_it() -> None:
    """Found by fleet mode: a status for a new appliance used to index the array from before the growth."""
    ingest, _ = make()
    window = ingest.store.windows["washer"]
    count = window.capacity + 3
    for n in range(count):
        ingest.handle(f"appliances/w{n}/meta", orjson.dumps({"type": "washer"}))
        ingest.handle(f"appliances/w{n}/status", b"online")
    assert window.capacity >= count
    assert np.all(window.online[:count] == 1.0)


def test_an_appliance_may_name_its_metrics_its_own_way_in_its_meta() -> None:
    ingest, _ = make()
    ingest.handle("appliances/g1/meta", orjson.dumps({"type": "washer", "brand": "Gree",
                                                      "metric_names": {"WL": "water_level"}}))
    ingest.handle("appliances/g1/telemetry", telemetry({"WL": 42.0}))
    window = ingest.store.windows["washer"]
    assert window.latest[window.rows["g1"], window.metric_index["water_level"]] == 42.0
    assert ingest.drops.total == 0
    ingest.handle("appliances/g2/meta", orjson.dumps({"type": "washer", "metric_names": ["WL"]}))
    assert ingest.drops.as_dict() == {"bad_schema": 1}


def limited(**limits: int) -> Ingest:
    store = WindowStore({n: p.stored_names for n, p in PROFILES.items()}, slots=8)
    return Ingest(PROFILES, DeviceRegistry(set(PROFILES)), store, DropCounter(), PayloadLimits(**limits),
                  FakeClock(NOW), flush_rules=lambda: [w.take_dirty() for w in store.windows.values()])


def test_a_flood_of_new_device_ids_stops_at_the_limits_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """50,000 new water heaters took the gateway to 2.2 GB and then it exited: appliances in all and per type
    are limited; the known ones keep working, and the flood is one log line per limit."""
    ingest = limited(max_devices=5, max_devices_per_type=3)
    with caplog.at_level(logging.WARNING):
        for n in range(40):
            ingest.handle(f"appliances/wh{n}/telemetry", telemetry({"tank_temperature": 50.0}, type="water_heater"))
        for n in range(40):
            ingest.handle(f"appliances/w{n}/meta", orjson.dumps({"type": "washer"}))
    assert len(ingest.store.windows["water_heater"].device_ids) == 3
    assert len(ingest.registry.devices) == 5
    assert ingest.drops.by_reason[DropReason.TYPE_DEVICE_LIMIT] == 37
    assert ingest.drops.by_reason[DropReason.DEVICE_LIMIT] == 38
    assert len([r for r in caplog.records if "device_limit" in r.getMessage()]) == 2
    ingest.handle("appliances/wh0/telemetry", telemetry({"tank_temperature": 51.0}, ts=NOW + 1, type="water_heater"))
    assert ingest.samples == 4  # a known appliance is still heard


def test_a_meta_may_not_change_the_appliance_type_nor_carry_long_strings() -> None:
    """A meta that turned a washer into a fridge kept showing the washer's latest values on its page."""
    ingest = limited(max_meta_length=16)
    ingest.handle("appliances/w1/meta", orjson.dumps({"type": "washer", "brand": "LG"}))
    ingest.handle("appliances/w1/meta", orjson.dumps({"type": "refrigerator", "brand": "LG"}))
    ingest.handle("appliances/w2/meta", orjson.dumps({"type": "washer", "brand": "x" * 17}))
    ingest.handle("appliances/w3/meta", orjson.dumps({"type": "washer", "metric_names": {"t" * 17: "drum"}}))
    assert ingest.registry.appliance_type("w1") == "washer"
    assert ingest.registry.get("w2") is None and ingest.registry.get("w3") is None
    assert ingest.drops.by_reason[DropReason.BAD_SCHEMA] == 3


def test_a_meta_sets_the_appliances_own_parameters_and_bad_ones_are_dropped_and_counted() -> None:
    from dataclasses import replace

    from gateway.engine.profiles import ParameterSpec
    profiles = {**PROFILES, "washer": replace(PROFILES["washer"], parameters=(
        ParameterSpec("max_imbalance", "g", 2.0, 0.5, 5.0, "vibration that means an unbalanced load"),))}
    store = WindowStore({n: p.stored_names for n, p in profiles.items()}, slots=8,
                        parameters={"washer": {"max_imbalance": 2.0}})
    ingest = Ingest(profiles, DeviceRegistry(set(profiles)), store, DropCounter(), PayloadLimits(), FakeClock(NOW))
    window = store.windows["washer"]
    ingest.handle("appliances/w1/meta", orjson.dumps({"type": "washer", "parameters": {"max_imbalance": 3.5}}))
    ingest.handle("appliances/w2/meta", orjson.dumps({"type": "washer"}))
    assert window.parameters[window.rows["w1"], 0] == 3.5
    assert "w2" not in window.rows  # a meta alone allocates no window row
    ingest.handle("appliances/w2/telemetry", telemetry({"vibration": 0.4}))
    assert window.parameters[window.rows["w2"], 0] == 2.0  # the profile's default
    for bad in ({"max_imbalance": 50}, {"max_imbalance": "3"}, {"max_imbalance": True}, {"colour": 1}, [1]):
        ingest.handle("appliances/w1/meta", orjson.dumps({"type": "washer", "parameters": bad}))
    assert window.parameters[window.rows["w1"], 0] == 3.5  # kept
    assert ingest.drops.by_reason[DropReason.BAD_SCHEMA] == 5
    assert ingest.registry.appliance_type("w1") == "washer"  # the identity still counts
    ingest.handle("appliances/w1/meta", orjson.dumps({"type": "washer", "brand": "LG"}))
    assert window.parameters[window.rows["w1"], 0] == 2.0  # a meta without parameters: the defaults again


def _walk(ingest: Ingest, clock: FakeClock, start: float, device_start: float, seconds: int,
          vibration: float = 0.1) -> None:
    """One washer sample a second for `seconds`: the gateway clock from `start`, the appliance's from
    `device_start`."""
    for i in range(seconds):
        clock.set(start + i)
        ingest.handle("appliances/w1/telemetry", telemetry({"vibration": vibration + i * 0.001},
                                                           ts=device_start + i, type="washer"))


def test_an_appliance_whose_clock_goes_back_keeps_advancing_on_its_own_timeline() -> None:
    ingest, _ = make()
    clock = ingest.clock
    assert isinstance(clock, FakeClock)
    window = ingest.store.windows["washer"]
    _walk(ingest, clock, NOW, NOW, 20)
    _walk(ingest, clock, NOW + 20, NOW + 20 - 3600, 20, vibration=0.5)  # its clock reset an hour back
    row = window.rows["w1"]
    assert window.latest[row, window.metric_index["vibration"]] == pytest.approx(0.519)  # the newest value counts
    assert window.latest_ts[row] == pytest.approx(NOW + 39)  # at its own pace, from the arrival of the first
    assert ingest.drops.by_reason[DropReason.CLOCK_WENT_BACK] == 1  # counted once, when the shift began
    assert ingest.registry.get("w1").last_seen == pytest.approx(NOW + 39)  # type: ignore[union-attr]
    _walk(ingest, clock, NOW + 40, NOW + 40, 5, vibration=0.9)  # its clock set right again: the shift ends
    assert window.clock_shift[row] == 0.0
    assert window.latest_ts[row] == pytest.approx(NOW + 44)
    assert ingest.drops.by_reason[DropReason.CLOCK_WENT_BACK] == 1


def test_a_sample_a_few_seconds_late_is_stored_as_late_and_moves_nothing() -> None:
    ingest, _ = make()
    clock = ingest.clock
    assert isinstance(clock, FakeClock)
    _walk(ingest, clock, NOW, NOW, 10)
    ingest.handle("appliances/w1/telemetry", telemetry({"vibration": 0.7}, ts=NOW + 4, type="washer"))
    window = ingest.store.windows["washer"]
    row = window.rows["w1"]
    assert window.latest_ts[row] == NOW + 9 and window.clock_shift[row] == 0.0
    assert window.latest[row, window.metric_index["vibration"]] == pytest.approx(0.109)
    assert DropReason.CLOCK_WENT_BACK not in ingest.drops.by_reason


def test_after_the_gateway_clock_steps_back_an_appliance_still_advances() -> None:
    """Its correct timestamps are then ahead of the gateway clock, kept at arrival time, behind its newest."""
    ingest, _ = make()
    clock = ingest.clock
    assert isinstance(clock, FakeClock)
    _walk(ingest, clock, NOW, NOW, 10)
    _walk(ingest, clock, NOW + 10 - 3600, NOW + 10, 10, vibration=0.5)  # the gateway's clock went back an hour
    window = ingest.store.windows["washer"]
    row = window.rows["w1"]
    assert window.latest[row, window.metric_index["vibration"]] == pytest.approx(0.509)
    assert NOW + 9 < window.latest_ts[row] <= NOW + 19  # never behind its newest, and at its own pace
    _walk(ingest, clock, NOW + 20, NOW + 20, 5, vibration=0.9)  # both clocks right again
    assert window.clock_shift[row] == 0.0 and window.latest_ts[row] == NOW + 24


def test_old_samples_sent_after_newer_ones_never_put_the_appliance_far_ahead_of_the_gateway_clock() -> None:
    ingest, _ = make()
    clock = ingest.clock
    assert isinstance(clock, FakeClock)
    _walk(ingest, clock, NOW, NOW, 10)
    batch = [{"ts": NOW - 3600 + i, "metrics": {"vibration": 0.2}} for i in range(1000)]  # an hour-old buffer
    ingest.handle("appliances/w1/telemetry", orjson.dumps(batch))
    window = ingest.store.windows["washer"]
    row = window.rows["w1"]
    limit = NOW + 9 + PayloadLimits().max_future_seconds
    assert window.latest_ts[row] <= limit
    _walk(ingest, clock, NOW + 10, NOW + 10, 600, vibration=0.6)  # live again
    assert window.latest_ts[row] <= clock.now() + PayloadLimits().max_future_seconds
    assert window.latest_ts[row] >= clock.now()  # and it never stopped advancing
    assert window.latest[row, window.metric_index["vibration"]] == pytest.approx(0.6 + 599 * 0.001)


def test_what_an_appliance_sends_before_its_meta_is_taken_in_when_the_meta_comes() -> None:
    """A persistent session delivers the queue before the broker re-sends the retained meta (after a restart)."""
    ingest, _ = make()
    ingest.handle("appliances/w9/telemetry", telemetry({"vibration": 0.1}, ts=NOW - 2))
    ingest.handle("appliances/w9/telemetry", telemetry({"vibration": 0.2}, ts=NOW - 1))
    assert ingest.samples == 0 and ingest.waiting.count == 2 and not ingest.drops.as_dict()
    ingest.handle("appliances/w9/meta", b'{"type": "washer", "brand": "Haier"}')
    assert ingest.samples == 2 and ingest.waiting.count == 0 and not ingest.drops.as_dict()
    window = ingest.store.windows["washer"]
    assert window.latest[window.rows["w9"], window.metric_index["vibration"]] == 0.2, "in their order"


def test_waiting_for_a_meta_is_bounded_per_appliance() -> None:
    from gateway.ingest.waiting import WaitingForMeta

    waiting = WaitingForMeta(per_device=2, in_all=3, seconds=10)
    assert waiting.park("a", 1, 0.0) == [] and waiting.park("a", 2, 0.0) == []
    assert waiting.park("a", 3, 0.0) == [("a", 1)], "the oldest of a makes room"
    assert waiting.park("b", 4, 1.0) == [] and waiting.park("c", 5, 2.0) == [("a", 1)], "in all, the oldest goes"
    assert waiting.release("a") == [3] and waiting.count == 2
    assert waiting.expire(11.5) == [("b", 1)] and waiting.count == 1
