"""Columnar ring buffers of recent telemetry, one block per appliance type.

Layout per type: values[device, metric, slot] float32 (NaN = not reported in that sample), ts[device, slot],
plus `latest` (last known value per metric) that the rules read. A ring's times are float32 seconds after its
device's own `ring_base` (read them with `ring_times`), half the memory of absolute float64 times. Rows are
handed out as devices appear and the arrays grow by a quarter when full, so a rule pass is a handful of numpy
calls over all dirty devices of a type. A ring is sized for the type's reporting interval; a device reporting
faster has its samples merged to that rate (`_slots_to_write`), so its windows span the same time.

Two tiers keep the store small. The ring of every column spans what the rules read of all of them: the evidence
before a fault's onset and the short windows. A column some rule reads over a longer window (an air conditioner's
compressor flag over 15 minutes, a fridge's temperatures over 30) has a long ring of its own as well, so the other
columns are not kept that long for it. A rule whose `for` outlasts the ring has its devices' samples recorded from
onset to detection (`record`), for its ticket's evidence: only the few devices with such a rule pending pay for it.
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


SECONDS_BEFORE_ONSET = 300.0  # how far before a fault's onset its ticket's evidence reaches
SPAN_MARGIN = 1.25  # a ring holds a quarter more slots than its span needs at the profile's interval (jitter)
# A sample's time is held to 1/TIME_GRID s (under a millisecond: a ticket's times, rounded to the millisecond,
# are still the appliance's own), everywhere in the window, so that a ring's float32 offsets hold it exactly:
# an offset under 2**14 s on that grid fits float32's 24-bit significand. A device's ring times are offsets
# from its base, which moves on to its newest sample's second once that is REBASE_SECONDS past it, so every
# sample of the last 3 hours is exact (windows and a ticket's evidence end at the newest); one a day old, to 4 ms.
TIME_GRID = 1024.0
REBASE_SECONDS = 4096.0


def on_time_grid(ts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Times as the window holds them, to 1/TIME_GRID s (exact: the grid is a power of two)."""
    grid: npt.NDArray[np.float64] = np.rint(np.asarray(ts, dtype=np.float64) * TIME_GRID) / TIME_GRID
    return grid


def slots_spanning(seconds: float, interval: float) -> int:
    """The slots a span of `seconds` can cover at one sample per `interval`, jitter included."""
    return int(seconds / interval * SPAN_MARGIN) + 2


@dataclass(frozen=True)
class RingLayout:
    """How much one appliance type keeps (see gateway/store/window.py): `slots` of every column, and the
    columns read over longer windows in a long ring of `long_slots`."""

    slots: int
    long_columns: tuple[str, ...] = ()
    long_slots: int = 0


GROW_ROWS = 64  # the fewest rows a type's arrays grow by
_NO_ROWS = np.zeros(0, dtype=np.intp)
CLOCK_BACK_TOLERANCE = 10.0  # seconds a sample may be older than its device's newest and still count as late
CLOCK_BACK_INTERVALS = 3.0  # ... or this many of the device's own intervals, if more


class TypeWindow:
    """All devices of one appliance type."""

    EVENTS_KEPT = 3  # how many recent event times per column (jumps, out-of-range arrivals) are remembered

    def __init__(self, appliance: str, metric_names: tuple[str, ...], slots: int, capacity: int = 64,
                 max_steps: Mapping[str, float] | None = None, event_columns: tuple[str, ...] = (),
                 sporadic: tuple[str, ...] = (), interval: float = 1.0, silence_limit: float = math.inf,
                 max_gap: float = math.inf, parameters: Mapping[str, float] | None = None,
                 long_columns: tuple[str, ...] = (), long_slots: int = 0) -> None:
        """`max_steps`: a change larger than this per reporting `interval` is recorded as a jump; over a longer
        gap between two values the allowance grows with the square root of the gap (a quantity that swings, a
        cycling coil or a shower, covers more ground, though less than linearly since it turns back; a noisy
        sensor's jumps do not grow with the gap, so it still stands out); `event_columns`:
        columns whose every arrival is recorded as an event; `sporadic`: columns reported only when something
        happens, never expected again (not counted as a stale metric); `silence_limit`: the profile's silence
        limit, the most a gap counts for in a device's `typical_gap` (so that an outage does not inflate it);
        `max_gap`: a longer gap between two samples of a device (or five of its own intervals, if it reports
        more slowly) was not observed: durations (`for`, stuck, stale) count observed time only;
        `parameters`: the type's per-device parameters and their defaults (a device's meta may set its own);
        `long_columns`: columns also kept in a long ring of `long_slots` (for the windows longer than `slots`)."""
        self.appliance = appliance
        self.metric_names = metric_names
        self.metric_index = {name: i for i, name in enumerate(metric_names)}
        self.slots = slots
        self.device_ids: list[str] = []
        self.rows: dict[str, int] = {}
        self._columns: dict[tuple[str, ...], npt.NDArray[np.intp]] = {}  # a metric set's column indexes
        self.max_step = np.full(len(metric_names), np.nan)
        for name, step in (max_steps or {}).items():
            self.max_step[self.metric_index[name]] = step
        self._watched = np.flatnonzero(np.isfinite(self.max_step))  # columns watched for jumps
        self._event_columns = tuple(sorted(self.metric_index[name] for name in event_columns))
        self.interval = interval
        self.silence_limit = silence_limit
        self.newest_ts = -math.inf  # the newest sample time of any device of the type (a cheap "heard lately")
        self.max_gap = max_gap
        self.periodic_columns = np.array([i for name, i in self.metric_index.items() if name not in sporadic],
                                         dtype=np.intp)
        self.parameter_defaults = dict(parameters or {})
        self.parameter_index = {name: i for i, name in enumerate(self.parameter_defaults)}
        self._any_dirty = False  # whether any row may be dirty (mark_dirty), so a pass can skip the type
        self.long_slots = long_slots if long_columns else 0
        self.long_names = tuple(long_columns) if self.long_slots else ()
        self.long_index = {name: i for i, name in enumerate(self.long_names)}
        self.long_positions = np.array([self.metric_index[n] for n in self.long_names], dtype=np.intp)
        self._recordings: dict[int, _Recording] = {}  # row -> its samples since a long `for` became pending
        self._recorded_rows = _NO_ROWS  # the keys of _recordings, as an array for np.isin
        self._allocate(max(capacity, 1))

    def _allocate(self, capacity: int) -> None:
        """The rings (nearly all of the memory) are left unwritten, and a row's are cleared when a device takes
        it (`row`): a page the process never wrote is not in its RSS, so the rows held for growth (up to a
        quarter, see `_grow`) cost address space, not memory. The small per-device arrays are filled here."""
        m, s = len(self.metric_names), self.slots
        self.values = np.empty((capacity, m, s), dtype=np.float32)
        self.ts = np.empty((capacity, s), dtype=np.float32)  # seconds after ring_base (see REBASE_SECONDS)
        self.head = np.zeros(capacity, dtype=np.int64)
        self.ring_base = np.full(capacity, np.nan, dtype=np.float64)  # NaN until the device's first sample
        self.long_values = np.empty((capacity, len(self.long_names), self.long_slots), dtype=np.float32)
        self.long_ts = np.empty((capacity, self.long_slots), dtype=np.float32)
        self.long_head = np.zeros(capacity, dtype=np.int64)
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
        """A quarter more rows (at least GROW_ROWS): doubling left up to half of a large store unused (9,000
        air conditioners held 16,384 rows of about 100 KB each) and needed three times the final size while
        it copied; a quarter bounds both at 25 %, for a few more copies while a fleet first appears."""
        old = self.arrays()
        n = self.capacity
        self._allocate(n + max(GROW_ROWS, n // 4))
        for new, previous in zip(self.arrays(), old, strict=True):
            new[:n] = previous

    def arrays(self) -> list[npt.NDArray[Any]]:
        """Every per-device array, for growing them together and for measuring memory."""
        return [self.values, self.ts, self.head, self.long_values, self.long_ts, self.long_head, self.latest,
                self.latest_ts, self.latest_metric_ts,
                self.changed_observed, self.reported_observed, self.unobserved, self.online, self.event_ts, self.dirty,
                self.typical_gap, self.parameters, self.clock_shift, self.ring_base]

    def rings(self) -> tuple[npt.NDArray[Any], ...]:
        """The sample rings, unwritten until a device takes its row (`_allocate`)."""
        return self.values, self.ts, self.long_values, self.long_ts

    def row(self, device_id: str) -> int:
        """The row of a device, allocating one (and growing the arrays) the first time it is seen."""
        row = self.rows.get(device_id)
        if row is None:
            if len(self.device_ids) == self.capacity:
                self._grow()
            row = len(self.device_ids)
            for ring in self.rings():
                ring[row] = np.nan
            self.device_ids.append(device_id)
            self.rows[device_id] = row
        return row

    def append(self, row: int, ts: float, metrics: Mapping[str, float]) -> None:
        """Write one sample; metrics must all be names of this type (ingest checked them)."""
        self.append_many(np.array([row], dtype=np.intp), np.array([ts], dtype=np.float64), [metrics])

    def append_many(self, rows: npt.NDArray[np.intp], ts: npt.NDArray[np.float64],
                    samples: list[Mapping[str, float]]) -> None:
        """Write one sample for each of `rows` (each row at most once: a device's second sample waits for the
        rule pass over its first), in a few numpy calls for the whole batch whatever its size. Samples of one
        type mostly name the same metrics, so the values go in one block per metric set."""
        ts = on_time_grid(ts)
        values, present = self._matrix(samples)
        offsets = self._offsets(rows, ts)
        slots, merged = self._slots_to_write(rows, offsets)
        if merged is not None:  # what a merged sample did not report stays as its slot had it
            self.values[rows, :, slots] = np.where(merged[:, None] & ~present, self.values[rows, :, slots], values)
        else:
            self.values[rows, :, slots] = values
        self.ts[rows, slots] = offsets
        self.head[rows] = (slots + 1) % self.slots  # a merged sample's slot is the newest: the head stays
        if self.long_slots:
            self._write_long(rows, offsets, values, present, merged)
        if self._recordings:
            self._record_written(rows, ts, slots, merged)
        self.mark_dirty(rows)
        newest = ~(ts < self.latest_ts[rows])  # NaN-safe: a device's first sample always counts as newest
        if not newest.all():  # a late sample fills its slot but moves nothing the rules read as latest
            rows, ts, values, present = rows[newest], ts[newest], values[newest], present[newest]
        if not rows.size:
            return
        full_gap = ts - self.latest_ts[rows]  # NaN for a first sample
        typical = self.typical_gap[rows]
        self.unobserved[rows] += np.where(full_gap > self.observed_gap_limits(rows), full_gap, 0.0)
        gap = np.minimum(full_gap, self.silence_limit)
        spaced = gap > 0  # a duplicate or a burst (gap 0) says nothing about the device's interval
        self.typical_gap[rows[spaced]] = np.where(np.isnan(typical[spaced]), gap[spaced],
                                                  typical[spaced] + GAP_SMOOTHING * (gap[spaced] - typical[spaced]))
        observed = ts - self.unobserved[rows]
        latest = self.latest[rows]
        self._record_jumps(rows, ts, values, present, latest)
        for column in self._event_columns:
            for position in np.flatnonzero(present[:, column]).tolist():
                self._record_event(int(rows[position]), column, float(ts[position]))
        _set_where(self.changed_observed, rows, present & (latest != values), observed)  # NaN != x: a first
        np.copyto(latest, values, where=present)                                          # value changes
        self.latest[rows] = latest
        self.latest_ts[rows] = ts
        self.newest_ts = max(self.newest_ts, float(ts.max()))
        _set_where(self.latest_metric_ts, rows, present, ts)
        _set_where(self.reported_observed, rows, present, observed)

    def _offsets(self, rows: npt.NDArray[np.intp], ts: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        """The samples' times as offsets from their devices' bases, after moving on the base of each device
        whose sample is REBASE_SECONDS or more past it (or that has none yet) to that sample's second. A late
        sample never moves a base back: it is only held a little less precisely."""
        base = self.ring_base[rows]
        moving = ~(ts - base < REBASE_SECONDS)  # NaN-safe: a device's first sample sets its base
        if moving.any():
            moved, bases = rows[moving], np.floor(ts[moving])
            shift = (bases - self.ring_base[moved])[:, None]  # NaN for a first base: its rings are empty anyway
            self.ts[moved] = self.ts[moved] - shift
            if self.long_slots:
                self.long_ts[moved] = self.long_ts[moved] - shift
            self.ring_base[moved] = bases
            base = self.ring_base[rows]
        offsets: npt.NDArray[np.float32] = (ts - base).astype(np.float32)
        return offsets

    def ring_times(self, rows: npt.NDArray[np.intp] | int, stored: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Times read from `ts` or `long_ts` (whole rows or slots gathered from them, one row of `stored` per
        row of `rows`; for one row, its slots) as seconds: each offset plus its device's base."""
        base = np.asarray(self.ring_base[rows])
        times: npt.NDArray[np.float64] = stored.astype(np.float64)
        times += base.reshape(base.shape + (1,) * (stored.ndim - base.ndim))
        return times

    def _slots_to_write(self, rows: npt.NDArray[np.intp], ts: npt.NDArray[np.float32],
                        ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_] | None]:
        """Each sample's slot: the next one, or the newest again for a device that reports faster than the ring
        was sized for (its typical gap under FAST_BELOW of the interval) while the newest slot is less than
        an interval past the one before: a washer every 0.5 s against a 2 s profile filled the ring
        four times as fast, and its 30-minute windows held 9 minutes. Its slots then stand about an interval
        apart, each with the newest value of each metric and its time; latest values, events and jumps still
        see every sample. Devices at their profile's rate, jitter and all, never merge (`merged`
        is None when no sample of the batch did). `ts`: the samples' offsets from their devices' bases."""
        slots = self.head[rows]
        fast = self.typical_gap[rows] < FAST_BELOW * self.interval
        if not fast.any():
            return slots, None
        newest, before = (slots - 1) % self.slots, (slots - 2) % self.slots
        # NaN before a device's second slot: never merged; a late sample never merges into a newer slot
        newest_ts = self.ts[rows, newest]
        merged = fast & (ts >= newest_ts) & (newest_ts - self.ts[rows, before] < self.interval)
        return np.where(merged, newest, slots), merged

    def _write_long(self, rows: npt.NDArray[np.intp], offsets: npt.NDArray[np.float32], values: npt.NDArray[np.float64],
                    present: npt.NDArray[np.bool_], merged: npt.NDArray[np.bool_] | None) -> None:
        """The long ring takes every sample the ring takes, and merges those it merges: its newest slot holds
        the same sample as the ring's newest."""
        columns = self.long_positions
        head = self.long_head[rows]
        if merged is None:
            slots = head
            self.long_values[rows, :, slots] = values[:, columns]
        else:
            slots = np.where(merged, (head - 1) % self.long_slots, head)
            kept = merged[:, None] & ~present[:, columns]
            self.long_values[rows, :, slots] = np.where(kept, self.long_values[rows, :, slots], values[:, columns])
        self.long_ts[rows, slots] = offsets
        self.long_head[rows] = (slots + 1) % self.long_slots

    def holds_evidence_for(self, for_seconds: float) -> bool:
        """Whether the ring spans the evidence of a rule with this `for`: from SECONDS_BEFORE_ONSET before its
        onset to its detection. If not, its devices are recorded while it is pending."""
        return slots_spanning(SECONDS_BEFORE_ONSET + for_seconds, self.interval) <= self.slots

    def record(self, rows: npt.NDArray[np.intp]) -> None:
        """Keep every sample of these rows from now on as well as the ring's (a copy of it to start with), until
        `stop_recording`: the evidence of a rule whose `for` outlasts the ring reaches back to its onset."""
        started = False
        for row in rows.tolist():
            if row not in self._recordings:  # the ring in the order it took its samples: the newest is last
                order = (self.head[row] + np.arange(self.slots)) % self.slots
                order = order[~np.isnan(self.ts[row, order])]
                self._recordings[row] = _Recording(self.ring_times(row, self.ts[row, order]),
                                                   self.values[row][:, order])
                started = True
        if started:
            self._recorded_rows = np.array(sorted(self._recordings), dtype=np.intp)

    def recorded_rows(self) -> npt.NDArray[np.intp]:
        return self._recorded_rows

    def stop_recording(self, rows: npt.NDArray[np.intp]) -> None:
        for row in rows.tolist():
            self._recordings.pop(row, None)
        self._recorded_rows = np.array(sorted(self._recordings), dtype=np.intp)

    def recordings_state(self, first: int = 0, end: int | None = None) -> dict[str, npt.NDArray[Any]]:
        """The recordings of rows first..end-1 (all by default) in a few flat arrays, for a checkpoint: the rows,
        each one's sample count, and their samples end to end (`restore_recordings` takes them back); empty
        without recordings there."""
        rows = [row for row in sorted(self._recordings) if first <= row and (end is None or row < end)]
        if not rows:
            return {}
        kept = [self._recordings[row] for row in rows]
        return {"rows": np.array(rows, dtype=np.intp),
                "counts": np.array([r.count for r in kept], dtype=np.intp),
                "ts": np.concatenate([r.ts[:r.count] for r in kept]),
                "values": np.concatenate([r.values[:, :r.count] for r in kept], axis=1)}

    def restore_recordings(self, state: Mapping[str, npt.NDArray[Any]], rows: npt.NDArray[np.intp]) -> None:
        """Put back recordings from `recordings_state`, a saved row r now being `rows[r]`: after a restart a
        pending rule's evidence still reaches back to its onset, not only to what the ring holds."""
        ends = np.cumsum(state["counts"])
        for row, end, count in zip(rows[state["rows"]].tolist(), ends.tolist(), state["counts"].tolist(), strict=True):
            self._recordings[row] = _Recording(state["ts"][end - count:end], state["values"][:, end - count:end])
        self._recorded_rows = np.array(sorted(self._recordings), dtype=np.intp)

    def _record_written(self, rows: npt.NDArray[np.intp], ts: npt.NDArray[np.float64], slots: npt.NDArray[np.intp],
                        merged: npt.NDArray[np.bool_] | None) -> None:
        """What the ring just took for the recorded rows, as it took it (a merged sample replaces the newest)."""
        for position in np.flatnonzero(np.isin(rows, self._recorded_rows)).tolist():
            row, slot = int(rows[position]), int(slots[position])
            self._recordings[row].add(float(ts[position]), self.values[row, :, slot],
                                      merged is not None and bool(merged[position]))

    def _matrix(self, samples: list[Mapping[str, float]]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """The samples as [sample, metric] values (NaN where not reported) and which of them were reported."""
        values = np.full((len(samples), len(self.metric_names)), np.nan, dtype=np.float64)
        present = np.zeros(values.shape, dtype=np.bool_)
        groups: dict[tuple[str, ...], list[int]] = {}
        for position, metrics in enumerate(samples):
            groups.setdefault(tuple(metrics), []).append(position)
        for names, positions in groups.items():
            index = self._columns.get(names)
            if index is None:  # devices of one type send the same metric set, so this is worked out a few times
                index = self._columns[names] = np.array([self.metric_index[n] for n in names], dtype=np.intp)
            block = np.array([list(samples[p].values()) for p in positions], dtype=np.float64)
            where = np.array(positions, dtype=np.intp)[:, None]
            values[where, index] = block
            present[where, index] = True
        return values, present

    def _record_jumps(self, rows: npt.NDArray[np.intp], ts: npt.NDArray[np.float64],
                      values: npt.NDArray[np.float64], present: npt.NDArray[np.bool_],
                      latest: npt.NDArray[np.float64]) -> None:
        """A jump is a change larger than the column's max_step allows over the gap since its last value."""
        watched = self._watched
        if not watched.size:
            return
        gap = ts[:, None] - self.latest_metric_ts[rows][:, watched]  # NaN for a first value: no jump
        allowed = self.max_step[watched] * np.sqrt(np.maximum(1.0, gap / self.interval))
        moved = present[:, watched] & (np.abs(values[:, watched] - latest[:, watched]) > allowed)
        for position, column in zip(*np.nonzero(moved), strict=True):
            self._record_event(int(rows[position]), int(watched[column]), float(ts[position]))

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
        if not shift and not ts < newest - CLOCK_BACK_TOLERANCE:  # the usual case (NaN-safe: a first sample)
            return ts, 0.0
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
        """Per row, the longest gap between two samples that still counts as observed time: `max_gap`, or five
        of the device's own intervals where it reports more slowly; five `max_gap`s before it has shown its
        interval (the same allowance the silence rule makes)."""
        typical = self.typical_gap[rows]
        result: npt.NDArray[np.float64] = np.maximum(
            self.max_gap, OWN_INTERVALS * np.where(np.isnan(typical), self.max_gap, typical))
        return result

    def _record_event(self, row: int, column: int, ts: float) -> None:
        ring = self.event_ts[row, column]
        ring[:-1] = ring[1:]
        ring[-1] = ts

    def memory_bytes(self) -> int:
        recorded = sum(r.ts.nbytes + r.values.nbytes for r in self._recordings.values())
        return sum(array.nbytes for array in self.arrays()) + recorded

    def mark_dirty(self, rows: npt.NDArray[np.intp]) -> None:
        """These rows have data the rules have not seen."""
        self.dirty[rows] = True
        self._any_dirty = True

    def take_dirty(self) -> npt.NDArray[np.intp]:
        """Rows that received data since the last call, and forget them. A rule pass asks every type; most
        got nothing since the last pass, and answer without looking at their rows."""
        if not self._any_dirty:
            return _NO_ROWS
        self._any_dirty = False
        rows = np.flatnonzero(self.dirty[: len(self.device_ids)])
        self.dirty[rows] = False
        return rows

    def snapshot(self, device_id: str) -> WindowSnapshot:
        """The device's samples, oldest first: its recording where it has one (which holds what the ring holds
        and what the ring has since let go), otherwise the ring's."""
        row = self.rows[device_id]
        recording = self._recordings.get(row)
        ts, values = recording.samples() if recording is not None else self._ring_samples(row)
        return WindowSnapshot(device_id, self.metric_names, ts, values)

    def _ring_samples(self, row: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
        ts = self.ring_times(row, self.ts[row])
        order = np.argsort(ts, kind="stable")
        order = order[~np.isnan(ts[order])]
        return ts[order], self.values[row][:, order]


class _Recording:
    """One device's samples in the order the ring took them, in arrays that grow by half."""

    def __init__(self, ts: npt.NDArray[np.float64], values: npt.NDArray[np.float32]) -> None:
        self.count = ts.size
        capacity = max(16, self.count * 3 // 2)
        self.ts = np.full(capacity, np.nan)
        self.ts[:self.count] = ts
        self.values = np.full((values.shape[0], capacity), np.nan, dtype=np.float32)
        self.values[:, :self.count] = values

    def add(self, ts: float, values: npt.NDArray[np.float32], merged: bool) -> None:
        if merged and self.count:
            self.count -= 1
        if self.count == self.ts.size:
            grown = self.count * 3 // 2
            self.ts = np.concatenate([self.ts, np.full(grown - self.count, np.nan)])
            self.values = np.concatenate([self.values, np.full((self.values.shape[0], grown - self.count), np.nan,
                                                               dtype=np.float32)], axis=1)
        self.ts[self.count] = ts
        self.values[:, self.count] = values
        self.count += 1

    def samples(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
        order = np.argsort(self.ts[:self.count], kind="stable")
        return self.ts[order], self.values[:, order]


def _set_where(array: npt.NDArray[np.float64], rows: npt.NDArray[np.intp], where: npt.NDArray[np.bool_],
               per_row: npt.NDArray[np.float64]) -> None:
    """array[rows[i], j] = per_row[i] where where[i, j] (rows distinct)."""
    block = array[rows]
    np.copyto(block, per_row[:, None], where=where)
    array[rows] = block


GAP_SMOOTHING = 0.1  # weight of the newest gap in a device's typical interval
FAST_BELOW = 1 / SPAN_MARGIN  # a device whose gaps are shorter fills its ring faster than it was sized for
OWN_INTERVALS = 5.0  # a device slower than its profile is silent, and unobserved, after this many of its intervals


class WindowStore:
    """One TypeWindow per appliance type, created from the profiles' metric lists."""

    def __init__(self, metric_names_by_type: Mapping[str, tuple[str, ...]], slots: int | Mapping[str, int],
                 initial_devices: int = 64, max_steps: Mapping[str, Mapping[str, float]] | None = None,
                 event_columns: tuple[str, ...] = (), sporadic: Mapping[str, tuple[str, ...]] | None = None,
                 intervals: Mapping[str, float] | None = None,
                 silence_limits: Mapping[str, float] | None = None,
                 max_gaps: Mapping[str, float] | None = None,
                 parameters: Mapping[str, Mapping[str, float]] | None = None,
                 long_rings: Mapping[str, tuple[tuple[str, ...], int]] | None = None) -> None:
        """`slots` is one size for all types, or a size per type (enough for the evidence and the short windows
        its rules read); `long_rings` per type: the columns read over longer windows, and their ring's size;
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
                                  (max_gaps or {}).get(appliance, math.inf), (parameters or {}).get(appliance),
                                  *(long_rings or {}).get(appliance, ((), 0)))
            for appliance, names in metric_names_by_type.items()
        }

    def window_of(self, device_id: str) -> TypeWindow | None:
        return next((w for w in self.windows.values() if device_id in w.rows), None)

    def snapshot(self, device_id: str) -> WindowSnapshot | None:
        window = self.window_of(device_id)
        return window.snapshot(device_id) if window else None

    def memory_bytes(self) -> int:
        return sum(w.memory_bytes() for w in self.windows.values())
