"""Evaluate every rule over the devices that received data, all devices of a type at once.

The alert state per (rule, device) lives in numpy arrays beside the window rows:
inactive (since = NaN) -> pending (since set, `for` not yet elapsed) -> firing -> resolved, with
`keep_firing_for` holding a firing alert through short gaps. Durations are measured on the samples'
own timestamps, so a replay of recorded telemetry behaves exactly like the live stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from gateway.engine.rules import Rule
from gateway.model import Observation
from gateway.store.window import TypeWindow, WindowStore


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


class _AlertState:
    """Per-device arrays for one rule; grows with the window it shadows."""

    def __init__(self, capacity: int) -> None:
        self.since = np.full(capacity, np.nan)
        self.last_true = np.full(capacity, np.nan)
        self.firing = np.zeros(capacity, dtype=np.bool_)

    def fit(self, capacity: int) -> None:
        n = self.firing.shape[0]
        if capacity <= n:
            return
        self.since = np.concatenate([self.since, np.full(capacity - n, np.nan)])
        self.last_true = np.concatenate([self.last_true, np.full(capacity - n, np.nan)])
        self.firing = np.concatenate([self.firing, np.zeros(capacity - n, dtype=np.bool_)])


class Evaluator:
    """A pure function of (window store, alert state): call `evaluate()` whenever data has arrived."""

    def __init__(self, rules: list[Rule], store: WindowStore) -> None:
        self.store = store
        self.rules_by_type: dict[str, list[Rule]] = {}
        for rule in rules:
            self.rules_by_type.setdefault(rule.appliance, []).append(rule)
        self._used_metrics = {
            appliance: sorted(set().union(*(r.expr.metrics for r in type_rules)))
            for appliance, type_rules in self.rules_by_type.items()
        }
        self._states = {
            rule.rule_id: _AlertState(store.windows[rule.appliance].capacity) for rule in rules
        }
        self.passes = 0
        self.rows_evaluated = 0
        self.last_pass_seconds = 0.0

    def evaluate(self) -> list[AlertTransition]:
        started = time.perf_counter()
        transitions: list[AlertTransition] = []
        for appliance, window in self.store.windows.items():
            rows = window.take_dirty()
            rules = self.rules_by_type.get(appliance)
            if rows.size == 0 or not rules:
                continue
            latest = window.latest[rows]
            columns = {name: latest[:, window.metric_index[name]] for name in self._used_metrics[appliance]}
            ts = window.latest_ts[rows]
            for rule in rules:
                holds = rule.expr.holds(columns)
                transitions.extend(self._step(rule, window, rows, ts, holds, columns))
            self.rows_evaluated += int(rows.size)
        self.passes += 1
        self.last_pass_seconds = time.perf_counter() - started
        return transitions

    def _step(self, rule: Rule, window: TypeWindow, rows: npt.NDArray[np.intp], ts: npt.NDArray[np.float64],
              holds: npt.NDArray[np.bool_], columns: dict[str, npt.NDArray[np.float64]]) -> list[AlertTransition]:
        state = self._states[rule.rule_id]
        state.fit(window.capacity)
        since, last_true, firing = state.since[rows], state.last_true[rows], state.firing[rows]

        starting = holds & np.isnan(since)
        since[starting] = ts[starting]
        last_true[holds] = ts[holds]
        kept = ~holds & firing & (ts - last_true < rule.keep_firing_for_seconds)
        cleared = ~holds & ~kept
        resolving = cleared & firing
        since[cleared] = np.nan
        firing[resolving] = False
        fires = holds & ~firing & (ts - since >= rule.for_seconds)
        firing[fires] = True

        state.since[rows], state.last_true[rows], state.firing[rows] = since, last_true, firing
        out: list[AlertTransition] = []
        if fires.any():
            observed = [(c, c.left(columns), c.right(columns)) for c in rule.expr.comparisons]
            for i in np.flatnonzero(fires):
                observations = tuple(
                    Observation(c.left_text, c.op, float(right[i]), float(left[i])) for c, left, right in observed
                )
                out.append(AlertTransition(rule, window.device_ids[rows[i]], Transition.FIRING,
                                           float(since[i]), float(ts[i]), observations))
        for i in np.flatnonzero(resolving):
            out.append(AlertTransition(rule, window.device_ids[rows[i]], Transition.RESOLVED,
                                       float(ts[i]), float(ts[i])))
        return out

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
        state.last_true[row] = onset_ts
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

    def _rule(self, rule_id: str) -> Rule | None:
        return next((r for rs in self.rules_by_type.values() for r in rs if r.rule_id == rule_id), None)

    def firing_count(self) -> int:
        return sum(int(s.firing.sum()) for s in self._states.values())
