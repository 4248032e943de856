"""Evaluate every rule over the devices that received data, all devices of a type at once.

The alert state per (rule, device) lives in numpy arrays beside the window rows:
inactive (since = NaN) -> pending (since set, `for` not yet elapsed) -> firing -> resolved, with
`keep_firing_for` holding a firing alert through short gaps. Durations are measured on the samples'
own timestamps, so a replay of recorded telemetry behaves exactly like the live stream, and on each device's
observed clock (gaps longer than its profile's `max_gap` left out, see TypeWindow), so a gap counts for nothing.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.engine.columns import BuiltinColumn, Online, RecentEvents, Silence, Stale, TypicalGap, Unchanged
from gateway.engine.deafness import quiet_together
from gateway.engine.expr import CompiledExpr, FloatArray, WindowView, carry_forward
from gateway.engine.rules import Rule
from gateway.latency import FAST_BUCKETS, Histogram
from gateway.model import Observation
from gateway.store.window import TypeWindow, WindowStore, slots_spanning


def _as_shape(value: Any, shape: tuple[int, ...]) -> Any:
    """`value` as an array of `shape`: an array already that shape as it is (np.broadcast_to costs ~10 us a
    call, and the rule pass makes several per rule)."""
    if isinstance(value, np.ndarray) and value.shape == shape:
        return value
    return np.broadcast_to(value, shape)


class RowContext:
    """Expression inputs for a batch of rows of one type window: latest values and time-ordered windows.

    Windows are cut at each device's own latest sample time, and cached for the pass (rules share them)."""

    def __init__(self, window: TypeWindow, rows: npt.NDArray[np.intp],
                 derived: Mapping[str, CompiledExpr] | None = None, interval: float = 1.0) -> None:
        self._window = window
        self._rows = rows
        self._interval = interval
        self.derived = derived or {}  # the profile's derived metrics: name -> formula
        self._derived_values: dict[str, FloatArray] = {}
        self._latest = window.latest[rows]
        self._now = window.latest_ts[rows]
        self.observed_now: FloatArray = self._now - window.unobserved[rows]  # each device's observed clock
        self._cache: dict[tuple[str, float], WindowView] = {}
        self._series: dict[tuple[str, float], WindowView] = {}
        self._reductions: dict[tuple[str, str, float], FloatArray] = {}
        self._builtins: dict[BuiltinColumn, FloatArray] = {}
        self._ordered: dict[tuple[bool, int], tuple[FloatArray, npt.NDArray[np.intp]]] = {}

    def builtin(self, column: BuiltinColumn) -> FloatArray:
        cached = self._builtins.get(column)
        if cached is not None:
            return cached
        result: FloatArray
        match column:
            case Stale():
                result = self._stale_seconds()
            case RecentEvents(metric):
                result = self._now - self._window.event_ts[self._rows, self._window.metric_index[metric], 0]
            case Unchanged(metric):
                changed = self._window.changed_observed[self._rows, self._window.metric_index[metric]]
                result = self.observed_now - changed
            case TypicalGap():
                result = self._window.typical_gap[self._rows]
            case _:
                raise KeyError(f"{column} is read by time-driven rules only")
        self._builtins[column] = result
        return result

    def reduced(self, key: tuple[str, str, float], compute: Callable[[], FloatArray]) -> FloatArray:
        value = self._reductions.get(key)
        if value is None:
            value = self._reductions[key] = compute()
        return value

    def column(self, name: str) -> FloatArray:
        formula = self.derived.get(name)
        if formula is not None:
            if name not in self._derived_values:
                self._derived_values[name] = _as_shape(formula.evaluate(self), self._now.shape)
            return self._derived_values[name]
        result: FloatArray = self._latest[:, self._window.metric_index[name]]
        return result

    def _stale_seconds(self) -> FloatArray:
        """Observed age of the longest-unreported periodic metric the device has reported before (vendor codes
        and the data-quality column are sporadic: they come when something happens, and are never stale)."""
        columns = self._window.periodic_columns
        ages = self.observed_now[:, None] - self._window.reported_observed[self._rows][:, columns]
        result: FloatArray = np.nan_to_num(np.nanmax(np.where(np.isnan(ages), -np.inf, ages), axis=1),
                                           neginf=0.0)
        return result

    def last(self, name: str, seconds: float) -> FloatArray:
        column = self._window.metric_index[name]
        age = self._now - self._window.latest_metric_ts[self._rows, column]
        result: FloatArray = np.where(age <= seconds, self._latest[:, column], np.nan)
        return result

    def parameter(self, name: str) -> FloatArray:
        result: FloatArray = self._window.parameters[self._rows, self._window.parameter_index[name]]
        return result

    def window(self, name: str, seconds: float) -> WindowView:
        key = (name, seconds)
        view = self._cache.get(key)
        if view is None:
            ring = self._ring(seconds)
            ts, order = self._time_order(ring)
            values = self.column_slots(name, order, ring)
            view = self._cache[key] = self._view(values, ts, seconds)
        return view

    def series(self, text: str, evaluate: Callable[[Any], FloatArray], seconds: float) -> WindowView:
        key = (text, seconds)
        view = self._series.get(key)
        if view is None:
            ring = self._ring(seconds)
            ts, order = self._time_order(ring)
            samples = _SampleContext(self, order, ring)
            values = np.broadcast_to(evaluate(samples), ts.shape).astype(np.float64)
            view = self._series[key] = self._view(values, ts, seconds)
        return view

    def _ring(self, seconds: float) -> tuple[bool, int]:
        """Which ring a window is read from (the long one where the ring of every column is too short for it)
        and how many of its newest slots: only those the window can span at the type's interval."""
        count = slots_spanning(seconds, self._interval)
        if count <= self._window.slots or not self._window.long_slots:
            return False, min(count, self._window.slots)
        return True, min(count, self._window.long_slots)

    def column_slots(self, name: str, order: npt.NDArray[np.intp], ring: tuple[bool, int]) -> FloatArray:
        window = self._window
        if ring[0]:
            index = window.long_index.get(name)
            if index is None:
                raise KeyError(f"{name} is read over a window longer than its ring; the layout is not the rules'")
            long_values: FloatArray = window.long_values[self._rows[:, None], index, order].astype(np.float64)
            return long_values
        values: FloatArray = window.values[self._rows[:, None], window.metric_index[name], order].astype(np.float64)
        return values

    def _view(self, values: FloatArray, ts: FloatArray, seconds: float) -> WindowView:
        now = self._now[:, None]
        valid = (ts > now - seconds) & (ts <= now) & ~np.isnan(values)
        return WindowView(values, ts, valid, ordered=True, start=self._now - seconds, end=self._now,
                          hold=self._window.observed_gap_limits(self._rows))

    def _time_order(self, ring: tuple[bool, int]) -> tuple[FloatArray, npt.NDArray[np.intp]]:
        """The newest slots of each row in a ring, oldest first (the ring ends just before each row's head)."""
        if ring not in self._ordered:
            long, count = ring
            window = self._window
            slots, head, ts = ((window.long_slots, window.long_head, window.long_ts) if long
                               else (window.slots, window.head, window.ts))
            order = (head[self._rows, None] + np.arange(slots - count, slots)[None, :]) % slots
            self._ordered[ring] = (window.ring_times(self._rows, ts[self._rows[:, None], order]), order)
        return self._ordered[ring]


class _SampleContext:
    """The inputs of an expression at every sample of a window: each metric as it stood then (its last report
    carried forward), derived metrics computed from those, parameters per device. Window functions do not nest,
    so an expression over a window reads nothing else."""

    def __init__(self, rows: RowContext, order: npt.NDArray[np.intp], ring: tuple[bool, int]) -> None:
        self._rows = rows
        self._order = order
        self._ring = ring
        self._columns: dict[str, FloatArray] = {}

    def column(self, name: str) -> FloatArray:
        cached = self._columns.get(name)
        if cached is None:
            formula = self._rows.derived.get(name)
            if formula is not None:
                cached = np.broadcast_to(formula.evaluate(self), self._order.shape)
            else:
                cached = carry_forward(self._rows.column_slots(name, self._order, self._ring))
            self._columns[name] = cached
        return cached

    def parameter(self, name: str) -> FloatArray:
        return self._rows.parameter(name)[:, None]

    def builtin(self, column: BuiltinColumn) -> FloatArray:
        raise KeyError(f"an expression over a window reads no built-in column ({column})")

    def reduced(self, key: tuple[str, str, float], compute: Callable[[], FloatArray]) -> FloatArray:
        raise KeyError(f"window functions do not nest ({key})")

    def window(self, name: str, seconds: float) -> WindowView:
        raise KeyError(f"window functions do not nest ({name})")

    def last(self, name: str, seconds: float) -> FloatArray:
        raise KeyError(f"window functions do not nest ({name})")

    def series(self, text: str, evaluate: Callable[[Any], FloatArray], seconds: float) -> WindowView:
        raise KeyError(f"window functions do not nest ({text})")


class TimerContext:
    """What time-driven rules read: silence since the last sample and the last-will status, on the gateway clock."""

    def __init__(self, window: TypeWindow, rows: npt.NDArray[np.intp], now: float,
                 hearing_since: float = -math.inf) -> None:
        """`hearing_since`: since when the gateway could hear its appliances (inf while it cannot): silence is
        counted from then at the earliest, for a gateway that cannot hear learns nothing of its appliances."""
        self._silence: FloatArray = now - np.maximum(window.latest_ts[rows], hearing_since)
        self._online: FloatArray = window.online[rows]
        self._typical_gap: FloatArray = window.typical_gap[rows]

    def builtin(self, column: BuiltinColumn) -> FloatArray:
        match column:
            case Silence():
                return self._silence
            case Online():
                return self._online
            case TypicalGap():
                return self._typical_gap
        raise KeyError(f"{column} is not read by time-driven rules")

    def column(self, name: str) -> FloatArray:
        raise KeyError(f"time-driven rules read no metrics ({name})")

    def reduced(self, key: tuple[str, str, float], compute: Callable[[], FloatArray]) -> FloatArray:
        return compute()

    def window(self, name: str, seconds: float) -> WindowView:
        raise KeyError(f"time-driven rules read no windows ({name})")

    def last(self, name: str, seconds: float) -> FloatArray:
        raise KeyError(f"time-driven rules read no metrics ({name})")

    def parameter(self, name: str) -> FloatArray:
        raise KeyError(f"time-driven rules read no parameters ({name})")

    def series(self, text: str, evaluate: Callable[[Any], FloatArray], seconds: float) -> WindowView:
        raise KeyError(f"time-driven rules read no windows ({text})")


class Transition(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertTransition:
    rule: Rule
    device_id: str
    kind: Transition
    onset_ts: float
    at_ts: float
    observations: tuple[Observation, ...] = ()


# Rules that read long windows are evaluated once per 1/20 of their longest window (at most 30 s) of each
# device's own sample time instead of on every sample: a 10-minute trend does not change in a second, and reading
# its window costs the most. A device's cadence intervals are phased by a hash of its id, so the work is spread
# over time, and which samples are evaluated depends only on the device's own samples, never on how they were
# batched: live, replay, scoring and rule tests see the same transitions.
CADENCE_FRACTION = 1 / 20
MAX_CADENCE_SECONDS = 30.0


PENDING_FIELDS = ("since", "since_observed", "last_true", "evaluated_slot", "quiet_until")


class _AlertState:
    """Per-device arrays for one rule; grows with the window it shadows."""

    def __init__(self, capacity: int, cadence: float = 0.0) -> None:
        self.since = np.full(capacity, np.nan)  # sample time the condition started to hold (the onset)
        self.since_observed = np.full(capacity, np.nan)  # the same on the device's observed clock
        self.last_true = np.full(capacity, np.nan)  # observed clock
        self.firing = np.zeros(capacity, dtype=np.bool_)
        self.evaluated_slot = np.full(capacity, np.nan)  # cadenced rules: the cadence interval last evaluated
        self.quiet_until = np.full(capacity, -np.inf)  # no firing before this sample time (fresh evidence)
        self.cadence = cadence

    def fit(self, capacity: int) -> None:
        n = self.firing.shape[0]
        if capacity <= n:
            return
        self.since = np.concatenate([self.since, np.full(capacity - n, np.nan)])
        self.since_observed = np.concatenate([self.since_observed, np.full(capacity - n, np.nan)])
        self.last_true = np.concatenate([self.last_true, np.full(capacity - n, np.nan)])
        self.firing = np.concatenate([self.firing, np.zeros(capacity - n, dtype=np.bool_)])
        self.evaluated_slot = np.concatenate([self.evaluated_slot, np.full(capacity - n, np.nan)])
        self.quiet_until = np.concatenate([self.quiet_until, np.full(capacity - n, -np.inf)])


class Evaluator:
    """A pure function of (window store, alert state): call `evaluate()` whenever data has arrived."""

    def __init__(self, rules: list[Rule], store: WindowStore,
                 derived: Mapping[str, Mapping[str, CompiledExpr]] | None = None,
                 intervals: Mapping[str, float] | None = None, cadence: bool = True) -> None:
        """`derived`: per appliance type, the profile's derived metrics by name; `intervals`: reporting
        intervals (how many slots a window spans); `cadence=False` evaluates every rule on every batch
        (rule tests and replays, where exact timing matters more than throughput)."""
        self.store = store
        self.derived = derived or {}
        self.intervals = intervals or {}
        # Since when appliances could be heard (gateway clock); math.inf while the broker link is down. Set by
        # the live gateway from its MQTT link's state (a plain float: written on one thread, read on another).
        self.hearing_since = -math.inf
        self.deaf = 0  # appliances fallen quiet together while the link is up (0: the fleet is heard)
        self.deaf_spells = 0
        self.rules_by_type: dict[str, list[Rule]] = {}
        self.timer_rules_by_type: dict[str, list[Rule]] = {}
        for rule in rules:
            target = self.timer_rules_by_type if rule.time_driven else self.rules_by_type
            target.setdefault(rule.appliance, []).append(rule)
        self._states = {
            rule.rule_id: _AlertState(store.windows[rule.appliance].capacity,
                                      _cadence(rule) if cadence else 0.0) for rule in rules
        }
        self._phases: dict[str, FloatArray] = {}  # per type: each row's cadence phase in [0, 1)
        self._rules_by_id = {rule.rule_id: rule for rule in rules}
        # per type, the sample-driven rules whose evidence outlasts the ring: their pending devices are recorded
        self._recorded: dict[str, list[Rule]] = {}
        for rule in rules:
            if not rule.time_driven and not store.windows[rule.appliance].holds_evidence_for(rule.for_seconds):
                self._recorded.setdefault(rule.appliance, []).append(rule)
        self._recorded_ids = {rule.rule_id for rules in self._recorded.values() for rule in rules}
        self.passes = 0
        self.rows_evaluated = 0
        self.last_pass_seconds = 0.0
        self.pass_seconds = Histogram("Duration of each rule pass.", FAST_BUCKETS)

    def evaluate(self) -> list[AlertTransition]:
        started = time.perf_counter()
        transitions: list[AlertTransition] = []
        for appliance, window in self.store.windows.items():
            self._end_recordings(window)
            rows = window.take_dirty()
            rules = self.rules_by_type.get(appliance)
            if rows.size == 0 or not rules:
                continue
            interval = self.intervals.get(appliance, 1.0)
            context = RowContext(window, rows, self.derived.get(appliance), interval)
            phase = self._phase(window)[rows]
            for rule in rules:
                state = self._states[rule.rule_id]
                if not state.cadence:
                    self._evaluate_rule(rule, window, rows, context, transitions)
                    continue
                state.fit(window.capacity)
                slot = np.floor(window.latest_ts[rows] / state.cadence + phase)
                due = ~(slot == state.evaluated_slot[rows])  # NaN-safe: a row never evaluated is due
                if not due.any():
                    continue
                state.evaluated_slot[rows[due]] = slot[due]
                due_rows = rows[due]
                due_context = context if due.all() else RowContext(window, due_rows, self.derived.get(appliance),
                                                                   interval)
                self._evaluate_rule(rule, window, due_rows, due_context, transitions)
            self.rows_evaluated += int(rows.size)
        self.passes += 1
        self.last_pass_seconds = time.perf_counter() - started
        self.pass_seconds.observe(self.last_pass_seconds)
        return transitions

    def _end_recordings(self, window: TypeWindow) -> None:
        """Stop recording the devices on which no recorded rule is pending any more. Done before a pass, not
        when the rule fires: its ticket's evidence is taken after the pass, and a firing held back (rearm)
        is pending again."""
        rows = window.recorded_rows()
        if not rows.size:
            return
        pending = np.zeros(rows.shape, dtype=np.bool_)
        for rule in self._recorded.get(window.appliance, ()):
            state = self._states[rule.rule_id]
            state.fit(window.capacity)
            pending |= ~np.isnan(state.since[rows]) & ~state.firing[rows]
        if not pending.all():
            window.stop_recording(rows[~pending])

    def _phase(self, window: TypeWindow) -> FloatArray:
        """Each row's cadence phase from a hash of its device id (stable across restarts and replays)."""
        known = self._phases.get(window.appliance, np.zeros(0))
        count = len(window.device_ids)
        if known.size < count:
            extra = [zlib.crc32(d.encode()) / 2**32 for d in window.device_ids[known.size:count]]
            known = self._phases[window.appliance] = np.concatenate([known, np.array(extra)])
        return known

    def _evaluate_rule(self, rule: Rule, window: TypeWindow, rows: npt.NDArray[np.intp], context: RowContext,
                       transitions: list[AlertTransition]) -> None:
        ts = window.latest_ts[rows]
        holds = _as_shape(rule.expr.holds(context), ts.shape)
        clears = None if rule.clear is None else _as_shape(rule.clear.holds(context), ts.shape)
        transitions.extend(self._step(rule, window, rows, ts, context.observed_now, holds, clears, context))

    def evaluate_timer(self, now: float) -> list[AlertTransition]:
        """Time-driven rules over every known device of each type, at the gateway clock's `now`. Nothing while
        the gateway cannot hear its appliances (its link is down, or the whole fleet fell quiet at once):
        silence it cannot hear proves nothing either way."""
        transitions: list[AlertTransition] = []
        if self.hearing_since == math.inf:
            return transitions
        quiet = quiet_together(self.store.windows.values(), now)
        if quiet:  # the whole fleet at once: the path to the gateway, not the appliances (see deafness.py)
            self.deaf_spells += not self.deaf
            self.deaf = quiet
            return transitions
        if self.deaf:  # heard again: each appliance's silence counts from now, as after a broker outage
            self.deaf = 0
            self.hearing_since = now
        for appliance, rules in self.timer_rules_by_type.items():
            window = self.store.windows[appliance]
            count = len(window.device_ids)
            if not count:
                continue
            rows = np.arange(count)
            known = ~np.isnan(window.latest_ts[:count]) | ~np.isnan(window.online[:count])
            rows = rows[known]
            context = TimerContext(window, rows, now, self.hearing_since)
            ts = np.full(rows.shape, now)
            for rule in rules:
                holds = _as_shape(rule.expr.holds(context), ts.shape)
                transitions.extend(self._step(rule, window, rows, ts, ts, holds, None, context))
        return transitions

    def _step(self, rule: Rule, window: TypeWindow, rows: npt.NDArray[np.intp], ts: npt.NDArray[np.float64],
              observed: npt.NDArray[np.float64], holds: npt.NDArray[np.bool_], clears: npt.NDArray[np.bool_] | None,
              context: RowContext | TimerContext) -> list[AlertTransition]:
        """Advance the alert state of `rows`; `ts` is the sample time (onsets are reported in it) and `observed`
        the device's observed clock, in which `for` and `keep_firing_for` are counted."""
        state = self._states[rule.rule_id]
        state.fit(window.capacity)
        holds = holds & (ts >= state.quiet_until[rows])  # evidence from before a suppressor cleared does not count
        if not holds.any() and not state.firing[rows].any() and np.isnan(state.since[rows]).all():
            return []  # the common case: quiet rows stay quiet, no state to update
        since, last_true, firing = state.since[rows], state.last_true[rows], state.firing[rows]
        since_observed = state.since_observed[rows]
        if clears is not None:  # hysteresis: a firing alert holds until its clear condition is met
            holds = holds | (firing & ~clears)

        starting = holds & np.isnan(since)
        if rule.rule_id in self._recorded_ids and starting.any():
            window.record(rows[starting])
        since[starting] = ts[starting]
        since_observed[starting] = observed[starting]
        last_true[holds] = observed[holds]
        kept = ~holds & firing & (observed - last_true < rule.keep_firing_for_seconds)
        cleared = ~holds & ~kept
        resolving = cleared & firing
        since[cleared] = np.nan
        since_observed[cleared] = np.nan
        firing[resolving] = False
        fires = holds & ~firing & (observed - since_observed >= rule.for_seconds)
        firing[fires] = True

        state.since[rows], state.last_true[rows], state.firing[rows] = since, last_true, firing
        state.since_observed[rows] = since_observed
        out: list[AlertTransition] = []
        if fires.any():
            held = [(h, _as_shape(h.comparison.left(context), ts.shape), _as_shape(h.comparison.right(context),
                                                                                    ts.shape))
                    for h in rule.expr.held(context, fires)]
            for i in np.flatnonzero(fires):
                observations = tuple(Observation(h.comparison.left_text, h.op, float(right[i]), float(left[i]))
                                     for h, left, right in held if h.rows[i])
                out.append(AlertTransition(rule, window.device_ids[rows[i]], Transition.FIRING,
                                           float(since[i]), float(ts[i]), observations))
        for i in np.flatnonzero(resolving):
            out.append(AlertTransition(rule, window.device_ids[rows[i]], Transition.RESOLVED,
                                       float(ts[i]), float(ts[i])))
        return out

    def pending_state(self, appliance: str, first: int = 0, end: int | None = None,
                      ) -> dict[str, tuple[str, dict[str, FloatArray]]]:
        """Per rule of the type: (version, each state array over rows first..end-1, all in use by default), what
        a checkpoint keeps so that a restart resumes a `for` half-way through. Not `firing` (the database holds
        the open episodes and `restore_firing` re-arms them), not the time-driven rules (they count the
        gateway's own clock, and silence counts anew after a start)."""
        window = self.store.windows[appliance]
        end = len(window.device_ids) if end is None else end
        state: dict[str, tuple[str, dict[str, FloatArray]]] = {}
        for rule in self.rules_by_type.get(appliance, ()):
            alert = self._states[rule.rule_id]
            alert.fit(window.capacity)
            state[rule.rule_id] = (rule.version, {name: getattr(alert, name)[first:end].copy()
                                                  for name in PENDING_FIELDS})
        return state

    def resume_pending(self, rule_id: str, version: str, rows: npt.NDArray[np.intp],
                       arrays: Mapping[str, FloatArray]) -> bool:
        """Put back a rule's pending state for `rows` from a checkpoint; False if the rule is gone or changed."""
        rule = self._rules_by_id.get(rule_id)
        if rule is None or rule.time_driven or rule.version != version:
            return False
        alert = self._states[rule_id]
        alert.fit(self.store.windows[rule.appliance].capacity)
        for name in PENDING_FIELDS:
            getattr(alert, name)[rows] = arrays[name]
        if rule_id in self._recorded_ids:  # from what the checkpoint's ring holds
            window = self.store.windows[rule.appliance]
            window.record(rows[~np.isnan(alert.since[rows]) & ~alert.firing[rows]])
        return True

    def restore_firing(self, rule_id: str, device_id: str, onset_ts: float) -> bool:
        """Re-arm an episode that was open when the gateway stopped, so it resolves instead of re-opening."""
        rule = self._rule(rule_id)
        if rule is None:
            return False
        window = self.store.windows[rule.appliance]
        row = window.row(device_id)
        state = self._states[rule_id]
        state.fit(window.capacity)
        state.since[row] = onset_ts
        state.since_observed[row] = state.last_true[row] = onset_ts - window.unobserved[row]
        state.firing[row] = True
        return True

    def rearm(self, rule_id: str, device_id: str) -> None:
        """Undo a firing whose incident could not be stored: the next sample that still holds fires again."""
        rule = self._rule(rule_id)
        if rule is None:
            return
        row = self.store.windows[rule.appliance].rows.get(device_id)
        if row is not None:
            self._states[rule_id].firing[row] = False

    def require_fresh_evidence(self, rule_id: str, device_id: str, since: float) -> None:
        """The rule may fire on this device only on evidence gathered after `since` (when a suppressor, such as
        a broken sensor or the root cause, cleared): its longest window and its `for` start again from there."""
        rule = self._rule(rule_id)
        if rule is None:
            return
        window = self.store.windows[rule.appliance]
        row = window.rows.get(device_id)
        if row is None:
            return
        state = self._states[rule_id]
        state.fit(window.capacity)
        state.quiet_until[row] = since + max(rule.expr.windows.values(), default=0.0)
        if not state.firing[row]:
            state.since[row] = state.since_observed[row] = np.nan

    def is_quiet(self, rule_id: str, device_id: str, ts: float) -> bool:
        """True while the rule waits for fresh evidence on this device (see require_fresh_evidence)."""
        rule = self._rule(rule_id)
        row = None if rule is None else self.store.windows[rule.appliance].rows.get(device_id)
        if rule is None or row is None:
            return False
        quiet = self._states[rule_id].quiet_until
        return row < quiet.shape[0] and ts < float(quiet[row])

    def _rule(self, rule_id: str) -> Rule | None:
        return self._rules_by_id.get(rule_id)

    def device_context(self, appliance: str, device_id: str) -> RowContext | None:
        """Expression inputs for one device, e.g. to check the evidence that rules a cause out."""
        window = self.store.windows.get(appliance)
        if window is None or device_id not in window.rows:
            return None
        return RowContext(window, np.array([window.rows[device_id]]), self.derived.get(appliance),
                          self.intervals.get(appliance, 1.0))

    def cadence_of(self, rule_id: str) -> float:
        """Seconds of a device's own time between evaluations of a long-window rule; 0 for every sample."""
        return self._states[rule_id].cadence

    def firing_count(self) -> int:
        return sum(int(s.firing.sum()) for s in self._states.values())


def _cadence(rule: Rule) -> float:
    longest = max(rule.expr.windows.values(), default=0.0)
    return min(MAX_CADENCE_SECONDS, longest * CADENCE_FRACTION)
