"""Hand messages from the network threads (paho, serial links) to the pipeline thread.

Bounded and thread-safe, without one wake-up per message: producers append under a lock and signal only
when the queue was empty; the pipeline thread takes everything that is there. Messages that do not fit are
counted here, and the pipeline thread reports the count once per batch, not once per message.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class MessageHandoff:
    def __init__(self, max_messages: int) -> None:
        self._items: deque[tuple[str, bytes]] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._max = max_messages
        self.limit = max_messages
        self.overflowed = 0  # messages refused because the queue was full, since the start
        self._first_arrival = 0.0  # monotonic time the oldest queued message arrived
        self.batch_arrived = 0.0  # for the batch `take` returned last: when its oldest message arrived
        self._reported = 0

    def put(self, topic: str, payload: bytes) -> None:
        """Called from a network thread."""
        with self._ready:
            if len(self._items) >= self._max:
                self.overflowed += 1
                return
            self._items.append((topic, payload))
            if len(self._items) == 1:
                self._first_arrival = time.monotonic()
                self._ready.notify()

    def take(self, timeout: float | None = None) -> list[tuple[str, bytes]]:
        """Everything that has arrived; waits up to `timeout` seconds for the first message."""
        with self._ready:
            if not self._items and timeout != 0:
                self._ready.wait(timeout)
            items = list(self._items)
            self._items.clear()
            self.batch_arrived = self._first_arrival
            return items

    def take_overflow(self) -> int:
        """Messages refused since the last call (for one count per batch)."""
        with self._ready:
            new, self._reported = self.overflowed - self._reported, self.overflowed
            return new

    def wake(self) -> None:
        """Wake a waiting `take` (to stop, or to run the time-driven rules on time)."""
        with self._ready:
            self._ready.notify_all()

    def __len__(self) -> int:
        return len(self._items)
