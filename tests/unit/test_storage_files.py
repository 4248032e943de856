"""The gateway's SQLite files are its owner's alone: tickets, service records and visit codes are in them."""

from __future__ import annotations

import stat
from pathlib import Path

from gateway.store.db import Database
from gateway.store.history import History
from gateway.store.window import WindowStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_files_are_created_private_and_older_open_ones_are_tightened(tmp_path: Path) -> None:
    """gateway.db was created 0644 (world-readable)."""
    db = Database(tmp_path / "gateway.db")
    db.outbox_counts()
    history = History(tmp_path / "history.db", WindowStore({"washer": ("water_level",)}, slots=8), {"washer": 1.0})
    files = [p for p in tmp_path.iterdir() if p.name.startswith(("gateway.db", "history.db"))]
    assert {p.name for p in files} >= {"gateway.db", "gateway.db-wal", "history.db"}
    assert all(mode(p) == 0o600 for p in files), {p.name: oct(mode(p)) for p in files}
    history.close()
    db.close()
    (tmp_path / "gateway.db").chmod(0o644)
    Database(tmp_path / "gateway.db").close()
    assert mode(tmp_path / "gateway.db") == 0o600
