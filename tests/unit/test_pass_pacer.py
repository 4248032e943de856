"""The pipeline thread's pacing of rule passes under load (pure logic)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from gateway.clock import FakeClock
from gateway.pipeline_thread import PassPacer, PipelineThread
from gateway.transport.handoff import MessageHandoff


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


class _SlowWritePipeline:
    """A pipeline whose batch write is dear and whose rules are cheap: the write's cost is per message, so
    gathering longer saves none of it, and it must not stretch the pacing."""

    def __init__(self) -> None:
        self.store = SimpleNamespace(lock=threading.Lock())
        self.evaluator = SimpleNamespace(last_pass_seconds=0.0)
        self.written = 0

    def stage_all(self, messages: list[tuple[str, bytes]]) -> None:
        pass

    def write_pending(self) -> None:
        time.sleep(0.003)  # 3 ms: a large batch of many samples
        self.written += 1

    def evaluate(self) -> None:
        self.evaluator.last_pass_seconds = 0.00005  # one cheap rule


def test_the_pace_follows_the_rules_not_the_batch_write() -> None:
    pipeline = _SlowWritePipeline()
    thread = PipelineThread(pipeline, MessageHandoff(100), FakeClock(0.0), persist=lambda: None)  # type: ignore[arg-type]
    last = 0.0
    for _ in range(20):
        last = thread._pass([("appliances/a/telemetry", b"{}")], last)
    assert pipeline.written == 20
    assert thread.pacer.interval == PassPacer.SHORTEST, "a 3 ms write had stretched the gathering to 10 ms"
