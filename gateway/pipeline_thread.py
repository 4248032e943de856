"""The live gateway's pipeline thread: the one thread that drives its Pipeline.

Batches come from the handoff (fed by the MQTT and serial link threads); a rule pass follows each batch, at
most every MIN_PASS_INTERVAL_SECONDS under load so that the pass is paid per batch; the time-driven rules
run once a second; the device registry is saved every few seconds. Incident, case and ticket writes happen
here, on the pipeline's own SQLite connection, so the event loop (web, delivery) never waits for them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from gateway.clock import Clock, StepWatch
from gateway.latency import SLOW_BUCKETS, Histogram
from gateway.pipeline import Pipeline
from gateway.protocol.payload import DropReason
from gateway.transport.handoff import MessageHandoff

log = logging.getLogger("gateway.pipeline")


class PassPacer:
    """How long after a rule pass the next may start. A pass has a fixed cost (each rule's few numpy calls,
    0.1-1 ms with the whole library) and a small one per device; under load, messages are gathered for
    PASS_SPACING times the recent rule pass, so that passes take at most about a tenth of the thread's time,
    however cheap or dear the loaded rules are: a small library is evaluated within 2 ms (a 1 ms floor cost a
    tenth of a core more at 2,000 msg/s and fell behind at 24,000), the whole library at high rates within 10
    ms (the batch age the architecture allows). The batch write is not counted: it costs about the same per
    message however the messages are batched (2.2-3.4 us a message at batches of 64-500, its fixed part about
    80 us per type, benchmarks.ingest_batch), so gathering for it bought no CPU and only added latency (at
    16,000 msg/s it had stretched every gathering to the 10 ms ceiling). An idle gateway evaluates each message
    at once."""

    PASS_SPACING = 10.0
    SHORTEST = 0.002
    LONGEST = 0.010
    SMOOTHING = 0.2  # weight of the newest pass in the recent duration

    def __init__(self) -> None:
        self.recent = 0.0  # seconds a pass took lately (a moving average)

    def passed(self, seconds: float) -> None:
        """`seconds`: the rules' own time in the pass just made (Evaluator.last_pass_seconds)."""
        self.recent = seconds if not self.recent else self.recent + self.SMOOTHING * (seconds - self.recent)

    @property
    def interval(self) -> float:
        return min(self.LONGEST, max(self.SHORTEST, self.PASS_SPACING * self.recent))

TICK_SECONDS = 1.0
PERSIST_SECONDS = 2.0


class StepWork(Protocol):
    """Work done a step at a time between passes (the checkpoint's chunk copies)."""

    @property
    def next_step(self) -> float: ...  # monotonic time the next step is due; infinite when there is none

    def step(self) -> None: ...


class PipelineThread:
    def __init__(self, pipeline: Pipeline, handoff: MessageHandoff, clock: Clock,
                 persist: Callable[[], None], steps: StepWork | None = None) -> None:
        """`persist` every PERSIST_SECONDS and at stop; `steps` between passes, when due."""
        self.pipeline = pipeline
        self.handoff = handoff
        self.clock = clock
        self.persist = persist
        self.steps = steps
        self.errors = 0  # exceptions caught in the loop (bugs); each is logged and the loop goes on
        self.batches = 0
        self.ingest_to_decision = Histogram(
            "From the arrival of a batch's oldest message to the end of the rule pass that decided on it.",
            SLOW_BUCKETS)
        self._steps = StepWatch()
        self.pacer = PassPacer()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, then return; the last devices are saved."""
        self._stop.set()
        self.handoff.wake()
        self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        next_tick = time.monotonic() + TICK_SECONDS
        next_persist = time.monotonic() + PERSIST_SECONDS
        last_pass = 0.0
        while not self._stop.is_set():
            due = min(next_tick, next_persist, self.steps.next_step if self.steps else math.inf)
            batch = self.handoff.take(timeout=max(0.0, due - time.monotonic()))
            try:
                if batch:
                    last_pass = self._pass(batch, last_pass)
                overflow = self.handoff.take_overflow()
                if overflow:
                    self.pipeline.drops.drop(None, DropReason.QUEUE_FULL,
                                             "ingest queue full; the gateway cannot keep up", overflow)
                now = time.monotonic()
                if now >= next_tick:
                    wall = self.clock.now()
                    stepped = self._steps.step(wall, now)
                    if stepped:
                        self.pipeline.clock_stepped(stepped, wall)
                    self.pipeline.tick(wall)
                    self.pipeline.ingest.link_health.assess(len(self.handoff), self.handoff.limit)
                    next_tick = max(next_tick + TICK_SECONDS, now)  # after a stall, no burst of catch-up ticks
                if now >= next_persist:
                    self.persist()
                    next_persist = now + PERSIST_SECONDS
                if self.steps is not None and time.monotonic() >= self.steps.next_step:
                    self.steps.step()
            except Exception:  # a bug: log it, count it, keep the pipeline running
                self.errors += 1
                log.exception("internal error in the pipeline thread; it goes on")
        try:
            self.persist()
        except Exception:
            log.exception("could not save the devices at stop")

    def _pass(self, batch: list[tuple[str, bytes]], last_pass: float) -> float:
        """Stage the batch (and what arrives while the pacer waits), write it in one go, then a rule pass."""
        arrived = self.handoff.batch_arrived
        store = self.pipeline.store
        with store.lock:  # staging may allocate a new device's row, which can grow (replace) the arrays
            self.pipeline.stage_all(batch)
        wait = last_pass + self.pacer.interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
            more = self.handoff.take(timeout=0)
            if more:
                with store.lock:
                    self.pipeline.stage_all(more)
        with store.lock:
            self.pipeline.write_pending()
        self.pipeline.evaluate()
        self.batches += 1
        decided = time.monotonic()
        # what gathering saves: the rules' fixed cost per pass; not the batch write (its cost is per message), nor
        # the incidents a pass records (a new ticket's 1-2 ms of evidence, seal and SQLite)
        self.pacer.passed(self.pipeline.evaluator.last_pass_seconds)
        self.ingest_to_decision.observe(max(0.0, decided - arrived))
        return decided
