"""Is the broker, or the link to it, falling behind? Told by how late telemetry arrives.

Every stored sample's lag (the gateway's clock at arrival minus the sample's own time) is counted: once a
second the pipeline thread looks at the samples since the last look, and when most of them came more than
`behind_after` seconds late the link is "behind", until almost none are late again; each change is logged
once. Most of them, so that one appliance with a wrong clock moves nothing; since the last look, so that a
backlog delivered in a one-second burst after a stall is seen too. The reported lag is the median of a small
ring of recent samples.
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
        self._late = 0  # of which more than `behind_after` late
        self.lag_seconds = 0.0  # the median lag of the recent samples
        self.behind = False
        self.times_behind = 0
        self.broker_dropped: int | None = None  # as the broker reports it, where it does

    def observe(self, lag: float) -> None:
        """One stored sample's lag (called on the pipeline thread, per sample: keep it cheap)."""
        self._lags[self._next] = lag
        self._next = (self._next + 1) % RING
        self._fresh += 1
        if lag > self.behind_after:
            self._late += 1

    def assess(self, queue_depth: int = 0, queue_limit: int = 0) -> None:
        """Once a second: the median lag, the state, and a log line when the state changes."""
        late = self._late / self._fresh if self._fresh else 0.0
        if self._fresh:
            self.lag_seconds = float(np.nanmedian(self._lags))
        self._fresh = self._late = 0
        backlog = queue_limit > 0 and queue_depth > queue_limit // 2
        if not self.behind and (late > 0.5 or backlog):
            self.behind = True
            self.times_behind += 1
            log.warning("the MQTT link is falling behind: %.0f%% of telemetry arrived more than %.0f s after it was "
                        "sent (median %.1f s), %d messages wait for ingest; point the gateway at a faster broker or "
                        "reduce the load", 100 * late, self.behind_after, self.lag_seconds, queue_depth)
        elif self.behind and late < 0.1 and self.lag_seconds < self.behind_after / 2 and not backlog:
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
