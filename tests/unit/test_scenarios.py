"""Scenario files and the scorer: broken files say where, and the scoring counts what it should."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.models import MODELS, FaultableModel, FaultSchedule
from firmware_sim.scenario import DEFAULT_START, ScenarioError, World, duration, load_scenario, scenario_from_dict
from firmware_sim.scoring import THRESHOLDS, ScoringError, meets, score
from gateway.config import GatewayConfig
from gateway.engine.library import load_library

SUITE = Path(__file__).resolve().parents[2] / "firmware_sim" / "scenarios"


def test_durations_take_days() -> None:
    assert duration("30d") == 30 * 86400 and duration("1d5h") == 86400 + 5 * 3600 and duration("90s") == 90
    assert duration("soon") is None


def test_a_broken_scenario_names_every_problem() -> None:
    doc = {"duration": "1d", "colour": "blue",
           "fleet": [{"type": "toaster"}, {"type": "washer", "count": 0}],
           "faults": [{"device": "ac-09", "fault": "condenser_fan_failure"}]}
    with pytest.raises(ScenarioError) as error:
        scenario_from_dict(doc, "bad.yaml")
    text = str(error.value)
    for part in ("unknown key 'colour'", "fleet[0]: 'type' must be one of", "fleet[1]: 'every' must be a duration",
                 "faults[0]: 'device' must name an appliance"):
        assert part in text, part
    with pytest.raises(ScenarioError, match="washer faults are"):
        scenario_from_dict({"duration": "1d", "fleet": [{"type": "washer"}],
                            "faults": [{"device": "washer-01", "fault": "refrigerant_leak"}]})


def test_the_standard_suite_loads_and_its_truth_names_expected_codes() -> None:
    scenarios = [load_scenario(p) for p in sorted(SUITE.glob("*.yaml"))]
    assert {s.name for s in scenarios} >= {"healthy-10-days", "each-fault-alone", "faults-with-noise",
                                          "heavy-usage"}
    alone = next(s for s in scenarios if s.name == "each-fault-alone")
    truth = World(alone, load_library(GatewayConfig()).profiles).truth()
    assert len(truth) == 21 and all(t.top_cause for t in truth)
    # a fault that shows only in use (a washer program reaching its phase) is expected once the run has shown it
    assert all(t.expected_codes for t in truth if t.fault not in MODELS[t.appliance].SHOWN_BY_USE)
    assert {t.appliance for t in truth} == {"air_conditioner", "refrigerator", "washer", "water_heater",
                                            "dishwasher"}
    assert next(s for s in scenarios if s.name == "healthy-10-days").appliance_days == 400


def test_messages_come_in_time_order_with_meta_first_and_faults_applied() -> None:
    scenario = scenario_from_dict({"duration": "10m", "seed": 3, "fleet": [
        {"type": "refrigerator", "brand": "Haier", "count": 2, "every": "30s"}], "faults": [
        {"device": "fridge-01", "fault": "out_of_range", "metric": "fresh_temperature", "at": "5m", "amount": 999},
        {"device": "fridge-02", "fault": "duplicates", "at": "0s"}]})
    messages = list(World(scenario, load_library(GatewayConfig()).profiles).messages())
    assert [m[1] for m in messages[:4]] == ["appliances/fridge-01/meta", "appliances/fridge-01/status",
                                            "appliances/fridge-02/meta", "appliances/fridge-02/status"]
    times = [m[0] for m in messages]
    assert times == sorted(times) and times[0] == DEFAULT_START
    telemetry = [m for m in messages if m[1].endswith("telemetry")]
    assert sum(m[1].startswith("appliances/fridge-02") for m in telemetry) == 2 * 20  # each report twice
    late = [m for m in telemetry if m[1].startswith("appliances/fridge-01") and m[0] >= DEFAULT_START + 300]
    assert late and all(b'"fresh_temperature":999' in m[2] for m in late)


def truth(device: str, codes: list[str], onset: float = 100.0, kind: str = "component") -> dict[str, object]:
    return {"device": device, "appliance": "washer", "kind": kind, "fault": "f", "onset": onset, "end": None,
            "expected_codes": codes, "top_cause": "Drain", "category": "fault"}


def ticket(device: str, code: str, detected: float, cause: str = "Drain filter") -> dict[str, object]:
    return {"device": device, "code": code, "top_cause": cause,
            "findings": [{"code": code, "detected_ts": detected, "onset_ts": detected}]}


def test_the_scorer_counts_detections_misses_false_tickets_and_duplicates() -> None:
    report = score("s", 1000.0, [truth("w1", ["WM-DRAIN"]), truth("w2", ["WM-DRAIN"]), truth("w3", [], kind="sensor")],
                   [ticket("w1", "WM-DRAIN", 160.0), ticket("w1", "WM-DRAIN", 9000.0, "Pump"),
                    ticket("w4", "WM-DOOR", 50.0), ticket("w3", "DQ-STUCK", 500.0)])
    assert report.recall == 0.5 and report.per_fault["washer/f"].missed == ["w2"]
    assert report.per_fault["washer/f"].delays == [60.0]
    assert report.duplicates == 1
    assert report.false_tickets == ["w4: WM-DOOR (Drain filter)"], "a real sensor problem is not a false ticket"
    assert report.top_cause_accuracy == 1.0
    assert meets(report) == [f"recall 0.500 < {THRESHOLDS['recall']}", f"precision 0.750 < {THRESHOLDS['precision']}",
                             "1 duplicate tickets"]
    early = score("s", 1.0, [truth("w1", ["WM-DRAIN"], onset=1000.0)], [ticket("w1", "WM-DRAIN", 10.0)])
    assert early.recall == 0.0 and len(early.false_tickets) == 1, "a ticket before the fault did not detect it"


def test_a_ticket_sent_before_the_fault_for_another_code_stays_false_whatever_joins_it_later() -> None:
    """The fault's finding reached the platform late (a finding_added step): the fault is detected, but the
    ticket the platform got first was about nothing real."""
    early = {"device": "w1", "code": "WM-DOOR", "top_cause": "Door lock",
             "findings": [{"code": "WM-DOOR", "detected_ts": 10.0, "onset_ts": 10.0},
                          {"code": "WM-DRAIN", "detected_ts": 1200.0, "onset_ts": 1100.0, "late": True}]}
    report = score("s", 100.0, [truth("w1", ["WM-DRAIN"], onset=1000.0)], [early])
    assert report.recall == 1.0
    assert report.false_tickets == ["w1: WM-DOOR (Door lock)"]
    assert report.precision == 0.0


def test_a_late_finding_does_not_excuse_a_data_quality_ticket() -> None:
    dq = {"device": "w3", "code": "DQ-STUCK", "top_cause": "Sensor", "findings": [
        {"code": "DQ-STUCK", "detected_ts": 10.0, "onset_ts": 10.0},
        {"code": "DQ-STUCK", "detected_ts": 600.0, "onset_ts": 600.0, "late": True}]}
    report = score("s", 100.0, [truth("w3", [], onset=500.0, kind="sensor")], [dq])
    assert len(report.false_tickets) == 1, "the sensor fault began after the ticket was sent"


def test_a_ticket_read_from_a_faulty_sensor_while_it_was_faulty_is_not_false() -> None:
    drift = {**truth("f1", [], onset=1000.0, kind="sensor"), "end": 50_000.0, "metric": "fresh_temperature"}

    def warm(detected: float, metrics: list[str]) -> dict[str, object]:
        return {"device": "f1", "code": "FR-WARM-01", "top_cause": "Door seal",
                "findings": [{"code": "FR-WARM-01", "detected_ts": detected, "onset_ts": detected - 2700.0,
                              "metrics": metrics}]}

    during = score("s", 100.0, [drift], [warm(20_000.0, ["door_open", "fresh_temperature"])])
    assert during.false_tickets == []
    before = score("s", 100.0, [drift], [warm(2000.0, ["fresh_temperature"])])
    other_metric = score("s", 100.0, [drift], [warm(20_000.0, ["freezer_temperature"])])
    long_after = score("s", 100.0, [drift], [warm(60_000.0, ["fresh_temperature"])])
    assert len(before.false_tickets) == len(other_metric.false_tickets) == len(long_after.false_tickets) == 1


def test_a_truth_without_appliance_days_cannot_be_scored() -> None:
    with pytest.raises(ScoringError, match="appliance_days"):
        score("s", 0.0, [truth("w1", ["WM-DRAIN"])], [])


def test_every_model_samples_its_profile_metrics_without_being_told_its_usage() -> None:
    """The demo and fleets build models directly (found: a washer built without `use()` crashed)."""
    from firmware_sim.models import MODELS

    profiles = load_library(GatewayConfig()).profiles
    for appliance, model_class in MODELS.items():
        model = model_class(7)
        for step in range(3):
            metrics = model.sample(DEFAULT_START + 10.0 * step)
            assert set(metrics) <= set(profiles[appliance].metric_names), appliance
            assert model.codes(DEFAULT_START + 10.0 * step) == []


def test_a_late_finding_is_judged_by_the_cause_its_own_step_named() -> None:
    """A second fault's finding joins a ticket already sent: the platform heard its causes in the
    `finding_added` step, not the ticket's."""
    sent = {"device": "ac1", "code": "AC-ICE-01", "top_cause": "Clogged air filter", "findings": [
        {"code": "AC-ICE-01", "detected_ts": 500.0, "onset_ts": 400.0, "top_cause": "Clogged air filter"},
        {"code": "AC-CND-01", "detected_ts": 900.0, "onset_ts": 800.0, "late": True,
         "top_cause": "Condenser coil blocked"}]}
    faults = [{**truth("ac1", ["AC-ICE-01"], onset=300.0), "fault": "filter", "top_cause": "Clogged air filter"},
              {**truth("ac1", ["AC-CND-01"], onset=200.0), "fault": "fouling", "top_cause": "Condenser coil"}]
    report = score("s", 10.0, faults, [sent])
    assert report.recall == 1.0 and report.top_cause_accuracy == 1.0
    wrong = {**sent, "findings": [sent["findings"][0], {**sent["findings"][1], "top_cause": "Clogged air filter"}]}
    assert score("s", 10.0, faults, [wrong]).top_cause_accuracy == 0.5


def test_one_finding_for_two_present_faults_must_name_one_of_them_first() -> None:
    both = [{**truth("ac1", ["AC-CND-01"], onset=100.0), "fault": "fouling", "top_cause": "Condenser coil"},
            {**truth("ac1", ["AC-CND-01"], onset=300.0), "fault": "fan", "top_cause": "Outdoor fan"}]
    named_fan = ticket("ac1", "AC-CND-01", 350.0, cause="Outdoor fan motor failed")
    assert score("s", 10.0, both, [named_fan]).top_cause_accuracy == 1.0
    named_neither = ticket("ac1", "AC-CND-01", 350.0, cause="Refrigerant leak")
    assert score("s", 10.0, both, [named_neither]).top_cause_accuracy == 0.0


def sampled(appliance: str, seed: int, faults: list[tuple[str, float]], hours: float, step: int) -> FaultableModel:
    """A model of `appliance` with abrupt `faults` (name, seconds after the start), sampled every `step` s."""
    t0 = DEFAULT_START
    model = MODELS[appliance](seed, [FaultSchedule(fault, t0 + at, 0.0) for fault, at in faults])
    for ts in range(int(t0), int(t0 + hours * 3600), step):
        model.sample(float(ts))
    return model


def test_scale_on_a_burnt_out_element_is_not_expected_to_show() -> None:
    """generated-55 expected a descaling ticket for a water heater whose element had burnt out first: a dead
    element heats at no rate at all, so its scale can never show (and the element fault's ticket is open)."""
    t0 = DEFAULT_START
    both = sampled("water_heater", 7, [("element_burnout", 600), ("scale_build_up", 1200)], 48, 60)
    scaled_only = sampled("water_heater", 7, [("scale_build_up", 1200)], 48, 60)
    assert both.showed("element_burnout", t0, None)
    assert not both.showed("scale_build_up", t0, None)
    assert scaled_only.showed("scale_build_up", t0, None)


def test_a_clogged_filter_shows_only_on_an_ac_that_runs_long_enough_for_its_coil_to_freeze() -> None:
    """generated-56 expected coil freezing from a clogged filter on an AC that short-cycled (a faulty room
    sensor: 100 s on, 100 s off) and so never ran long enough for its coil to freeze."""
    t0 = DEFAULT_START
    cycling = sampled("air_conditioner", 3, [("filter_clogged", 600), ("room_sensor_fault", 60)], 12, 10)
    steady = sampled("air_conditioner", 3, [("filter_clogged", 600)], 12, 10)
    assert steady.showed("filter_clogged", t0, None)
    assert not cycling.showed("filter_clogged", t0, None)


def test_a_stuck_thermostat_shows_only_once_it_heats_the_tank_past_its_setpoint() -> None:
    """generated-89 expected a stuck-closed thermostat on a water heater whose thermostat had already failed open:
    the heater never heats again, so nothing can show that the thermostat would not open."""
    t0 = DEFAULT_START
    open_first = sampled("water_heater", 5, [("thermostat_failed_open", 600), ("thermostat_stuck_closed", 3600)],
                         12, 10)
    stuck = sampled("water_heater", 5, [("thermostat_stuck_closed", 3600)], 12, 10)
    assert stuck.showed("thermostat_stuck_closed", t0, None)
    assert not open_first.showed("thermostat_stuck_closed", t0, None)
