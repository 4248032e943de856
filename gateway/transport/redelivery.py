"""QoS 1 is at least once: a broker that restarts (or loses a PUBACK) sends a message again with its DUP flag
set. A repeat the gateway has already taken in would count twice in a window (a `count` or `changes` rule sees
two samples where the appliance sent one), so repeats are recognised and dropped here.

Only a message flagged DUP can be a repeat, and it is one only if the same topic and payload arrived recently:
a DUP message the gateway never saw (the first delivery was lost) is kept. Memory is bounded: the hashes of the
last RECENT QoS 1 messages.
"""

from __future__ import annotations

from collections import deque

RECENT = 16_384  # QoS 1 messages remembered; a broker resends what was in flight, far fewer than this


class Redeliveries:
    def __init__(self, recent: int = RECENT) -> None:
        self._order: deque[int] = deque()
        self._seen: set[int] = set()
        self._recent = recent
        self.repeats = 0

    def is_repeat(self, topic: str, payload: bytes, qos: int, dup: bool) -> bool:
        """True for a redelivered copy of a message taken in already (count it, drop it)."""
        if qos == 0:
            return False
        key = hash((topic, payload))
        if key in self._seen:
            if dup:
                self.repeats += 1
                return True
            return False  # the appliance sent the very same message again: its own repeat, kept
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > self._recent:
            self._seen.discard(self._order.popleft())
        return False
