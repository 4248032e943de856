"""The shared shape of every UART dialect's incremental decoder.

`feed(bytes) -> frames`: partial input waits for more, garbage before a frame start is skipped and counted,
a frame that fails its checksum or CRC is counted by reason and the search resumes one byte after its
start (so a real frame hidden inside garbage is still found), and the buffer never exceeds its cap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import Generic, TypeVar

FrameT = TypeVar("FrameT")


class FrameError(Exception):
    """A frame that cannot be accepted; `reason` is the counter it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class NeedMore:
    """The buffer holds the start of a frame but not all of it."""


NEED_MORE = NeedMore()


class StreamDecoder(ABC, Generic[FrameT]):
    """Subclasses say where a frame may start and how to take one from the front of the buffer."""

    start_marker: bytes = b""

    def __init__(self, max_buffer: int = 4096) -> None:
        self._buffer = bytearray()
        self.max_buffer = max_buffer
        self.counters: Counter[str] = Counter()

    def feed(self, data: bytes) -> list[FrameT]:
        self._buffer += data
        frames: list[FrameT] = []
        while self._buffer:
            start = self._buffer.find(self.start_marker)
            if start < 0:
                keep = len(self.start_marker) - 1  # the marker's first bytes may be at the very end
                dropped = len(self._buffer) - keep
                if dropped > 0:
                    self._discard(dropped)
                break
            if start > 0:
                self._discard(start)
            try:
                taken = self.take_frame(self._buffer)
            except FrameError as error:
                self.counters[error.reason] += 1
                self.counters["resyncs"] += 1
                del self._buffer[:1]
                continue
            if isinstance(taken, NeedMore):
                break
            frame, consumed = taken
            del self._buffer[:consumed]
            self.counters["frames"] += 1
            frames.append(frame)
        if len(self._buffer) > self.max_buffer:
            self.counters["buffer_overflows"] += 1
            self._discard(len(self._buffer) - self.max_buffer)
        return frames

    def _discard(self, count: int) -> None:
        self.counters["garbage_bytes"] += count
        del self._buffer[:count]

    @abstractmethod
    def take_frame(self, buffer: bytearray) -> tuple[FrameT, int] | NeedMore:
        """Parse the frame at buffer[0] (which starts with the marker): (frame, bytes used), NEED_MORE, or raise."""

    @property
    def buffered(self) -> int:
        return len(self._buffer)
