from dataclasses import replace

from gateway.engine.evaluator import Evaluator, Transition
from gateway.engine.expr import compile_expr
from gateway.engine.rules import Rule
from gateway.store.window import WindowStore
from tests.unit.helpers import PROFILES, washer_rule


def make(rule: Rule, max_gap: float = 20.0) -> tuple[Evaluator, WindowStore]:
    store = WindowStore({n: p.stored_names for n, p in PROFILES.items()}, slots=16, initial_devices=2,
                        max_gaps={"washer": max_gap})
    return Evaluator([rule], store), store


def feed(evaluator: Evaluator, store: WindowStore, device: str, ts: float, vibration: float) -> list[str]:
    window = store.windows["washer"]
    window.append(window.row(device), ts, {"vibration": vibration})
    return [f"{t.kind.value}@{t.at_ts:g}" for t in evaluator.evaluate()]


def test_for_delays_firing_until_the_condition_has_held_long_enough() -> None:
    evaluator, store = make(washer_rule(for_="10s"))
    assert feed(evaluator, store, "w", 100, 3) == []      # pending since 100
    assert feed(evaluator, store, "w", 105, 3) == []
    assert feed(evaluator, store, "w", 110, 3) == ["firing@110"]
    assert feed(evaluator, store, "w", 111, 3) == []      # already firing: no second transition
    assert feed(evaluator, store, "w", 112, 1) == ["resolved@112"]


def test_a_dip_resets_pending() -> None:
    evaluator, store = make(washer_rule(for_="10s"))
    feed(evaluator, store, "w", 100, 3)
    feed(evaluator, store, "w", 108, 1)                    # back to inactive
    assert feed(evaluator, store, "w", 112, 3) == []       # pending again since 112
    assert feed(evaluator, store, "w", 121, 3) == []
    assert feed(evaluator, store, "w", 122, 3) == ["firing@122"]


def test_keep_firing_for_bridges_short_gaps() -> None:
    evaluator, store = make(washer_rule(for_="0s", keep="5s"))
    assert feed(evaluator, store, "w", 100, 3) == ["firing@100"]
    assert feed(evaluator, store, "w", 103, 1) == []       # within keep_firing_for
    assert feed(evaluator, store, "w", 104, 3) == []
    assert feed(evaluator, store, "w", 108, 1) == []
    assert feed(evaluator, store, "w", 109, 1) == ["resolved@109"]


def test_for_counts_observed_time_not_a_gap_between_two_samples() -> None:
    evaluator, store = make(washer_rule(for_="1m"))
    assert feed(evaluator, store, "w", 0, 3) == []
    assert feed(evaluator, store, "w", 3600, 3) == []      # an hour without data is not an hour of shaking
    for ts in range(3610, 3660, 10):
        assert feed(evaluator, store, "w", ts, 3) == []
    assert feed(evaluator, store, "w", 3660, 3) == ["firing@3660"]  # one observed minute after the gap


def test_keep_firing_for_counts_observed_time_across_a_gap() -> None:
    evaluator, store = make(washer_rule(for_="0s", keep="30s"))
    for ts in range(0, 50, 10):
        feed(evaluator, store, "w", ts, 3)
    assert feed(evaluator, store, "w", 50, 1) == []        # kept: the condition stopped 10 s ago
    assert feed(evaluator, store, "w", 1000, 1) == []      # the gap is not observed: still within 30 s
    assert feed(evaluator, store, "w", 1010, 1) == []
    assert feed(evaluator, store, "w", 1020, 1) == ["resolved@1020"]  # 30 observed seconds after it stopped


def test_devices_are_independent_and_evaluated_together() -> None:
    evaluator, store = make(washer_rule(for_="0s"))
    window = store.windows["washer"]
    for i in range(50):  # forces the arrays to grow past their initial 2 rows
        window.append(window.row(f"w{i}"), 100.0, {"vibration": 3.0 if i % 10 == 0 else 0.5})
    transitions = evaluator.evaluate()
    assert sorted(t.device_id for t in transitions) == ["w0", "w10", "w20", "w30", "w40"]
    assert evaluator.firing_count() == 5
    assert evaluator.rows_evaluated == 50


def test_observations_record_value_against_threshold() -> None:
    evaluator, store = make(washer_rule(expr="vibration > 2 and drum_speed >= 800", for_="0s"))
    window = store.windows["washer"]
    window.append(window.row("w"), 100.0, {"vibration": 2.5, "drum_speed": 1200.0})
    [transition] = evaluator.evaluate()
    assert transition.kind is Transition.FIRING
    assert [(o.quantity, o.op, o.threshold, o.value) for o in transition.observations] == [
        ("vibration", ">", 2.0, 2.5), ("drum_speed", ">=", 800.0, 1200.0)]


def test_evidence_leaves_out_the_false_branch_of_an_or() -> None:
    evaluator, store = make(washer_rule(expr="vibration > 2 or drum_speed > 1000", for_="0s"))
    window = store.windows["washer"]
    window.append(window.row("w"), 100.0, {"vibration": 2.5, "drum_speed": 600.0})
    [transition] = evaluator.evaluate()
    assert [(o.quantity, o.op, o.threshold, o.value) for o in transition.observations] == [
        ("vibration", ">", 2.0, 2.5)]


def test_an_expression_over_a_window_reads_the_ring_buffer_of_every_device() -> None:
    evaluator, store = make(washer_rule(expr="avg(vibration * 2, 30s) > 5 and fraction(vibration > 2, 30s) >= 0.5",
                                        for_="0s"))
    window = store.windows["washer"]
    for ts in range(0, 40, 10):
        window.append(window.row("steady"), float(ts), {"vibration": 3.0})  # avg 6, held all along
        window.append(window.row("spike"), float(ts), {"vibration": 1.0 if ts < 30 else 12.0})  # avg 9, 0 held
    fired = [t.device_id for t in evaluator.evaluate()]
    assert fired == ["steady"]


def test_missing_metric_never_fires() -> None:
    evaluator, store = make(washer_rule(expr="not vibration < 2", for_="0s"))
    window = store.windows["washer"]
    window.append(window.row("w"), 100.0, {"drum_speed": 10.0})
    assert evaluator.evaluate() == []


def test_restored_episode_resolves_instead_of_reopening() -> None:
    evaluator, store = make(washer_rule(for_="0s"))
    assert evaluator.restore_firing("shaky", "w", 90.0)
    assert feed(evaluator, store, "w", 100, 3) == []       # still firing: no new episode
    assert feed(evaluator, store, "w", 101, 1) == ["resolved@101"]
    assert not evaluator.restore_firing("no_such_rule", "w", 90.0)


def test_rearm_lets_a_failed_firing_fire_again() -> None:
    evaluator, store = make(washer_rule(for_="0s"))
    assert feed(evaluator, store, "w", 100, 3) == ["firing@100"]
    evaluator.rearm("shaky", "w")
    assert feed(evaluator, store, "w", 101, 3) == ["firing@101"]


def test_window_functions_read_the_ring_in_time_order_after_it_wraps() -> None:
    # washer window of 16 slots; 40 samples wrap it twice. Drum-speed changes: one per sample in the last minute.
    evaluator, store = make(washer_rule(expr="changes(drum_speed, 1m) >= 5 and avg(vibration, 30s) > 1", for_="0s"))
    window = store.windows["washer"]
    row = window.row("w")
    fired = []
    for t in range(40):
        window.append(row, 1000.0 + t * 10, {"drum_speed": float(t % 2) * 800, "vibration": 1.5 if t > 30 else 0.2})
        fired += [x.at_ts for x in evaluator.evaluate()]
    assert fired == [1000.0 + 32 * 10]  # the 30 s average first exceeds 1 at t=32 (two of three samples high)


def test_clear_holds_a_firing_alert_until_the_clear_condition() -> None:
    rule = washer_rule(expr="vibration > 2", for_="0s")
    units = {m.name: m.unit for m in PROFILES["washer"].metrics}
    evaluator, store = make(replace(rule, clear=compile_expr("vibration < 1", units)))
    assert feed(evaluator, store, "w", 100, 3) == ["firing@100"]
    assert feed(evaluator, store, "w", 101, 1.5) == []  # below the trigger but not below the clear level
    assert feed(evaluator, store, "w", 102, 0.5) == ["resolved@102"]


def test_only_the_columns_read_over_a_long_window_are_kept_that_long() -> None:
    from gateway.engine.library import window_layouts

    rules = [washer_rule(expr="changes(phase, 1h) > 3", for_="0s", name="a"),
             washer_rule(expr="vibration > 2", for_="0s", name="b")]
    layouts = window_layouts(PROFILES, rules, minimum=100)
    washer = layouts["washer"]
    assert washer.slots == 300 // 2 * 5 // 4 + 2  # 5 min of evidence before the onset, at 2 s, a quarter more
    assert washer.long_columns == ("phase",) and washer.long_slots == 3600 // 2 * 5 // 4 + 2  # 1 h of phase
    assert layouts["refrigerator"].slots == 100 and not layouts["refrigerator"].long_columns  # no rule: minimum


def test_an_expression_or_derived_metric_over_a_long_window_keeps_every_column_it_reads() -> None:
    from gateway.engine.library import window_layouts
    from gateway.engine.rules import parse_rule_file

    text = """
groups:
  - name: test
    appliance: air_conditioner
    rules:
      - alert: warm_superheat
        expr: avg(superheat, 30m) > 12 K
        diagnosis:
          code: T-1
          title: {en: t, zh: t}
          severity: minor
          causes: [{cause: c, likelihood: 1.0, reason: r}]
"""
    rules, errors = parse_rule_file(text, "t.yaml", PROFILES)
    assert not errors, errors
    ac = window_layouts(PROFILES, rules, minimum=64)["air_conditioner"]
    assert set(ac.long_columns) == {"suction_temperature", "suction_pressure"}  # superheat's formula
    expression = [washer_rule(expr="fraction(phase == 5 and water_level > 30, 30m) > 0.5", name="x")]
    washer = window_layouts(PROFILES, expression, minimum=64)["washer"]
    assert set(washer.long_columns) == {"phase", "water_level"}


def test_a_rule_slower_than_the_ring_has_its_pending_devices_recorded_and_only_until_it_fires() -> None:
    evaluator, store = make(washer_rule(for_="10m"))
    window = store.windows["washer"]
    assert not window.holds_evidence_for(600.0)  # 16 slots at 2 s hold no 15 minutes
    feed(evaluator, store, "calm", 0, 0.5)
    for ts in range(0, 601, 2):
        feed(evaluator, store, "w", ts, 3.0)
    assert window.recorded_rows().tolist() == [window.rows["w"]]  # fired at 600: its evidence is taken now
    assert window.snapshot("w").ts.size == 301  # every sample since the onset, not the ring's 16
    feed(evaluator, store, "w", 602, 3.0)
    assert window.recorded_rows().size == 0  # the next pass lets it go
    assert window.snapshot("w").ts.size == 16


def test_a_slow_rules_ticket_carries_the_samples_from_five_minutes_before_its_onset() -> None:
    """The ring is sized by the spans the rules need, not one count for every type: the evidence of a washer
    rule with `for: 20m` still reaches back to 5 minutes before the fault began."""
    import orjson

    from gateway.clock import FakeClock
    from gateway.config import GatewayConfig
    from gateway.engine.library import load_library
    from gateway.pipeline import Pipeline, PipelineSettings
    from gateway.store.db import Database

    t0 = 1_760_000_000.0
    clock, db = FakeClock(t0), Database(":memory:")
    rule = washer_rule(expr="vibration > 2", for_="20m")
    pipeline = Pipeline(load_library(GatewayConfig()), db, clock, PipelineSettings(site="t"), rules=[rule])
    pipeline.feed("appliances/w1/meta", orjson.dumps({"type": "washer", "brand": "Haier", "model": "EG100"}))
    onset = t0 + 1200.0
    for i in range(1300):  # every 2 s: 20 minutes calm, then shaking until detection 20 minutes later
        ts = t0 + 2.0 * i
        clock.set(ts)
        pipeline.feed("appliances/w1/telemetry",
                      orjson.dumps({"ts": ts, "metrics": {"vibration": 3.0 if ts >= onset else 0.5}}))
        pipeline.evaluate()
        pipeline.tick(ts)
    [ticket] = db.tickets()
    evidence = ticket["payload"]["evidence"]
    assert evidence["onset_ts"] == onset
    window_ts = evidence["window"]["ts"]
    assert window_ts[0] == onset - 300 and window_ts[-1] == evidence["detected_ts"] == onset + 1200
    assert len(window_ts) == 751  # every sample between, none missing
    db.close()
