"""Is the broker, or the link to it, falling behind? Told by how late telemetry arrives.

Every stored sample leaves its lag (the gateway's clock at arrival minus the sample's own time) in a small
ring; once a second the pipeline thread takes the median. A median, so that one appliance with a wrong clock
moves nothing; a ring of recent samples, so that a backlog shows within seconds. Past `behind_after` seconds
the link is "behind" until the median falls below half of that again, and each change is logged once.
Brokers that report their own drops ($SYS/broker/publish/messages/dropped on mosquitto) add that count.
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger("gateway.mqtt")

RING = 256
BEHIND_AFTER_SECONDS = 5.0


class LinkHealth:
    def __init__(self, behind_after: float = BEHIND_AFTER_SECONDS) -> None:
        self.behind_after = behind_after
        self._lags = np.full(RING, np.nan)
        self._next = 0
        self._fresh = 0  # samples since the last assessment
        self.lag_seconds = 0.0  # the median lag of the recent samples
        self.behind = False
        self.times_behind = 0
        self.broker_dropped: int | None = None  # as the broker reports it, where it does

    def observe(self, lag: float) -> None:
        """One stored sample's lag (called on the pipeline thread, per sample: keep it cheap)."""
        self._lags[self._next] = lag
        self._next = (self._next + 1) % RING
        self._fresh += 1

    def assess(self, queue_depth: int = 0, queue_limit: int = 0) -> None:
        """Once a second: the median lag, the state, and a log line when the state changes."""
        if self._fresh:
            self.lag_seconds = float(np.nanmedian(self._lags))
            self._fresh = 0
        backlog = queue_limit > 0 and queue_depth > queue_limit // 2
        if not self.behind and (self.lag_seconds > self.behind_after or backlog):
            self.behind = True
            self.times_behind += 1
            log.warning("the MQTT link is falling behind: telemetry arrives %.1f s after it was sent (median), "
                        "%d messages wait for ingest; point the gateway at a faster broker or reduce the load",
                        self.lag_seconds, queue_depth)
        elif self.behind and self.lag_seconds < self.behind_after / 2 and not backlog:
            self.behind = False
            log.info("the MQTT link caught up: telemetry arrives %.1f s after it was sent", self.lag_seconds)

    def broker_reports_dropped(self, count: int) -> None:
        if self.broker_dropped is not None and count > self.broker_dropped:
            log.warning("the MQTT broker reports %d more dropped messages (%d in all)", count - self.broker_dropped,
                        count)
        self.broker_dropped = count

    def snapshot(self) -> dict[str, object]:
        lag = self.lag_seconds if math.isfinite(self.lag_seconds) else 0.0
        return {"state": "behind" if self.behind else "ok", "lag_seconds": round(lag, 3),
                "times_behind": self.times_behind, "broker_dropped": self.broker_dropped}
