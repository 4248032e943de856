"""Columnar ring buffers of recent telemetry, one block per appliance type.

Layout per type: values[device, metric, slot] float32 (NaN = not reported in that sample), ts[device, slot],
plus `latest` (last known value per metric) that the rules read. Rows are handed out as devices appear and the
arrays double when full, so a rule pass is a handful of numpy calls over all dirty devices of a type.
"""

from __future__ import annotations

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


class TypeWindow:
    """All devices of one appliance type."""

    def __init__(self, appliance: str, metric_names: tuple[str, ...], slots: int, capacity: int = 64) -> None:
        self.appliance = appliance
        self.metric_names = metric_names
        self.metric_index = {name: i for i, name in enumerate(metric_names)}
        self.slots = slots
        self.device_ids: list[str] = []
        self.rows: dict[str, int] = {}
        self._index_cache: dict[tuple[str, ...], npt.NDArray[np.intp]] = {}
        self._allocate(max(capacity, 1))

    def _allocate(self, capacity: int) -> None:
        m, s = len(self.metric_names), self.slots
        self.values = np.full((capacity, m, s), np.nan, dtype=np.float32)
        self.ts = np.full((capacity, s), np.nan, dtype=np.float64)
        self.head = np.zeros(capacity, dtype=np.int64)
        self.latest = np.full((capacity, m), np.nan, dtype=np.float64)
        self.latest_ts = np.full(capacity, np.nan, dtype=np.float64)
        self.latest_metric_ts = np.full((capacity, m), np.nan, dtype=np.float64)
        self.changed_ts = np.full((capacity, m), np.nan, dtype=np.float64)  # when each value last changed
        self.online = np.full(capacity, np.nan, dtype=np.float64)  # 1 / 0 from the status topic, NaN unknown
        self.dirty = np.zeros(capacity, dtype=np.bool_)

    @property
    def capacity(self) -> int:
        return int(self.head.shape[0])

    def _grow(self) -> None:
        old = self._arrays()
        n = self.capacity
        self._allocate(n * 2)
        for new, previous in zip(self._arrays(), old, strict=True):
            new[:n] = previous

    def _arrays(self) -> list[npt.NDArray[Any]]:
        return [self.values, self.ts, self.head, self.latest, self.latest_ts, self.latest_metric_ts, self.changed_ts,
                self.online, self.dirty]

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
        index = self._index_cache.get(names)
        if index is None:  # devices of one type send the same metric set, so this is computed a few times
            index = self._index_cache[names] = np.array([self.metric_index[n] for n in names], dtype=np.intp)
        values = np.fromiter(metrics.values(), dtype=np.float64, count=len(names))
        column = self.values[row, :, slot]
        column.fill(np.nan)
        column[index] = values
        self.ts[row, slot] = ts
        self.head[row] = (slot + 1) % self.slots
        if not ts < self.latest_ts[row]:  # NaN-safe: the first sample always counts as newest
            changed = index[self.latest[row, index] != values]  # NaN != x: a first value counts as a change
            self.changed_ts[row, changed] = ts
            self.latest[row, index] = values
            self.latest_ts[row] = ts
            self.latest_metric_ts[row, index] = ts
        self.dirty[row] = True

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


class WindowStore:
    """One TypeWindow per appliance type, created from the profiles' metric lists."""

    def __init__(self, metric_names_by_type: Mapping[str, tuple[str, ...]], slots: int | Mapping[str, int],
                 initial_devices: int = 64) -> None:
        """`slots` is one size for all types, or a size per type (enough for the longest window its rules read)."""
        self.windows = {
            appliance: TypeWindow(appliance, names, slots if isinstance(slots, int) else slots[appliance],
                                  initial_devices)
            for appliance, names in metric_names_by_type.items()
        }

    def window_of(self, device_id: str) -> TypeWindow | None:
        return next((w for w in self.windows.values() if device_id in w.rows), None)

    def snapshot(self, device_id: str) -> WindowSnapshot | None:
        window = self.window_of(device_id)
        return window.snapshot(device_id) if window else None

    def device_count(self) -> int:
        return sum(len(w.device_ids) for w in self.windows.values())

    def memory_bytes(self) -> int:
        return sum(w.values.nbytes + w.ts.nbytes + w.latest.nbytes for w in self.windows.values())
