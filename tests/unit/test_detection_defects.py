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
