"""The pipeline thread's pacing of rule passes under load (pure logic)."""

from __future__ import annotations

import pytest

from gateway.pipeline_thread import PassPacer


def test_cheap_passes_run_every_millisecond_and_dear_ones_at_most_every_ten() -> None:
    pacer = PassPacer()
    assert pacer.interval == PassPacer.SHORTEST, "before any pass: evaluate at once"
    for _ in range(30):
        pacer.passed(0.00002)  # one small rule over a few devices
    assert pacer.interval == PassPacer.SHORTEST
    for _ in range(30):
        pacer.passed(0.0004)  # the whole library
    assert pacer.interval == pytest.approx(PassPacer.PASS_SPACING * 0.0004, rel=0.05)
    for _ in range(30):
        pacer.passed(0.05)  # a pass over a backlog
    assert pacer.interval == PassPacer.LONGEST


def test_after_one_slow_pass_the_pace_comes_back_within_a_few_passes() -> None:
    pacer = PassPacer()
    for _ in range(30):
        pacer.passed(0.0002)
    usual = pacer.interval
    pacer.passed(0.02)  # a pass over a burst of new devices
    assert pacer.interval > usual
    for _ in range(20):  # 40 ms at this pace
        pacer.passed(0.0002)
    assert pacer.interval < usual * 1.5
