"""What every appliance model shares: scheduled faults with an onset, a ramp and a severity; a daily rhythm."""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol

SHOWN_EVERY = 60.0  # seconds between two records of a fault showing itself


@dataclass(frozen=True)
class FaultSchedule:
    """A fault that starts at `onset` (epoch s), reaches `severity` after `ramp_seconds` (0: abrupt) and, if
    `end` is set, is repaired then."""

    name: str
    onset: float
    ramp_seconds: float = 20.0
    severity: float = 1.0
    end: float | None = None

    def level(self, ts: float) -> float:
        if ts < self.onset or (self.end is not None and ts >= self.end):
            return 0.0
        if self.ramp_seconds <= 0:
            return self.severity
        return self.severity * min(1.0, (ts - self.onset) / self.ramp_seconds)


class ApplianceModel(Protocol):
    appliance_type: str
    faults: tuple[str, ...]

    def sample(self, ts: float) -> dict[str, float]: ...

    def codes(self, ts: float) -> list[str]: ...


class FaultableModel(ABC):
    """Base of the models: a seeded generator and the faults scheduled on this appliance."""

    appliance_type = ""
    faults: tuple[str, ...] = ()
    SHOWN_BY_USE: ClassVar[frozenset[str]] = frozenset()  # faults that show only in some use (see `showed`)

    def __init__(self, seed: int, schedules: list[FaultSchedule] | FaultSchedule | None = None) -> None:
        self.rng = random.Random(seed)
        self.usage = 1.0  # how hard the household uses it: door openings, programs, draws (2.0: heavy)
        if isinstance(schedules, FaultSchedule):
            schedules = [schedules]
        self.schedules: list[FaultSchedule] = list(schedules or [])
        unknown = [s.name for s in self.schedules if s.name not in self.faults]
        if unknown:
            raise ValueError(f"{type(self).__name__} cannot simulate {unknown}; it knows {list(self.faults)}")
        self.last_ts: float | None = None
        self.shown: list[tuple[str, float]] = []  # (fault in SHOWN_BY_USE, a time it showed itself)
        self._last_shown: dict[str, float] = {}

    def level(self, name: str, ts: float) -> float:
        return max((s.level(ts) for s in self.schedules if s.name == name), default=0.0)

    def repair(self) -> None:
        """The technician fixed everything."""
        self.schedules = []

    def step(self, ts: float, first: float, longest: float) -> float:
        """Seconds since the previous sample (`first` for the first one), capped at `longest`."""
        dt = first if self.last_ts is None else max(0.0, min(longest, ts - self.last_ts))
        self.last_ts = ts
        return dt

    @abstractmethod
    def sample(self, ts: float) -> dict[str, float]:
        """Advance to `ts` and return the metric values the appliance reports."""

    def codes(self, ts: float) -> list[str]:
        """Vendor error codes the appliance shows at `ts` (sent on its event topic); none by default."""
        return []

    def showed(self, fault: str, onset: float, end: float | None) -> bool:
        """Whether the fault scheduled from `onset` to `end` ever affected what the appliance reported (call after
        the run). Most faults always do; those in SHOWN_BY_USE only when the appliance was used in the way that
        reveals them (a washer program reaching the phase; an element switched on), which the model records
        with `_show`."""
        if fault not in self.SHOWN_BY_USE:
            return True
        return any(name == fault and onset <= at < (end if end is not None else math.inf) for name, at in self.shown)

    def _show(self, fault: str, ts: float) -> None:
        """The fault, active now, affects what the appliance reports (kept at most every SHOWN_EVERY seconds per
        fault: `showed` needs a time within each fault's schedule, not every sample)."""
        last = self._last_shown.get(fault)
        if last is None or ts - last >= SHOWN_EVERY:
            self._last_shown[fault] = ts
            self.shown.append((fault, ts))


def day_fraction(ts: float, utc_offset_hours: float = 8.0) -> float:
    """Local time of day as a fraction (0 = midnight), China time by default."""
    return ((ts / 3600.0 + utc_offset_hours) % 24.0) / 24.0


def daily_wave(ts: float, peak_hour: float = 15.0) -> float:
    """-1 .. 1, highest at `peak_hour` local time: the shape of outdoor temperature over a day."""
    return math.cos(2 * math.pi * (day_fraction(ts) - peak_hour / 24.0))
