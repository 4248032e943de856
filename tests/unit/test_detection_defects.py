"""Detection defects found by scenarios nobody tuned for, each through the gateway's own Pipeline.

- A vendor code (raised, or raised and cleared) is no stale metric: it comes when something happens.
- `"active": 0` or `"false"` clears a code, as JSON `false` does.
- Jump detection is a rate: at the slowest reporting rate a profile tolerates, a normal change between two
  samples far apart is no implausible jump; the same change between two close samples still is.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from firmware_sim.models import AirConditionerModel, FaultSchedule
from gateway.clock import FakeClock
from gateway.config import GatewayConfig
from gateway.engine.evaluator import AlertTransition
from gateway.engine.library import load_library
from gateway.pipeline import Pipeline, PipelineSettings
from gateway.store.db import Database

LIBRARY = load_library(GatewayConfig())
T0 = 1_760_000_000.0


@pytest.fixture
def pipeline() -> Iterator[tuple[Pipeline, FakeClock, list[AlertTransition]]]:
    clock = FakeClock(T0)
    db = Database(":memory:")
    running = Pipeline(LIBRARY, db, clock, PipelineSettings(site="test", group_wait=0.0))
    seen: list[AlertTransition] = []
    running.observers.append(lambda found, held: seen.extend(t for t in found if t not in held))
    yield running, clock, seen
    db.close()


def feed(pipeline: Pipeline, clock: FakeClock, topic: str, doc: dict[str, object], ts: float) -> None:
    clock.set(ts)
    pipeline.feed(topic, orjson.dumps(doc))
    pipeline.evaluate()
    pipeline.tick(ts)


def fired(seen: list[AlertTransition]) -> list[str]:
    return [t.rule.rule_id for t in seen if t.kind.value == "firing"]


@pytest.mark.parametrize("cleared", [None, False, 0, "false"])
def test_a_vendor_code_is_no_stale_metric_and_holds_back_no_later_fault(pipeline, cleared) -> None:  # type: ignore[no-untyped-def]
    running, clock, seen = pipeline
    feed(running, clock, "appliances/ac-1/meta", {"type": "air_conditioner", "brand": "Midea", "model": "M"}, T0)
    model = AirConditionerModel(5, FaultSchedule("condenser_fan_failure", T0 + 1800, 0))
    for i in range(2400):
        ts = T0 + 1 + i
        feed(running, clock, "appliances/ac-1/telemetry", {"ts": ts, "metrics": model.sample(ts)}, ts)
        if i == 60:
            feed(running, clock, "appliances/ac-1/event", {"ts": ts, "code": "E5"}, ts)  # a sensor code
        if i == 90 and cleared is not None:
            feed(running, clock, "appliances/ac-1/event", {"ts": ts, "code": "E5", "active": cleared}, ts)
    assert "air_conditioner_stale_metric" not in fired(seen)
    assert "condenser_airflow_loss" in fired(seen), "the fan failure 30 min later is found"


@pytest.mark.parametrize(("active", "value"), [(0, 0.0), ("false", 0.0), ("off", 0.0), (False, 0.0), (1, 1.0),
                                                ("true", 1.0), (True, 1.0)])
def test_active_clears_a_code_however_it_is_written(pipeline, active, value) -> None:  # type: ignore[no-untyped-def]
    running, clock, _ = pipeline
    feed(running, clock, "appliances/wm-1/meta", {"type": "washer", "brand": "LG", "model": "M"}, T0)
    feed(running, clock, "appliances/wm-1/event", {"ts": T0 + 1, "code": "OE"}, T0 + 1)
    feed(running, clock, "appliances/wm-1/event", {"ts": T0 + 2, "code": "OE", "active": active}, T0 + 2)
    window = running.store.windows["washer"]
    assert window.latest[window.rows["wm-1"], window.metric_index["code_drain_timeout"]] == value


def water_heater(running: Pipeline, clock: FakeClock, temperatures: list[float], spacing: float) -> None:
    for i, temperature in enumerate(temperatures):
        ts = T0 + i * spacing
        feed(running, clock, "appliances/wh-1/telemetry",
             {"ts": ts, "type": "water_heater", "metrics": {"tank_temperature": temperature, "heating_on": 0}}, ts)


def test_a_shower_seen_at_the_slowest_tolerated_rate_is_no_implausible_jump(pipeline) -> None:  # type: ignore[no-untyped-def]
    """The water heater's profile allows 5 K per 10 s interval and tolerates 30 intervals between samples: a
    shower drawing the tank down 8 K between reports 4.5 minutes apart is normal."""
    running, clock, seen = pipeline
    water_heater(running, clock, [60.0, 52.0, 60.0, 52.0, 60.0, 52.0], spacing=270.0)
    assert "water_heater_tank_temperature_implausible_jumps" not in fired(seen)


def test_the_same_change_between_close_samples_is_still_a_jump(pipeline) -> None:  # type: ignore[no-untyped-def]
    running, clock, seen = pipeline
    water_heater(running, clock, [60.0, 52.0, 60.0, 52.0, 60.0, 52.0], spacing=10.0)
    assert "water_heater_tank_temperature_implausible_jumps" in fired(seen)


def test_a_held_back_rule_needs_fresh_evidence_once_its_suppressor_clears(pipeline) -> None:  # type: ignore[no-untyped-def]
    """A burnt-out element keeps the tank flat; the slow-heating (descaling) rule is held back meanwhile. Once the
    element is replaced the tank heats normally: the descaling rule must not fire on the old, flat half hour."""
    running, clock, seen = pipeline
    for i in range(int(160 * 60 / 10)):
        ts = T0 + 10 * i
        repaired = ts >= T0 + 100 * 60
        tank = 40.0 + (0.008 * (ts - (T0 + 100 * 60)) if repaired else 0.0)  # a clean element: 0.48 K/min
        feed(running, clock, "appliances/wh-1/telemetry",
             {"ts": ts, "type": "water_heater", "metrics": {"tank_temperature": tank, "heating_on": 1,
                                                            "hot_water_flow": 0.0, "setpoint": 50.0,
                                                            "element_power": 2000.0 if repaired else 0.0}}, ts)
    transitions = [(t.rule.rule_id, t.kind.value) for t in seen]
    assert ("element_failure", "firing") in transitions and ("element_failure", "resolved") in transitions
    assert ("scale_build_up", "firing") not in transitions, "no descaling ticket on the broken element's evidence"


def test_a_root_cause_within_the_group_wait_takes_over_the_ticket(pipeline) -> None:  # type: ignore[no-untyped-def]
    """The warm freezer (a consequence) fires a few seconds before the defrost that never ends (its root cause):
    the ticket, not yet sent, names the root cause, and the consequence leaves its diagnosis."""
    from gateway.engine.evaluator import AlertTransition, Transition

    running, clock, _ = pipeline
    running.incidents.group_wait = 10.0
    feed(running, clock, "appliances/fr-1/telemetry",
         {"ts": T0, "type": "refrigerator", "metrics": {"freezer_temperature": -8.0, "defrost_heater_on": 1}}, T0)
    rules = {r.rule_id: r for r in running.rules}
    clock.set(T0 + 1)
    running.incidents.record([AlertTransition(rules["freezer_too_warm"], "fr-1", Transition.FIRING, T0, T0 + 1)],
                             running.evaluator)
    clock.set(T0 + 5)
    running.incidents.record([AlertTransition(rules["defrost_not_terminating"], "fr-1", Transition.FIRING, T0,
                                              T0 + 5)], running.evaluator)
    [ticket] = running.db.tickets()
    payload = ticket["payload"]
    assert payload["fault"]["code"] == "FR-DEF-01"
    assert [f["rule"] for f in payload["findings"]] == ["defrost_not_terminating"]
    assert {r["rule_id"] for r in running.db.incident_rows()} == {"freezer_too_warm", "defrost_not_terminating"}


def test_silence_the_gateway_cannot_hear_is_no_appliance_fault(pipeline) -> None:  # type: ignore[no-untyped-def]
    """A broker outage of 40 s opened a false "stopped reporting" ticket for every appliance: silence counts
    only while the gateway can hear (from the moment the link is back), and a real silence still fires."""
    running, clock, seen = pipeline
    profile = LIBRARY.profiles["water_heater"]
    limit = profile.interval_seconds * profile.offline_after_intervals
    metrics = {"tank_temperature": 55.0}
    feed(running, clock, "appliances/wh-1/meta", {"type": "water_heater"}, T0)
    for i in range(30):  # its own interval is known: the profile's
        feed(running, clock, "appliances/wh-1/telemetry", {"ts": T0 + i * profile.interval_seconds,
                                                            "metrics": metrics}, T0 + i * profile.interval_seconds)
    last = T0 + 29 * profile.interval_seconds
    running.evaluator.hearing_since = float("inf")  # the broker is gone
    for t in range(1, 6):
        running.tick(last + t * limit)
    running.evaluator.hearing_since = back = last + 5 * limit  # heard again: the appliance gets its limit
    running.tick(back + 0.5 * limit)
    assert "water_heater_silent" not in fired(seen)
    running.tick(back + 1.5 * limit)  # and then it really is silent
    assert "water_heater_silent" in fired(seen)


def report_together(running: Pipeline, clock: FakeClock, devices: list[str], start: float, count: int,
                    interval: float) -> float:
    """`devices` (water heaters) each report `count` times, `interval` apart; the time of the last report."""
    ts = start
    for i in range(count):
        ts = start + i * interval
        for device in devices:
            feed(running, clock, f"appliances/{device}/telemetry", {"ts": ts, "metrics": {"tank_temperature": 55.0}},
                 ts)
    return ts


def four_water_heaters(running: Pipeline, clock: FakeClock) -> tuple[list[str], float, float, float]:
    """Four water heaters reporting together for 30 intervals: (their ids, interval, silence limit, last report)."""
    profile = LIBRARY.profiles["water_heater"]
    interval = profile.interval_seconds
    devices = [f"wh-{i}" for i in range(4)]
    for device in devices:
        feed(running, clock, f"appliances/{device}/meta", {"type": "water_heater"}, T0)
    last = report_together(running, clock, devices, T0, 30, interval)
    return devices, interval, interval * profile.offline_after_intervals, last


def test_a_whole_fleet_falling_quiet_at_once_is_the_gateway_deaf_not_its_appliances(pipeline) -> None:  # type: ignore[no-untyped-def]
    """A broker node that died stalled QoS 1 delivery to a worker whose link stayed up: every washer was then
    "silent" and got a false ticket. Several appliances on schedule until the same moment and all overdue
    since is the path to the gateway; silence counts again from the next message, and an appliance that
    really stopped is still found then."""
    running, clock, seen = pipeline
    devices, interval, limit, last = four_water_heaters(running, clock)
    for t in range(1, 41):  # nothing from anyone for four silence limits, on a link that is up
        running.tick(last + t * limit / 10)
    assert "water_heater_silent" not in fired(seen)
    assert running.evaluator.deaf == len(devices) and running.evaluator.deaf_spells == 1
    back = last + 4 * limit + 1  # the stall ends: three of the four report again; wh-3 had stopped for real
    report_together(running, clock, devices[:3], back, int(1.5 * limit / interval), interval)
    assert running.evaluator.deaf == 0
    silent = [t.device_id for t in seen if t.rule.rule_id == "water_heater_silent" and t.kind.value == "firing"]
    assert silent == ["wh-3"]


def test_one_appliance_falling_silent_while_the_others_report_is_found_at_its_limit(pipeline) -> None:  # type: ignore[no-untyped-def]
    """The deafness test must not hide an appliance that stops alone: it is silent at its own limit."""
    running, clock, seen = pipeline
    devices, interval, limit, last = four_water_heaters(running, clock)
    steps = int(2 * limit / interval)
    report_together(running, clock, devices[1:], last + interval, steps, interval)
    onsets = [t.onset_ts - last for t in seen if t.rule.rule_id == "water_heater_silent" and t.kind.value == "firing"]
    assert [t.device_id for t in seen if t.rule.rule_id == "water_heater_silent"] == ["wh-0"]
    assert running.evaluator.deaf_spells == 0
    assert onsets and onsets[0] <= limit + interval


MIXED_FLEET = {"washer-1": ("washer", "water_level"), "washer-2": ("washer", "water_level"),
               "washer-3": ("washer", "water_level"), "fridge-1": ("refrigerator", "fresh_temperature"),
               "wh-1": ("water_heater", "tank_temperature")}


def report_at_own_rates(running: Pipeline, clock: FakeClock, devices: list[str], start: float, seconds: int) -> None:
    """Each of `devices` reports at its profile's interval (washers every 2 s, the fridge 5 s, the heater 10 s)."""
    for second in range(seconds):
        ts = start + second
        for device in devices:
            appliance, metric = MIXED_FLEET[device]
            if second % int(LIBRARY.profiles[appliance].interval_seconds) == 0:
                feed(running, clock, f"appliances/{device}/telemetry", {"ts": ts, "metrics": {metric: 20.0}}, ts)
        running.tick(ts)


def test_a_mixed_fleet_at_its_own_rates_falling_quiet_at_once_gets_no_silence_ticket(pipeline) -> None:  # type: ignore[no-untyped-def]
    """The stall on a link that is up, with appliances of three types reporting every 2, 5 and 10 s: no appliance
    is silent however long it lasts (here 20 washer silence limits); once the fleet is heard again, the heater
    that stayed quiet is found at its own limit."""
    running, clock, seen = pipeline
    for device, (appliance, _) in MIXED_FLEET.items():
        feed(running, clock, f"appliances/{device}/meta", {"type": appliance}, T0)
    report_at_own_rates(running, clock, list(MIXED_FLEET), T0, 600)
    stall_end = T0 + 600 + 400
    for ts in range(int(T0 + 600), int(stall_end)):
        running.tick(float(ts))
    assert not [t for t in seen if t.rule.rule_id.endswith("_silent")], "no silence during the stall"
    assert running.evaluator.deaf_spells == 1
    heater = LIBRARY.profiles["water_heater"]
    report_at_own_rates(running, clock, [d for d in MIXED_FLEET if d != "wh-1"], stall_end,
                        int(2 * heater.silence_limit))
    silent = [t.device_id for t in seen if t.rule.rule_id.endswith("_silent") and t.kind.value == "firing"]
    assert silent == ["wh-1"]
