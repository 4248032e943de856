"""Samples checked and placed on their device's timeline, waiting to go into the window store together.

A batch from the handoff holds hundreds of messages; appending them type by type in one `append_many` each
costs a few numpy calls per type instead of about ten per sample. A device appears at most once among the
pending samples: its second sample of a batch first sends the pending ones in, so the rules still see each
sample of a device exactly once, in order.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gateway.store.window import TypeWindow


class PendingSamples:
    def __init__(self) -> None:
        self._by_type: dict[str, tuple[TypeWindow, list[int], list[float], list[Mapping[str, float]]]] = {}
        self._rows: set[tuple[str, int]] = set()

    def holds(self, window: TypeWindow, row: int) -> bool:
        return (window.appliance, row) in self._rows

    def add(self, window: TypeWindow, row: int, ts: float, metrics: Mapping[str, float]) -> None:
        pending = self._by_type.get(window.appliance)
        if pending is None:
            pending = self._by_type[window.appliance] = (window, [], [], [])
        pending[1].append(row)
        pending[2].append(ts)
        pending[3].append(metrics)
        self._rows.add((window.appliance, row))

    def write(self) -> None:
        """Every pending sample into its window (a no-op when none is pending)."""
        if not self._rows:
            return
        by_type, self._by_type, self._rows = self._by_type, {}, set()
        for window, rows, ts, samples in by_type.values():
            window.append_many(np.array(rows, dtype=np.intp), np.array(ts, dtype=np.float64), samples)
