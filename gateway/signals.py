"""Stopping on SIGINT and SIGTERM, in one place for every long-running command."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable


def stop_on_signals(stop: Callable[[], object]) -> None:
    """Call `stop` on SIGINT or SIGTERM, from the running event loop. Where the loop cannot take signal handlers
    (Windows' loops raise NotImplementedError), Ctrl-C still ends the process by KeyboardInterrupt."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop)
