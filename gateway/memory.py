"""Give the memory freed by one-off peaks back to the system.

The window store's checkpoint copy (as large as the store), a first rule pass over every device's long windows
and a history minute of the whole fleet each allocate and free hundreds of MB. glibc keeps what they freed for
the process: after its first large free it raises its mmap threshold (up to 32 MB), so later large arrays come
from the heap and stay there when freed. At 10,000 appliances that held the gateway at 620-740 MB against the
430-460 MB it needs. A fixed low threshold fixes it but puts every rule-pass temporary through mmap, page
faults and all, which doubled the pass; `malloc_trim` once in a while returns the free pages and costs the pass
nothing. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from functools import cache

log = logging.getLogger(__name__)

RELEASE_EVERY_SECONDS = 30.0  # the checkpoint's period: its copy is the largest peak


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        log.debug("no malloc_trim here (not glibc): freed memory stays with the allocator")
        return None
    return trim


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; whether it could (glibc's malloc_trim)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
