"""The gateway database file: the schema, opening it (as the writer or as a read-only reader), and the one
transaction helper every aggregate's rows use."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from gateway.store.schema import SCHEMA, SCHEMA_VERSION, StorageError


def create_private(path: Path) -> None:
    """A database file readable by its owner only (0600): created so before SQLite would (0644 under the usual
    umask), and tightened if an older gateway left it open. It holds tickets and service records. SQLite gives
    its -wal and -shm files the database file's permissions."""
    if str(path) == ":memory:":
        return
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with suppress(FileNotFoundError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


class Connection:
    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        """`read_only`: a reader for queries off the event loop; it never writes, and never waits for a writer."""
        self.path = Path(path)
        if read_only:
            self._open_reader()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_private(self.path)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=5000")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            has_tables = self._conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
            if has_tables and version != SCHEMA_VERSION:
                raise StorageError(f"{self.path} was written by another version of the gateway (schema {version}, "
                                   f"this one uses {SCHEMA_VERSION}); move it aside to start a new one")
            self._conn.executescript(SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open the gateway database {self.path}: {exc}") from exc

    def _open_reader(self) -> None:
        try:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the gateway database {self.path}: {exc}") from exc

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            hint = " (is the disk full, read-only or failing?)" if "disk" in str(exc) else ""
            raise StorageError(f"database {self.path}: {exc}{hint}") from exc
