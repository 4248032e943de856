"""Time as a dependency, so rules, backoff and tests never read the wall clock behind our back."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to; for unit tests of time-driven logic."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def set(self, when: float) -> None:
        self._now = when


class StepWatch:
    """Notices the wall clock stepping against the monotonic one (NTP correcting a clock after a power cut, an RTC
    reset, an operator): what happened between two readings that the monotonic clock did not see."""

    def __init__(self, tolerance: float = 30.0) -> None:
        self.tolerance = tolerance
        self._last: tuple[float, float] | None = None

    def step(self, wall: float, monotonic: float) -> float:
        """Seconds the wall clock stepped since the last reading (negative: back); 0 within the tolerance."""
        last, self._last = self._last, (wall, monotonic)
        if last is None:
            return 0.0
        stepped = (wall - last[0]) - (monotonic - last[1])
        return stepped if abs(stepped) > self.tolerance else 0.0
