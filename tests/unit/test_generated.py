"""The generated suite and the detection gaps it found, each through a real replay (the one Pipeline, a SQLite file).

- `generate(seed)` is deterministic and draws every kind of appliance, transport, dialect and fault.
- A washer of a brand without a vendor code table (Midea) is found by its telemetry.
- A fridge compressor that fails during an outage is found once reporting resumes on a warm freezer.
- Midea 0xAA air conditioners and Haier FF FF washers can be placed in scenarios, through the gateway's own
  decoders and adapters.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.generate import HARSH, HOUR, RECOVERS_WITHIN, Mix, generate
from firmware_sim.scenario import ScenarioError, World, scenario_from_dict
from firmware_sim.scoring import meets
from gateway.accuracy import run_scenario, score_run
from gateway.config import GatewayConfig
from gateway.engine.library import load_library

PROFILES = load_library(GatewayConfig()).profiles


def test_the_same_seed_gives_the_same_scenario_and_other_seeds_differ() -> None:
    assert generate(7, PROFILES) == generate(7, PROFILES)
    assert generate(7, PROFILES).appliances != generate(8, PROFILES).appliances


def test_thirty_seeds_draw_every_type_dialect_and_kind_of_fault() -> None:
    scenarios = [generate(seed, PROFILES) for seed in range(1, 31)]
    appliances = [a for s in scenarios for a in s.appliances]
    assert {a.appliance for a in appliances} == set(PROFILES)
    assert {a.dialect for a in appliances if a.transport == "serial"} == {"open", "midea", "haier"}
    assert len({a.brand for a in appliances if a.appliance == "washer"}) >= 4
    intervals = {a.appliance: [b.interval for b in appliances if b.appliance == a.appliance] for a in appliances}
    for kind, seen in intervals.items():  # anywhere from the profile's rate to near its silence limit
        profile = PROFILES[kind]
        assert min(seen) < 2 * profile.interval_seconds
        assert max(seen) > 0.5 * profile.interval_seconds * profile.offline_after_intervals
    injections = [(s, i) for s in scenarios for i in s.injections]
    assert {i.kind for _, i in injections} == {"component", "sensor", "comm"}
    assert any(i.duration is not None for _, i in injections if i.kind == "component"), "repairs"
    recurring = [(s.name, i.device_id, i.fault) for s, i in injections if i.kind == "component"]
    assert len(recurring) > len(set(recurring)), "a repaired fault that comes back"
    assert any(i.fault == "offline" and any(c.kind == "component" and c.device_id == i.device_id
                                            for c in s.injections) for s, i in injections), "a fault in an outage"
    by_id = {(s.name, a.device_id): a for s in scenarios for a in s.appliances}
    for s, i in injections:
        assert 0 <= i.at < s.duration
        if i.kind == "component":
            assert by_id[(s.name, i.device_id)].dialect == "open", "vendor dialects carry too little telemetry"


def scenario(doc: dict[str, object], tmp_path: Path) -> tuple[object, object]:
    built = scenario_from_dict(doc)
    run = run_scenario(built, tmp_path)
    return run, score_run(built, run)


def test_a_washer_brand_without_a_code_table_is_found_by_its_telemetry(tmp_path: Path) -> None:
    faults = ["drain_filter_clogged", "water_supply_low_pressure", "door_lock_failure", "motor_failure"]
    run, report = scenario({"name": "no-table", "seed": 3, "duration": "2d",
                            "fleet": [{"type": "washer", "brand": "Midea", "count": 5, "every": "18s"}],
                            "faults": [{"device": f"washer-0{n + 1}", "fault": f, "at": "3h"}
                                       for n, f in enumerate(faults)]}, tmp_path)
    assert report.expected == 4
    assert meets(report) == [], report.as_dict()
    assert {t["code"] for t in run.tickets} == {"WM-DRAIN-SLOW", "WM-FILL-SLOW", "WM-DOOR-LOCK", "WM-MOTOR-STALL"}


def test_a_dishwasher_fault_behind_a_raised_alarm_is_not_expected_and_a_repair_resets_the_alarm() -> None:
    built = scenario_from_dict({"name": "dw", "seed": 7, "duration": "4d",
                                "fleet": [{"type": "dishwasher", "brand": "Midea", "count": 2, "every": "10s",
                                           "usage": 2.0}],
                                "faults": [{"device": "dw-01", "fault": "drain_filter_clogged", "at": "2h"},
                                           {"device": "dw-01", "fault": "heater_failure", "at": "1d"},
                                           {"device": "dw-02", "fault": "drain_filter_clogged", "at": "2h",
                                            "for": "1d"},
                                           {"device": "dw-02", "fault": "heater_failure", "at": "2d"}]})
    world = World(built, load_library(GatewayConfig()).profiles)
    for _ in world.messages():
        pass
    codes = {(t.device_id, t.fault): t.expected_codes for t in world.truth()}
    assert codes[("dw-01", "drain_filter_clogged")] and not codes[("dw-01", "heater_failure")]
    # repaired after a day, the drain alarm is reset, so the heater failing later shows itself
    assert codes[("dw-02", "drain_filter_clogged")] and codes[("dw-02", "heater_failure")]


@pytest.mark.parametrize("every", ["60s", "118s", "140s"])
def test_a_slow_reporter_with_late_reports_is_not_silent_but_a_real_outage_is(tmp_path: Path, every: str) -> None:
    """Near a fridge's 150 s silence limit, a report held back (out of order) must not flap DQ-SILENT and hold
    back a real fault; an outage of half an hour is still a silence."""
    run, report = scenario({"name": "slow", "seed": 8, "duration": "1d",
                            "fleet": [{"type": "refrigerator", "brand": "Haier", "count": 2, "every": every}],
                            "faults": [{"device": "fridge-01", "fault": "out_of_order"},
                                       {"device": "fridge-01", "fault": "door_seal_leak", "at": "6h", "ramp": "1h"},
                                       {"device": "fridge-02", "fault": "offline", "at": "10h", "for": "30m"}]},
                           tmp_path)
    codes = {(t["device"], t["code"]) for t in run.tickets}
    assert ("fridge-01", "DQ-SILENT") not in codes and ("fridge-01", "FR-WARM-01") in codes, run.tickets
    assert ("fridge-02", "DQ-SILENT") in codes
    assert meets(report) == [], report.as_dict()


def test_the_bosch_washer_table_maps_only_the_codes_its_sources_agree_on() -> None:
    codes = load_library(GatewayConfig()).vendor_codes
    assert codes.lookup("Bosch", "washer", "E18") == ("code_drain_timeout", None)
    assert codes.lookup("bosch", "washer", "F17") == ("code_fill_timeout", None)
    assert codes.lookup("Bosch", "washer", "E16") == (None, None)  # door lock: E16, E04 or E01 by model


def test_a_washer_fault_hidden_behind_another_halt_is_not_expected() -> None:
    built = scenario_from_dict({"name": "masked", "seed": 6, "duration": "1d",
                                "fleet": [{"type": "washer", "brand": "LG", "count": 2, "every": "10s"}],
                                "faults": [{"device": "washer-01", "fault": "door_lock_failure", "at": "1h"},
                                           {"device": "washer-01", "fault": "water_supply_low_pressure", "at": "1h"},
                                           {"device": "washer-02", "fault": "motor_failure", "at": "1h"}]})
    world = World(built, load_library(GatewayConfig()).profiles)
    for _ in world.messages():
        pass
    codes = {(t.device_id, t.fault): t.expected_codes for t in world.truth()}
    # both stop the program in its first fill: whichever halted it first hides the other, whose code never shows
    first = [f for f in ("door_lock_failure", "water_supply_low_pressure") if codes[("washer-01", f)]]
    assert len(first) == 1
    assert "WM-MOTOR-STALL" in codes[("washer-02", "motor_failure")]  # a fault alone shows


@pytest.mark.parametrize(("every", "outage"), [("60s", "4h"), ("20s", "90m"), ("120s", "8h")])
def test_a_compressor_that_fails_during_an_outage_is_found_when_reporting_resumes(tmp_path: Path, every: str,
                                                                                   outage: str) -> None:
    run, report = scenario({"name": "outage", "seed": 4, "duration": "1d",
                            "fleet": [{"type": "refrigerator", "brand": "Haier", "every": every}],
                            "faults": [{"device": "fridge-01", "fault": "compressor_start_failure", "at": "10h"},
                                       {"device": "fridge-01", "fault": "offline", "at": "9h30m", "for": outage}]},
                           tmp_path)
    assert meets(report) == [], report.as_dict()
    assert "FR-CMP-01" in {t["code"] for t in run.tickets}


def test_vendor_dialect_appliances_report_through_the_gateways_own_decoders(tmp_path: Path) -> None:
    run, report = scenario({"name": "dialects", "seed": 5, "duration": "8h",
                            "fleet": [{"type": "air_conditioner", "brand": "Midea", "every": "10s",
                                       "transport": "serial", "dialect": "midea"},
                                      {"type": "washer", "brand": "Haier", "every": "10s", "transport": "serial",
                                       "dialect": "haier"}]}, tmp_path)
    assert run.messages > 2 * 8 * 360  # every poll answered and decoded into telemetry
    assert run.tickets == [] and report.false_tickets == []


def test_a_dialect_must_fit_its_appliance_and_line() -> None:
    with pytest.raises(ScenarioError, match="dialect"):
        scenario_from_dict({"duration": "1d", "fleet": [{"type": "washer", "transport": "serial",
                                                          "dialect": "midea"}]})
    with pytest.raises(ScenarioError, match="dialect"):
        scenario_from_dict({"duration": "1d", "fleet": [{"type": "air_conditioner", "dialect": "midea"}]})


def test_a_sensor_fault_is_placed_only_where_the_line_carries_its_metric() -> None:
    """A Haier washer's dropout of motor_current (a metric its frames never carry) was expected as DQ-STALE."""
    for seed in range(1, 41):
        scenario = generate(seed, PROFILES, HARSH)
        dialects = {a.device_id: a.dialect for a in scenario.appliances}
        assert all(dialects[i.device_id] == "open" for i in scenario.injections if i.kind == "sensor"), seed
    fleet = [{"type": "washer", "brand": "Haier", "transport": "serial", "dialect": "haier"}]
    with pytest.raises(ScenarioError, match="haier dialect"):
        scenario_from_dict({"duration": "1d", "fleet": fleet,
                            "faults": [{"device": "washer-01", "fault": "dropout", "metric": "motor_current"}]})
    with pytest.raises(ScenarioError, match="none can drop out"):
        scenario_from_dict({"duration": "1d", "fleet": [{**fleet[0], "type": "air_conditioner", "brand": "Midea",
                                                         "dialect": "midea"}],
                            "faults": [{"device": "ac-01", "fault": "dropout", "metric": "local_temperature"}]})
    stuck = scenario_from_dict({"duration": "1d", "fleet": [{**fleet[0], "type": "air_conditioner",
                                                             "brand": "Midea", "dialect": "midea"}],
                                "faults": [{"device": "ac-01", "fault": "stuck", "metric": "local_temperature"}]})
    assert stuck.injections[0].metric == "local_temperature"


@pytest.mark.parametrize("every", ["30s", "120s"])
@pytest.mark.parametrize("fault", sorted(RECOVERS_WITHIN))
def test_a_warm_cabinet_fault_that_comes_back_after_the_cabinet_recovered_is_found_both_times(
        tmp_path: Path, fault: str, every: str) -> None:
    """generated-301 drew a door seal leak back 3.2 h after its repair, while the cabinet was still at 12 degC:
    the first alert never ended, so the second leak was "missed". Recurrences now come back only after
    RECOVERS_WITHIN; one that does is found again (a late finding on the ticket no one has closed yet)."""
    back = 3 * HOUR + 10 * HOUR + RECOVERS_WITHIN[fault]
    run, report = scenario({"name": "recurrence", "seed": 6, "duration": "2d",
                            "fleet": [{"type": "refrigerator", "brand": "Haier", "every": every}],
                            "faults": [{"device": "fridge-01", "fault": fault, "at": "3h", "for": "10h"},
                                       {"device": "fridge-01", "fault": fault, "at": f"{back}s"}]}, tmp_path)
    assert report.expected == 2
    assert meets(report) == [], report.as_dict()
    assert report.per_fault[f"refrigerator/{fault}"].detected == 2
    assert len(run.tickets) == 1


def test_generated_recurrences_come_back_only_after_the_appliance_recovered() -> None:
    for seed in range(1, 121):
        for mix in (Mix(), HARSH):
            episodes: dict[tuple[str, str], float] = {}
            for i in sorted(generate(seed, PROFILES, mix).injections, key=lambda i: i.at):
                if i.kind == "component" and (i.device_id, i.fault) in episodes:
                    assert i.at - episodes[(i.device_id, i.fault)] >= RECOVERS_WITHIN.get(i.fault, 0) + 2 * HOUR, seed
                if i.kind == "component" and i.duration is not None:
                    episodes[(i.device_id, i.fault)] = i.at + i.duration
