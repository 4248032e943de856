"""Telemetry and codes of an appliance whose type is not known yet wait here for its meta, a while.

A persistent MQTT session delivers what was queued while the gateway was away before the broker re-sends the
retained `meta` (retained messages come with the new SUBSCRIBE, after the session's queue), so an appliance the
gateway first heard of just before a crash reports again, after the restart, before it says what it is.
Dropping those samples as `unknown_device` would lose the very data the persistent session kept; they wait
instead, bounded per appliance, in all and in time, and are taken in when the meta comes. What waits too long
or overflows is dropped and counted as `unknown_device` after all.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

PER_DEVICE = 256
IN_ALL = 50_000
SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Waiting:
    since: float
    item: Any  # a Sample, or a (DeviceEvent, active) pair: the router knows which


class WaitingForMeta:
    def __init__(self, per_device: int = PER_DEVICE, in_all: int = IN_ALL, seconds: float = SECONDS) -> None:
        self._by_device: OrderedDict[str, deque[Waiting]] = OrderedDict()  # oldest-first appliance order
        self._per_device, self._in_all, self.seconds = per_device, in_all, seconds
        self.count = 0

    def park(self, device_id: str, item: Any, now: float) -> list[tuple[str, int]]:
        """Keep `item` for the appliance; returns (device, count) of what had to make room (dropped)."""
        queue = self._by_device.setdefault(device_id, deque())
        queue.append(Waiting(now, item))
        self.count += 1
        dropped: list[tuple[str, int]] = []
        if len(queue) > self._per_device:
            queue.popleft()
            self.count -= 1
            dropped.append((device_id, 1))
        while self.count > self._in_all:
            oldest, items = next(iter(self._by_device.items()))
            items.popleft()
            self.count -= 1
            dropped.append((oldest, 1))
            if not items:
                del self._by_device[oldest]
        return dropped

    def release(self, device_id: str) -> list[Any]:
        """Everything the appliance's meta was waited for, oldest first."""
        queue = self._by_device.pop(device_id, None)
        if queue is None:
            return []
        self.count -= len(queue)
        return [w.item for w in queue]

    def expire(self, now: float) -> list[tuple[str, int]]:
        """(device, count) of what waited longer than `seconds`."""
        expired: list[tuple[str, int]] = []
        for device_id in list(self._by_device):
            queue = self._by_device[device_id]
            gone = 0
            while queue and now - queue[0].since > self.seconds:
                queue.popleft()
                gone += 1
            if gone:
                self.count -= gone
                expired.append((device_id, gone))
            if not queue:
                del self._by_device[device_id]
        return expired
