"""Read-only connections to the gateway database, one per worker thread, for the web console's queries.

WAL readers never wait for a writer, and running the queries on worker threads keeps them off the event
loop, so a slow page never delays delivery, the platform webhook or `/api/status`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gateway.store.db import Database

T = TypeVar("T")


class Readers:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Database] = []

    def _reader(self) -> Database:
        reader: Database | None = getattr(self._local, "db", None)
        if reader is None:
            reader = self._local.db = Database(self.path, read_only=True)
            with self._lock:
                self._all.append(reader)
        return reader

    async def run(self, query: Callable[[Database], T]) -> T:
        """Run `query` with this thread pool worker's own reader."""
        return await asyncio.to_thread(lambda: query(self._reader()))

    def close(self) -> None:
        with self._lock:
            for reader in self._all:
                reader.close()
            self._all.clear()
