"""Count what was dropped and why; log each (device, reason) once so a chatty broken device cannot flood logs."""

from __future__ import annotations

import logging
from collections import Counter

from gateway.protocol.payload import DropReason

log = logging.getLogger("gateway.ingest")

NO_DEVICE = "-"


# reasons counted here although the input was kept (corrected), so that /api/status shows them beside the drops
KEPT = frozenset({DropReason.TS_RESTAMPED, DropReason.CLOCK_WENT_BACK})


class DropCounter:
    def __init__(self, max_logged_pairs: int = 10_000) -> None:
        self.by_reason: Counter[DropReason] = Counter()
        self.by_device: Counter[tuple[str, DropReason]] = Counter()
        self._logged: set[tuple[str, DropReason]] = set()
        self._first_detail: dict[DropReason, str] = {}
        self._max_logged = max_logged_pairs

    def drop(self, device_id: str | None, reason: DropReason, detail: str, count: int = 1) -> None:
        key = (device_id or NO_DEVICE, reason)
        self.by_reason[reason] += count
        self._first_detail.setdefault(reason, f"{key[0]}: {detail}")
        if len(self.by_device) < self._max_logged or key in self.by_device:
            self.by_device[key] += count
        if key not in self._logged and len(self._logged) < self._max_logged:
            self._logged.add(key)
            what = "corrected input" if reason in KEPT else "dropped input"
            log.warning("%s from %s: %s (%s); further ones of this kind are only counted", what, key[0],
                        reason.value, detail)

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def as_dict(self) -> dict[str, int]:
        return {reason.value: n for reason, n in sorted(self.by_reason.items())}

    def details(self) -> dict[str, str]:
        """The first drop of each reason, with its device and detail (for a replay's summary)."""
        return {reason.value: text for reason, text in sorted(self._first_detail.items())}
