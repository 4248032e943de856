"""Hand messages from a network thread to the asyncio loop without one wake-up per message."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class MessageHandoff:
    """Bounded and thread-safe: the producer thread appends, the loop drains everything that is there."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_messages: int,
                 on_overflow: Callable[[int], None] | None = None) -> None:
        self._loop = loop
        self._items: deque[tuple[str, bytes]] = deque()
        self._event = asyncio.Event()
        self._signalled = False
        self._max = max_messages
        self._on_overflow = on_overflow
        self.overflowed = 0

    def put(self, topic: str, payload: bytes) -> None:
        """Called from the network thread."""
        if len(self._items) >= self._max:
            self.overflowed += 1
            if self._on_overflow is not None:
                self._loop.call_soon_threadsafe(self._on_overflow, 1)
            return
        self._items.append((topic, payload))
        if not self._signalled:
            self._signalled = True
            self._loop.call_soon_threadsafe(self._event.set)

    async def drain(self) -> list[tuple[str, bytes]]:
        """Wait for at least one message, then take all that have arrived."""
        await self._event.wait()
        self._event.clear()
        self._signalled = False
        return self.take_nowait()

    def take_nowait(self) -> list[tuple[str, bytes]]:
        """Whatever has arrived, without waiting."""
        items = self._items
        return [items.popleft() for _ in range(len(items))]

    def __len__(self) -> int:
        return len(self._items)
