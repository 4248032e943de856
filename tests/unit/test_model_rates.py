"""Simulated appliances behave the same whatever rate they report at (a model defect distorts every score)."""

from __future__ import annotations

import statistics

import pytest

from firmware_sim.models.refrigerator import RefrigeratorModel

T0 = 1_760_000_000.0


def mean_fresh_temperature(interval: float, days: float = 3.0) -> float:
    model = RefrigeratorModel(3)
    return statistics.mean(model.sample(T0 + i * interval)["fresh_temperature"]
                           for i in range(int(days * 86400 / interval)))


def test_a_healthy_fridge_reporting_slowly_runs_no_warmer() -> None:
    """Door openings are events in time: a fridge reporting every 5 minutes is as cold as one reporting every
    5 seconds, so no door-seal rule can mistake a slow reporter for a leaking seal."""
    fast, slow = mean_fresh_temperature(5.0), mean_fresh_temperature(300.0)
    assert abs(slow - fast) < 0.3, (fast, slow)


def drain_alarm_raised(interval: float) -> bool:
    from firmware_sim.models import DishwasherModel, FaultSchedule
    from firmware_sim.models.dishwasher import DRAIN

    model = DishwasherModel(4, FaultSchedule("drain_filter_clogged", T0, 0))
    model.runs_today = True
    alarms = [model.sample(T0 + i * interval)["alarm"] for i in range(int(2 * 86400 / interval))]
    return any(int(a) & DRAIN for a in alarms)


def healthy_alarms(interval: float) -> int:
    from firmware_sim.models import DishwasherModel

    model = DishwasherModel(4)
    return sum(model.sample(T0 + i * interval)["alarm"] > 0 for i in range(int(2 * 86400 / interval)))


def test_a_clogged_dishwasher_raises_its_drain_alarm_at_any_reporting_rate() -> None:
    """The firmware checks the drain at the end of the phase whether or not a report lands there."""
    for interval in (2.0, 17.0, 45.0, 60.0):
        assert drain_alarm_raised(interval), interval
        assert healthy_alarms(interval) == 0, interval


def test_a_gree_air_conditioner_on_a_uart_keeps_every_metric_and_each_event_counts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A brand's own metric names belong to its MQTT meta; on a UART the ids are the profile's. Every event frame
    carries its own sequence number, so the gateway never takes a second code for a repeat."""
    from firmware_sim.scenario import World, scenario_from_dict
    from gateway.accuracy import _messages, run_messages, scenario_config
    from gateway.engine.library import load_library

    scenario = scenario_from_dict({"name": "gree-uart", "seed": 3, "duration": "20m", "fleet": [
        {"type": "air_conditioner", "brand": "Gree", "model": "KFR-26GW", "count": 1, "every": "10s",
         "transport": "serial"}], "faults": []})
    config = scenario_config(scenario, tmp_path)
    world = World(scenario, load_library(config).profiles)
    messages = list(_messages(world, world.profiles))
    telemetry = [orjson_loads(m.payload) for m in messages if m.topic.endswith("/telemetry")]
    assert telemetry and {"local_temperature", "indoor_coil_temperature", "outdoor_temperature",
                          "discharge_temperature"} <= set(telemetry[-1]["metrics"])
    run = run_messages(messages, config, scenario.start, 10.0)
    assert run.dropped == {}, run.dropped


@pytest.mark.parametrize("every", ["250ms", "125ms"])
def test_short_cycling_is_found_on_an_air_conditioner_reporting_faster_than_its_profile(
        tmp_path, every: str) -> None:  # type: ignore[no-untyped-def]
    """A ring sized for the profile's 1 s held under 5 minutes of a unit reporting every 250 ms (2.3 at
    125 ms), so the 15-minute start count never reached 3; the window store now merges such a device's
    samples to the rate it was sized for (gateway/store/window.py, `_slots_to_write`)."""
    from firmware_sim.scenario import scenario_from_dict
    from firmware_sim.scoring import meets
    from gateway.accuracy import run_scenario, score_run

    afternoon = 1_782_864_000 + 6 * 3600  # 14:00 in China on 1 July: the owner runs the unit
    scenario = scenario_from_dict({"name": "fast-ac", "seed": 3, "duration": "1h", "start": afternoon, "fleet": [
        {"type": "air_conditioner", "brand": "Gree", "every": every}],
        "faults": [{"device": "ac-01", "fault": "room_sensor_fault", "at": "10m"}]})
    run = run_scenario(scenario, tmp_path)
    report = score_run(scenario, run)
    assert report.expected == 1 and meets(report) == [], report.as_dict()
    assert [t["code"] for t in run.tickets] == ["AC-CYC-01"]


def test_serial_frames_count_up() -> None:
    from firmware_sim.scenario import SERIAL_PREFIX, World, scenario_from_dict
    from gateway.config import GatewayConfig
    from gateway.engine.library import load_library
    from gateway.protocol.open_dialect import OpenDecoder

    scenario = scenario_from_dict({"name": "seq", "seed": 3, "duration": "5m", "fleet": [
        {"type": "water_heater", "brand": "Haier", "model": "EC6002", "count": 1, "every": "10s",
         "transport": "serial"}], "faults": []})
    world = World(scenario, load_library(GatewayConfig()).profiles)
    decoder = OpenDecoder()
    frames = [f for ts, topic, p in world.messages() if topic.startswith(SERIAL_PREFIX) for f in decoder.feed(p)]
    sequences = [f.seq for f in frames[1:]]
    assert len(set(sequences)) == len(sequences) > 20


def orjson_loads(data: bytes) -> dict[str, object]:
    import orjson

    result: dict[str, object] = orjson.loads(data)
    return result
