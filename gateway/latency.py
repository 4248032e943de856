"""Latency histograms the gateway keeps for its operators (rule pass, ingest to decision, decision to delivery).

Each is a fixed set of bucket counts, a sum and a count: `observe` is a bisect and three additions, cheap
enough for every rule pass. Each histogram is written by one thread only (the pipeline thread, or the event
loop); readers (the /metrics page) read plain ints and floats, so they may see one observation in flight, never
a torn value. Exposed by gateway/web/metrics.py in the Prometheus histogram form.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

# seconds: from a tenth of a millisecond (a rule pass) to minutes (a ticket waiting for its group, retries)
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SLOW_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Histogram:
    def __init__(self, help_text: str, buckets: tuple[float, ...]) -> None:
        self.help_text = help_text
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)  # the last one: above the largest bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        """Cumulative counts per upper bound (Prometheus `le`), as JSON for /api/status."""
        cumulative, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            cumulative.append(["+Inf" if bound == float("inf") else bound, running])
        return {"help": self.help_text, "buckets": cumulative, "sum": self.sum, "count": running}
