"""Columns the gateway computes itself for its built-in data-quality rules, as typed objects.

Rule expressions name reported and derived metrics by string; these are never spelled in a rule file, so they
cannot collide with a metric a profile declares, and the evaluator dispatches on their type, not on a prefix.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Silence:
    """Seconds since the device's last sample, on the gateway clock (time-driven rules)."""


@dataclass(frozen=True, slots=True)
class Online:
    """1 online, 0 offline by the status topic or last will, NaN unknown (time-driven rules)."""


@dataclass(frozen=True, slots=True)
class Stale:
    """Seconds since the longest-unreported metric that the device has reported before was last seen."""


@dataclass(frozen=True, slots=True)
class Unchanged:
    """Seconds since the value of `metric` last changed."""

    metric: str


@dataclass(frozen=True, slots=True)
class RecentEvents:
    """Seconds since the oldest of the last few events of `metric` (jumps, impossible-value arrivals)."""

    metric: str


@dataclass(frozen=True, slots=True)
class TypicalGap:
    """The device's own reporting interval in seconds (a moving average of its gaps), NaN before its second
    sample; read by both kinds of rule."""


BuiltinColumn = Silence | Online | Stale | Unchanged | RecentEvents | TypicalGap
