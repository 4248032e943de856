"""Columnar ring buffers of recent telemetry, one block per appliance type.

Layout per type: values[device, metric, slot] float32 (NaN = not reported in that sample), ts[device, slot],
plus `latest` (last known value per metric) that the rules read. Rows are handed out as devices appear and the
arrays double when full, so a rule pass is a handful of numpy calls over all dirty devices of a type.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class WindowSnapshot:
    """A copy of one device's recent samples, oldest first (for evidence)."""

    device_id: str
    metric_names: tuple[str, ...]
    ts: npt.NDArray[np.float64]
    values: npt.NDArray[np.float32]  # [metric, sample]

    def between(self, start: float, end: float) -> WindowSnapshot:
        keep = (self.ts >= start) & (self.ts <= end)
        return WindowSnapshot(self.device_id, self.metric_names, self.ts[keep], self.values[:, keep])


CLOCK_BACK_TOLERANCE = 10.0  # seconds a sample may be older than its device's newest and still count as late
CLOCK_BACK_INTERVALS = 3.0  # ... or this many of the device's own intervals, if more


class TypeWindow:
    """All devices of one appliance type."""

    EVENTS_KEPT = 3  # how many recent event times per column (jumps, out-of-range arrivals) are remembered

    def __init__(self, appliance: str, metric_names: tuple[str, ...], slots: int, capacity: int = 64,
                 max_steps: Mapping[str, float] | None = None, event_columns: tuple[str, ...] = (),
                 sporadic: tuple[str, ...] = (), interval: float = 1.0, silence_limit: float = math.inf,
                 max_gap: float = math.inf, parameters: Mapping[str, float] | None = None) -> None:
        """`max_steps`: a change larger than this per reporting `interval` is recorded as a jump; over a longer
        gap between two values the allowance grows with the square root of the gap (a quantity that swings, a
        cycling coil or a shower, covers more ground, though less than linearly since it turns back; a noisy
        sensor's jumps do not grow with the gap, so it still stands out); `event_columns`:
        columns whose every arrival is recorded as an event; `sporadic`: columns reported only when something
        happens, never expected again (not counted as a stale metric); `silence_limit`: the profile's silence
        limit, the most a gap counts for in a device's `typical_gap` (so that an outage does not inflate it);
        `max_gap`: a longer gap between two samples of a device (or five of its own intervals, if it reports
        more slowly) was not observed: durations (`for`, stuck, stale) count observed time only;
        `parameters`: the type's per-device parameters and their defaults (a device's meta may set its own)."""
        self.appliance = appliance
        self.metric_names = metric_names
        self.metric_index = {name: i for i, name in enumerate(metric_names)}
        self.slots = slots
        self.device_ids: list[str] = []
        self.rows: dict[str, int] = {}
        self._index_cache: dict[tuple[str, ...], tuple[npt.NDArray[np.intp], npt.NDArray[np.intp],
                                                        npt.NDArray[np.float64], tuple[int, ...]]] = {}
        self.max_step = np.full(len(metric_names), np.nan)
        for name, step in (max_steps or {}).items():
            self.max_step[self.metric_index[name]] = step
        self._event_columns = {self.metric_index[name] for name in event_columns}
        self.interval = interval
        self.silence_limit = silence_limit
        self.newest_ts = -math.inf  # the newest sample time of any device of the type (a cheap "heard lately")
        self.max_gap = max_gap
        self.periodic_columns = np.array([i for name, i in self.metric_index.items() if name not in sporadic],
                                         dtype=np.intp)
        self.parameter_defaults = dict(parameters or {})
        self.parameter_index = {name: i for i, name in enumerate(self.parameter_defaults)}
        self._allocate(max(capacity, 1))

    def _allocate(self, capacity: int) -> None:
        m, s = len(self.metric_names), self.slots
        self.values = np.full((capacity, m, s), np.nan, dtype=np.float32)
        self.ts = np.full((capacity, s), np.nan, dtype=np.float64)
        self.head = np.zeros(capacity, dtype=np.int64)
        self.latest = np.full((capacity, m), np.nan, dtype=np.float64)
        self.latest_ts = np.full(capacity, np.nan, dtype=np.float64)
        # each device's own reporting interval (a moving average of the gaps between its samples, each capped at
        # the silence limit): a device reporting every 2 minutes is not silent after the profile's 150 s
        self.typical_gap = np.full(capacity, np.nan, dtype=np.float64)
        self.latest_metric_ts = np.full((capacity, m), np.nan, dtype=np.float64)
        # Observed time: each device's clock with its unobserved gaps taken out (sample ts - unobserved), so that
        # a duration never counts time in which nothing was heard (a sensor unchanged across a day's outage is not
        # a stuck sensor; two samples an hour apart do not make a condition hold for an hour)
        self.unobserved = np.zeros(capacity, dtype=np.float64)  # seconds of unobserved gaps so far
        self.changed_observed = np.full((capacity, m), np.nan, dtype=np.float64)  # when each value last changed
        self.reported_observed = np.full((capacity, m), np.nan, dtype=np.float64)  # when each was last reported
        self.online = np.full(capacity, np.nan, dtype=np.float64)  # 1 / 0 from the status topic, NaN unknown
        self.clock_shift = np.zeros(capacity, dtype=np.float64)  # added to a device's ts since its clock went back
        self.event_ts = np.full((capacity, m, self.EVENTS_KEPT), np.nan, dtype=np.float64)  # oldest first
        self.dirty = np.zeros(capacity, dtype=np.bool_)
        self.parameters = np.tile(np.array(list(self.parameter_defaults.values()), dtype=np.float64),
                                  (capacity, 1)).reshape(capacity, len(self.parameter_defaults))

    @property
    def capacity(self) -> int:
        return int(self.head.shape[0])

    def _grow(self) -> None:
        old = self.arrays()
        n = self.capacity
        self._allocate(n * 2)
        for new, previous in zip(self.arrays(), old, strict=True):
            new[:n] = previous

    def arrays(self) -> list[npt.NDArray[Any]]:
        """Every per-device array, for growing them together and for measuring memory."""
        return [self.values, self.ts, self.head, self.latest, self.latest_ts, self.latest_metric_ts,
                self.changed_observed, self.reported_observed, self.unobserved, self.online, self.event_ts, self.dirty,
                self.typical_gap, self.parameters, self.clock_shift]

    def row(self, device_id: str) -> int:
        """The row of a device, allocating one (and growing the arrays) the first time it is seen."""
        row = self.rows.get(device_id)
        if row is None:
            if len(self.device_ids) == self.capacity:
                self._grow()
            row = len(self.device_ids)
            self.device_ids.append(device_id)
            self.rows[device_id] = row
        return row

    def append(self, row: int, ts: float, metrics: Mapping[str, float]) -> None:
        """Write one sample; metrics must all be names of this type (ingest checked them)."""
        slot = int(self.head[row])
        names = tuple(metrics)
        layout = self._index_cache.get(names)
        if layout is None:  # devices of one type send the same metric set, so this is worked out a few times
            layout = self._index_cache[names] = self._layout(names)
        index, step_positions, step_limits, event_columns = layout
        values = np.fromiter(metrics.values(), dtype=np.float64, count=len(names))
        column = self.values[row, :, slot]
        column.fill(np.nan)
        column[index] = values
        self.ts[row, slot] = ts
        self.head[row] = (slot + 1) % self.slots
        if not ts < self.latest_ts[row]:  # NaN-safe: the first sample always counts as newest
            full_gap = ts - self.latest_ts[row]  # NaN for the first sample
            typical = self.typical_gap[row]
            if full_gap > self.longest_observed_gap(typical):
                self.unobserved[row] += full_gap
            gap = min(full_gap, self.silence_limit)
            if gap > 0:  # a duplicate or a burst (gap 0) says nothing about the device's interval
                self.typical_gap[row] = gap if typical != typical else typical + GAP_SMOOTHING * (gap - typical)
            observed = ts - self.unobserved[row]
            latest = self.latest[row]
            previous = latest[index]
            if step_positions.size:
                watched = index[step_positions]
                gap = ts - self.latest_metric_ts[row, watched]  # NaN for a first value: no jump
                allowed = step_limits * np.sqrt(np.maximum(1.0, gap / self.interval))
                moved = np.abs(values[step_positions] - previous[step_positions]) > allowed
                for position in step_positions[moved].tolist():
                    self._record_event(row, int(index[position]), ts)
            for event_column in event_columns:
                self._record_event(row, event_column, ts)
            self.changed_observed[row, index[previous != values]] = observed  # NaN != x: a first value changes
            latest[index] = values
            self.latest_ts[row] = ts
            if ts > self.newest_ts:
                self.newest_ts = ts
            self.latest_metric_ts[row, index] = ts
            self.reported_observed[row, index] = observed
        self.dirty[row] = True

    def on_timeline(self, row: int, ts: float, now: float, latest_allowed: float) -> tuple[float, float]:
        """A sample's time on the device's own timeline, and the shift this sample started (0 if none).

        An appliance whose clock goes back (a reset, a dead RTC battery, the gateway's own clock stepped back so
        that its samples are kept at arrival time) would otherwise stop its rules: a sample older than the
        newest does not move the latest values. A sample more than a few intervals behind the newest therefore
        starts a shift that puts it at the gateway's arrival time (or just after the newest sample, if that is
        later), and every later sample keeps the shift, so the device's own spacing still counts; the shift ends
        once its own clock has caught up with its timeline again, or once it would put a sample beyond
        `latest_allowed` (a batch of old samples sent after newer ones is then stored as late, not moved)."""
        shift = float(self.clock_shift[row])
        newest = float(self.latest_ts[row])
        tolerance = max(CLOCK_BACK_TOLERANCE, CLOCK_BACK_INTERVALS * self._own_interval(row))
        if shift and (ts >= newest - tolerance or ts + shift > latest_allowed):
            shift = 0.0
        started = 0.0
        if ts + shift < newest - tolerance:
            target = max(now, newest)
            if target <= latest_allowed:
                started = target - (ts + shift)
                shift += started
        self.clock_shift[row] = shift
        return ts + shift, started

    def _own_interval(self, row: int) -> float:
        typical = float(self.typical_gap[row])
        return self.interval if typical != typical else typical

    def set_parameters(self, row: int, values: Mapping[str, float]) -> None:
        """A device's own parameter values; those it does not name keep (or return to) the defaults."""
        for name, i in self.parameter_index.items():
            self.parameters[row, i] = values.get(name, self.parameter_defaults[name])

    def observed_gap_limits(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        """longest_observed_gap of many rows at once."""
        typical = self.typical_gap[rows]
        result: npt.NDArray[np.float64] = np.maximum(
            self.max_gap, OWN_INTERVALS * np.where(np.isnan(typical), self.max_gap, typical))
        return result

    def longest_observed_gap(self, typical_gap: float) -> float:
        """The longest gap between two samples that still counts as observed time: `max_gap`, or five of the
        device's own intervals where it reports more slowly; five `max_gap`s before it has shown its interval
        (the same allowance the silence rule makes)."""
        return max(self.max_gap, OWN_INTERVALS * (self.max_gap if typical_gap != typical_gap else typical_gap))

    def _layout(self, names: tuple[str, ...]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp],
                                                         npt.NDArray[np.float64], tuple[int, ...]]:
        """For one metric set: column indexes, which positions are watched for jumps (and their limits), and
        which columns record every arrival as an event."""
        index = np.array([self.metric_index[n] for n in names], dtype=np.intp)
        limits = self.max_step[index]
        watched = np.flatnonzero(np.isfinite(limits))
        events = tuple(int(i) for i in index if int(i) in self._event_columns)
        return index, watched, limits[watched], events

    def _record_event(self, row: int, column: int, ts: float) -> None:
        ring = self.event_ts[row, column]
        ring[:-1] = ring[1:]
        ring[-1] = ts

    def take_dirty(self) -> npt.NDArray[np.intp]:
        """Rows that received data since the last call, and forget them."""
        rows = np.flatnonzero(self.dirty[: len(self.device_ids)])
        self.dirty[rows] = False
        return rows

    def snapshot(self, device_id: str) -> WindowSnapshot:
        row = self.rows[device_id]
        order = np.argsort(self.ts[row], kind="stable")
        order = order[~np.isnan(self.ts[row][order])]
        return WindowSnapshot(device_id, self.metric_names, self.ts[row][order].copy(),
                              self.values[row][:, order].copy())


GAP_SMOOTHING = 0.1  # weight of the newest gap in a device's typical interval
OWN_INTERVALS = 5.0  # a device slower than its profile is silent, and unobserved, after this many of its intervals


class WindowStore:
    """One TypeWindow per appliance type, created from the profiles' metric lists."""

    def __init__(self, metric_names_by_type: Mapping[str, tuple[str, ...]], slots: int | Mapping[str, int],
                 initial_devices: int = 64, max_steps: Mapping[str, Mapping[str, float]] | None = None,
                 event_columns: tuple[str, ...] = (), sporadic: Mapping[str, tuple[str, ...]] | None = None,
                 intervals: Mapping[str, float] | None = None,
                 silence_limits: Mapping[str, float] | None = None,
                 max_gaps: Mapping[str, float] | None = None,
                 parameters: Mapping[str, Mapping[str, float]] | None = None) -> None:
        """`slots` is one size for all types, or a size per type (enough for the longest window its rules read);
        `max_steps` per type and `event_columns` feed the event-time rings (see TypeWindow)."""
        # held by the pipeline thread while it appends (a new device may grow and replace a type's arrays) and
        # by readers on other threads (history, charts) while they copy from the arrays
        self.lock = threading.RLock()
        self.windows = {
            appliance: TypeWindow(appliance, names, slots if isinstance(slots, int) else slots[appliance],
                                  initial_devices, (max_steps or {}).get(appliance),
                                  tuple(c for c in event_columns if c in names), (sporadic or {}).get(appliance, ()),
                                  (intervals or {}).get(appliance, 1.0),
                                  (silence_limits or {}).get(appliance, math.inf),
                                  (max_gaps or {}).get(appliance, math.inf), (parameters or {}).get(appliance))
            for appliance, names in metric_names_by_type.items()
        }

    def window_of(self, device_id: str) -> TypeWindow | None:
        return next((w for w in self.windows.values() if device_id in w.rows), None)

    def snapshot(self, device_id: str) -> WindowSnapshot | None:
        window = self.window_of(device_id)
        return window.snapshot(device_id) if window else None

    def memory_bytes(self) -> int:
        return sum(sum(array.nbytes for array in w.arrays()) for w in self.windows.values())
