"""Simulated appliances behave the same whatever rate they report at (a model defect distorts every score)."""

from __future__ import annotations

import statistics

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
