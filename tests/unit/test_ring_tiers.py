"""The two tiers of the window store (a long ring for the columns read over long windows, recordings for the
evidence of slow rules) must give exactly the tickets a ring of every column long enough for everything gives."""

from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import FakeClock
from gateway.config import GatewayConfig
from gateway.engine.library import load_library
from gateway.engine.rules import Rule, parse_rule_file
from gateway.pipeline import Pipeline, PipelineSettings
from gateway.store.db import Database
from tests.unit.helpers import PROFILES

RULES = """
groups:
  - name: tiers
    appliance: washer
    rules:
      - {alert: shaking, expr: vibration > 2, for: 10m, diagnosis: {code: T-1, title: {en: a, zh: a},
         severity: minor, causes: [{cause: c, likelihood: 1.0, reason: r}]}}
      - {alert: churning, expr: "changes(phase, 40m) >= 6", diagnosis: {code: T-2, title: {en: b, zh: b},
         severity: minor, causes: [{cause: c, likelihood: 1.0, reason: r}]}}
      - {alert: flooded, expr: "avg(water_level, 20m) > 60", for: 2m, diagnosis: {code: T-3, title: {en: c, zh: c},
         severity: minor, causes: [{cause: c, likelihood: 1.0, reason: r}]}}
      - {alert: unlocked, expr: operational_state == 1 and door_locked == 0, for: 30s,
         diagnosis: {code: T-4, title: {en: d, zh: d}, severity: minor,
                     causes: [{cause: c, likelihood: 1.0, reason: r}]}}
"""
T0 = 1_760_000_000.0
EVERYTHING = 4000  # slots: at 2 s, longer than any window or evidence of RULES, so no tier is used


def rules() -> list[Rule]:
    parsed, errors = parse_rule_file(RULES, "tiers.yaml", PROFILES)
    assert not errors, errors
    return parsed


def telemetry(seed: int, gap: float, jitter: float, hours: float) -> list[tuple[float, dict[str, float]]]:
    """A washer whose faults come and go at random: shaking spells, phase changes, a high water level; at
    least one shaking spell and one burst of phase changes, so that both tiers are read."""
    rng = np.random.default_rng(seed)
    gaps = gap * (1 + rng.uniform(-jitter, jitter, int(hours * 3600 / gap)))
    times = T0 + np.cumsum(gaps)
    shaking = rng.uniform(0, 1, times.size) < 0.002  # a spell starts
    shaking[rng.integers(0, times.size // 2)] = True  # at least one, early enough to be found
    spell = np.convolve(shaking, np.ones(int(900 / gap)), mode="full")[:times.size] > 0
    change = np.full(times.size, gap / 300)  # a phase change every 5 minutes, and 20 minutes of one a minute:
    burst = rng.integers(0, times.size // 2)  # the churning rule (6 in 40 minutes) has something to find
    change[burst:burst + int(1200 / gap)] = gap / 60
    phase = np.cumsum(rng.uniform(0, 1, times.size) < change) % 6
    flooded = np.sin((times - T0) / rng.uniform(900, 4000)) > 0.3
    unlocked = rng.uniform(0, 1, times.size) < 0.01
    return [(float(t), {"operational_state": 1.0, "phase": float(p), "vibration": 3.0 if s else 0.5,
                        "water_level": 80.0 if f else 20.0, "door_locked": 0.0 if u else 1.0})
            for t, p, s, f, u in zip(times, phase, spell, flooded, unlocked, strict=True)]


def tickets(samples: list[tuple[float, dict[str, float]]], min_slots: int) -> tuple[list[dict[str, Any]], Any]:
    clock, db = FakeClock(T0), Database(":memory:")
    pipeline = Pipeline(load_library(GatewayConfig()), db, clock, PipelineSettings(site="t", min_slots=min_slots),
                        rules=rules())
    pipeline.feed("appliances/w1/meta", orjson.dumps({"type": "washer", "brand": "Haier", "model": "EG100"}))
    for ts, metrics in samples:
        clock.set(ts)
        pipeline.feed("appliances/w1/telemetry", orjson.dumps({"ts": ts, "metrics": metrics}))
        pipeline.evaluate()
    found = [t["payload"] for t in db.tickets()]
    window = pipeline.store.windows["washer"]
    db.close()
    return found, window


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), gap=st.sampled_from([0.5, 1.0, 2.0, 2.6]), jitter=st.floats(0.0, 0.3))
def test_the_tiers_give_the_tickets_of_a_ring_long_enough_for_everything(seed: int, gap: float,
                                                                         jitter: float) -> None:
    samples = telemetry(seed, gap, jitter, hours=1.5)
    tiered, window = tickets(samples, min_slots=64)
    assert window.slots < 400 and window.long_names == ("phase", "water_level")  # the tiers are in use
    whole, big = tickets(samples, min_slots=EVERYTHING)
    assert big.slots == EVERYTHING and not big.long_names
    assert tiered == whole
    assert {f["rule"] for t in whole for f in t["findings"]} >= {"shaking", "churning"}  # the tiers were read
