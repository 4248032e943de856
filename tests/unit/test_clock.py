"""Telling a step of the wall clock from time passing."""

from __future__ import annotations

import pytest

from gateway.clock import StepWatch


def test_a_step_of_the_wall_clock_is_told_apart_from_time_passing() -> None:
    watch = StepWatch(tolerance=30.0)
    assert watch.step(1000.0, 5.0) == 0.0  # the first reading
    assert watch.step(1010.0, 15.0) == 0.0  # ten seconds on both clocks
    assert watch.step(1015.0 + 3600, 20.0) == pytest.approx(3600.0)  # stepped forward an hour
    assert watch.step(1020.0, 25.0) == pytest.approx(-3600.0)  # and back
    assert watch.step(1040.0, 35.0) == 0.0  # drift within the tolerance is no step
