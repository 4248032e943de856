"""Telemetry history: per device and metric, 1-minute min / mean / max / last for `minute_days`, then hourly
until `days`, within a size budget (`max_megabytes`: the oldest rows go first beyond it).

The minutes are computed from the in-memory window store once a minute, vectorized per appliance type, so
the ingest path pays nothing for history. Rows are written as each range of devices is computed, on a worker
thread with the history's own writing connection; queries read through a connection of their own thread (WAL readers
never wait for the writer), so a chart never waits behind a large flush. A sample that arrives after its
minute was flushed (more than `FLUSH_GRACE_SECONDS` late) stays in the window for the rules but is not in the
history.

Queries merge the stored minutes with the raw samples still in memory and reduce them to at most `points`
buckets, the resolution a chart can show.
"""

from __future__ import annotations

import itertools
import logging
import math
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gateway.store.connection import create_private
from gateway.store.db import StorageError
from gateway.store.window import TypeWindow, WindowStore

log = logging.getLogger("gateway.history")

MINUTE = 60.0
FLUSH_GRACE_SECONDS = 5.0
DEVICE_CHUNK = 2048  # devices per numpy pass, to bound the temporary arrays
CHUNK_VALUES = 2_000_000  # values per copy of a chunk's recent slots (16 MB), whatever the batch's length
CHUNK_ROWS = 4_000  # minute rows a flush computes before it writes them (about 1 MB of tuples)
UNWRITTEN_ROWS = 200_000  # minute rows kept in memory while the disk cannot take them (about 40 MB)
# Rows are keyed by device and metric, so a minute of the whole fleet touches one page per device and metric: a
# flush of single minutes rewrites nearly the whole file's tails each time (the soak measured a WAL as large as
# the database). Minutes are therefore written in batches of up to BATCH_SECONDS (as long as the window still
# holds them: at most BATCH_SHARE of what its ring holds), a device's minutes side by side on one page, in
# transactions of WRITE_CHUNK rows in key order, which bounds the WAL.
BATCH_SECONDS = 300.0
BATCH_SHARE = 0.4
WRITE_CHUNK = 4000
JOURNAL_SIZE_LIMIT = 32 * 1024 * 1024  # the WAL file is cut back to this after a checkpoint
Row = tuple[str, str, int, int, float, float, float, float]

HOUR = 3600.0
MB = 1024 * 1024
# Two tiers: minutes for the recent past (`minute_days`), then hours (`history_hour`, the same columns, `minute`
# holding the hour's start) until `days`; and a size budget that drops the oldest hours, then minutes, beyond it.
SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    device_id TEXT NOT NULL, metric TEXT NOT NULL, minute INTEGER NOT NULL,
    n INTEGER NOT NULL, min REAL NOT NULL, mean REAL NOT NULL, max REAL NOT NULL, last REAL NOT NULL,
    PRIMARY KEY (device_id, metric, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_hour (
    device_id TEXT NOT NULL, metric TEXT NOT NULL, minute INTEGER NOT NULL,
    n INTEGER NOT NULL, min REAL NOT NULL, mean REAL NOT NULL, max REAL NOT NULL, last REAL NOT NULL,
    PRIMARY KEY (device_id, metric, minute)
) WITHOUT ROWID;
"""
# minutes older than the cutoff become hours: count, min, count-weighted mean, max, and the last minute's last;
# an hour rolled up before (late minutes) is merged, not replaced
ROLL_UP = """
WITH old AS (SELECT *, (minute / 3600) * 3600 AS hour FROM history WHERE minute < :cutoff),
hours AS (SELECT device_id, metric, hour, SUM(n) AS n, MIN(min) AS low, SUM(mean * n) / SUM(n) AS mean,
                 MAX(max) AS high, MAX(minute) AS newest FROM old GROUP BY device_id, metric, hour)
INSERT INTO history_hour (device_id, metric, minute, n, min, mean, max, last)
SELECT h.device_id, h.metric, h.hour, h.n, h.low, h.mean, h.high, o.last FROM hours h
JOIN old o ON o.device_id = h.device_id AND o.metric = h.metric AND o.minute = h.newest WHERE true
ON CONFLICT (device_id, metric, minute) DO UPDATE SET
    mean = (mean * n + excluded.mean * excluded.n) / (n + excluded.n), n = n + excluded.n,
    min = MIN(min, excluded.min), max = MAX(max, excluded.max), last = excluded.last
"""
BUDGET_STEP = 0.1  # beyond the size budget, rows are dropped until this share of it is free


class History:
    def __init__(self, path: str | Path, store: WindowStore, intervals: dict[str, float],
                 retention_days: float = 30.0, minute_days: float = 1.0, max_megabytes: float = 2048.0) -> None:
        self.path = Path(path)
        self.store = store
        self.intervals = intervals
        self.retention_days = retention_days
        self.minute_days = min(minute_days, retention_days)
        self.max_bytes = max_megabytes * MB
        self._size_at_last_drop = 0  # bytes in use when the budget last dropped rows (their space is reused)
        self._next_minute: dict[str, float] = {}  # per appliance type: the first minute not yet flushed
        self._lock = threading.Lock()  # the writing connection: flush and prune
        self._readers = threading.local()  # one reading connection per thread that queries
        self._reader_connections: list[sqlite3.Connection] = []
        self.rows_written = 0
        self.unwritten: list[Row] = []  # minutes the last flush could not write
        try:
            create_private(self.path)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            self._conn.executescript(SCHEMA)
            newest = self._conn.execute("SELECT MAX(minute) FROM history").fetchone()[0]
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the history in {self.path}: {exc}") from exc
        # after a restart, the minutes since the last one stored are still in the windows the checkpoint restored
        self._resume_from = -math.inf if newest is None else float(newest) + MINUTE

    def close(self) -> None:
        for reader in self._reader_connections:
            reader.close()
        self._conn.close()

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
                conn.execute("PRAGMA query_only=ON")
            except sqlite3.Error as exc:
                raise StorageError(f"cannot read the history in {self.path}: {exc}") from exc
            self._readers.conn = conn
            self._reader_connections.append(conn)
        return conn

    # writing ---------------------------------------------------------------------------------------------
    def held_seconds(self, appliance: str) -> float:
        """How far back the appliance type's ring reaches at its reporting interval."""
        return self.store.windows[appliance].slots * self.intervals.get(appliance, 1.0)

    def collect(self, now: float, batched: bool = False) -> list[Row]:
        """The rows of every minute that ended at least FLUSH_GRACE_SECONDS ago and was not flushed yet;
        `batched`: only for the types whose unflushed minutes make a batch (see BATCH_SECONDS)."""
        return [row for rows in self.collect_chunks(now, batched) for row in rows]

    def collect_chunks(self, now: float, batched: bool = False) -> Iterator[list[Row]]:
        """`collect`, a range of devices at a time (at most about CHUNK_ROWS rows), so that a flush holds one
        chunk's rows, not the whole fleet's: 10,000 appliances' five-minute batch is about 600,000 tuples of
        about 240 bytes each with their numbers."""
        for appliance, window in self.store.windows.items():
            # the appliances' own time where it is ahead of the gateway clock (that clock stepped back, and the
            # appliances' timelines go on): their minutes close on their time, and the cursor never waits
            newest = float(np.nanmax(window.latest_ts[:len(window.device_ids)], initial=now))
            end = math.floor((max(now, newest) - FLUSH_GRACE_SECONDS) / MINUTE) * MINUTE
            held = self.held_seconds(appliance)
            first_start = max(self._resume_from, math.ceil((end - (1 - BATCH_SHARE) * held) / MINUTE) * MINUTE)
            start = self._next_minute.get(appliance, min(first_start, end - MINUTE))
            if start > end + MINUTE:  # a cursor ahead of every clock: it was set before a clock stepped back
                start = end - MINUTE
            if batched and end - start < min(BATCH_SECONDS, max(MINUTE, BATCH_SHARE * held)):
                self._next_minute.setdefault(appliance, start)
                continue
            if start >= end or not window.device_ids:
                self._next_minute[appliance] = max(start, end)
                continue
            span = max(now, newest) - start  # back to the oldest minute to flush; a quarter more for jitter
            recent = min(window.slots, math.ceil(span / self.intervals.get(appliance, 1.0) * 1.25) + 4)
            # devices per copy: a batch reaches further back, so fewer devices at a time bound the copy's memory
            metrics, minutes = len(window.metric_names) or 1, max(1, math.ceil((end - start) / MINUTE))
            per_chunk = max(16, min(DEVICE_CHUNK, CHUNK_VALUES // (recent * metrics),
                                    CHUNK_ROWS // (metrics * minutes)))
            for first in range(0, len(window.device_ids), per_chunk):
                with self.store.lock:  # a copy of the chunk's recent slots, while no new device grows the arrays
                    chunk = _gather(window, first, recent, per_chunk)
                yield _minutes(chunk, start, end)
            self._next_minute[appliance] = end

    def write(self, rows: list[Row]) -> None:
        if not rows:
            return
        with self._lock:
            try:
                for first in range(0, len(rows), WRITE_CHUNK):  # a rewritten chunk is the same rows again
                    # key order within a chunk, so a device's minutes share a page: one sort of the whole batch
                    # held the interpreter lock for 190 ms at 600,000 rows, and the console and ingest with it
                    # (stable, and chunks in order: of two rows for one minute, the later still wins)
                    chunk = sorted(rows[first:first + WRITE_CHUNK], key=lambda r: (r[0], r[1], r[2]))
                    self._conn.execute("BEGIN")
                    self._conn.executemany("INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?)", chunk)
                    self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StorageError(f"history {self.path}: {exc}") from exc
        self.rows_written += len(rows)

    def flush(self, now: float, everything: bool = False) -> int:
        """Compute and write the closed minutes, in batches (`everything`: all of them, at stop). Runs on a
        worker thread: numpy releases the GIL for the heavy part and reads copies of the window's recent slots,
        while ingest keeps appending (it writes only the newest slot; the minutes read here closed at least
        FLUSH_GRACE_SECONDS ago). Until written, a chart reads those minutes raw from the window."""
        written, failure = 0, None
        earlier, self.unwritten = self.unwritten, []  # minutes a full disk could not take before go first
        for rows in itertools.chain([earlier], self.collect_chunks(now, batched=not everything)):
            if failure is None:
                try:
                    self.write(rows)
                    written += len(rows)
                    continue
                except StorageError as exc:
                    failure = exc  # the rest is still collected, so that every type's cursor moves on
            self.unwritten.extend(rows)  # kept for the next flush (bounded: the newest minutes win)
            del self.unwritten[:-UNWRITTEN_ROWS]
        if failure is not None:
            raise failure
        return written

    def prune(self, now: float) -> int:
        """Roll minutes older than `minute_days` up into hours, drop hours older than `days`, then drop the
        oldest rows while the data is over the size budget. Returns the rows removed from both tiers."""
        cutoff = int(math.floor((now - self.minute_days * 86400) / HOUR) * HOUR)
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                self._conn.execute(ROLL_UP, {"cutoff": cutoff})
                removed = self._conn.execute("DELETE FROM history WHERE minute < ?", (cutoff,)).rowcount
                removed += self._conn.execute("DELETE FROM history_hour WHERE minute < ?",
                                              (int(now - self.retention_days * 86400),)).rowcount
                self._conn.execute("COMMIT")
                return removed + self._keep_to_budget()
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StorageError(f"history {self.path}: {exc}") from exc

    def used_bytes(self) -> int:
        """Pages holding data (freed pages are reused, so this, not the file size, is what grows)."""
        page_size, pages, free = (self._conn.execute(f"PRAGMA {name}").fetchone()[0]
                                  for name in ("page_size", "page_count", "freelist_count"))
        return int(page_size * (pages - free))

    def _keep_to_budget(self) -> int:
        """Beyond the budget, drop the oldest rows (hours first, then minutes) down to 90 % of it; logged, since
        charts then lose their oldest data earlier than `days` says.

        Deleting old rows frees space inside pages rather than whole pages (rows are keyed by device first), so
        the number to drop is estimated from the bytes per row, not measured by watching pages come free; and
        the file stays that size while new rows fill the space, so only growth beyond it calls for another drop."""
        used = self.used_bytes()
        if used <= max(self.max_bytes, self._size_at_last_drop):
            return 0
        counts = {table: self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                  for table in ("history_hour", "history")}
        total = sum(counts.values())
        if not total:
            return 0
        excess = total - int(self.max_bytes * (1 - BUDGET_STEP) / (used / total))
        removed = 0
        for table, count in counts.items():  # oldest tier first
            take = min(excess - removed, count)
            if take <= 0:
                continue
            if take == count:
                removed += self._conn.execute(f"DELETE FROM {table}").rowcount
                continue
            (below,) = self._conn.execute(f"SELECT minute FROM {table} ORDER BY minute LIMIT 1 OFFSET ?",
                                          (take,)).fetchone()
            removed += self._conn.execute(f"DELETE FROM {table} WHERE minute < ?", (below,)).rowcount
        self._size_at_last_drop = used
        log.warning("history at %.1f MB, over its budget of %.1f MB: dropped its %d oldest rows", used / MB,
                    self.max_bytes / MB, removed)
        return removed

    # reading ---------------------------------------------------------------------------------------------
    def query(self, device_id: str, metrics: Iterable[str], start: float, end: float,
              points: int = 300) -> dict[str, dict[str, list[float | None]]]:
        """Per metric, at most `points` buckets over [start, end): ts (bucket start), min, mean, max, last."""
        metrics = list(metrics)
        points = max(1, min(points, 5000))
        step = max((end - start) / points, 1e-9)
        result = {}
        window = self.store.window_of(device_id)
        for metric in metrics:
            ts, lows, means, highs, lasts, counts = self._stored(device_id, metric, start, end)
            if window is not None and metric in window.metric_index:
                with self.store.lock:
                    raw_ts, raw = _raw(window, device_id, metric, max(start, self._next_minute.get(
                        window.appliance, -math.inf)), end)
                ts = np.concatenate([ts, raw_ts])
                lows, means, highs, lasts = (np.concatenate([a, raw]) for a in (lows, means, highs, lasts))
                counts = np.concatenate([counts, np.ones(raw.size)])
            result[metric] = _buckets(ts, lows, means, highs, lasts, counts, start, step, points)
        return result

    def _stored(self, device_id: str, metric: str, start: float, end: float) -> tuple[npt.NDArray[np.float64], ...]:
        try:
            rows = self._reader().execute(  # each row's values sit in the middle of its hour or minute
                "SELECT minute + 1800, min, mean, max, last, n FROM history_hour WHERE device_id=? AND metric=? "
                "AND minute >= ? AND minute < ? UNION ALL "
                "SELECT minute + 30, min, mean, max, last, n FROM history WHERE device_id=? AND metric=? "
                "AND minute >= ? AND minute < ? ORDER BY 1",
                (device_id, metric, math.floor(start / HOUR) * HOUR, end,
                 device_id, metric, math.floor(start / MINUTE) * MINUTE, end)).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"history {self.path}: {exc}") from exc
        table = np.array(rows, dtype=np.float64).reshape(-1, 6)
        return tuple(table[:, i] for i in range(6))


@dataclass(frozen=True)
class _Chunk:
    """Copies of the last `recent` slots of a range of devices (ingest may go on meanwhile)."""

    device_ids: npt.NDArray[np.object_]
    metric_names: npt.NDArray[np.object_]
    ts: npt.NDArray[np.float64]  # devices x recent
    values: npt.NDArray[np.float32]  # devices x metrics x recent


def _gather(window: TypeWindow, first: int, recent: int, devices: int = DEVICE_CHUNK) -> _Chunk:
    rows_index = np.arange(first, min(first + devices, len(window.device_ids)))
    slots = (window.head[rows_index, None] - 1 - np.arange(recent)[None, :]) % window.slots  # newest first
    return _Chunk(np.array(window.device_ids, dtype=object)[rows_index],
                  np.array(window.metric_names, dtype=object),
                  window.ring_times(rows_index, window.ts[rows_index[:, None], slots]),
                  window.values[rows_index[:, None, None], np.arange(len(window.metric_names))[None, :, None],
                                slots[:, None, :]])


def _minutes(chunk: _Chunk, start: float, end: float) -> list[Row]:
    """Aggregate a chunk's samples into minutes in [start, end)."""
    ts, gathered, device_ids, metric_names = chunk.ts, chunk.values, chunk.device_ids, chunk.metric_names
    out: list[Row] = []
    for minute in np.arange(start, end, MINUTE):
        inside = (ts >= minute) & (ts < minute + MINUTE)
        if not inside.any():
            continue
        values = np.where(inside[:, None, :], gathered, np.float32(np.nan))
        present = ~np.isnan(values)
        counts = present.sum(axis=2)
        d, m = np.nonzero(counts)
        if d.size == 0:
            continue
        lows = np.fmin.reduce(values, axis=2)[d, m]  # fmin/fmax skip NaN
        highs = np.fmax.reduce(values, axis=2)[d, m]
        sums = np.where(present, values, 0).sum(axis=2, dtype=np.float64)[d, m]
        newest = np.where(present, ts[:, None, :], -np.inf).argmax(axis=2)[d, m]  # the slot of each last value
        lasts = values[d, m, newest]
        n = counts[d, m]
        out.extend(zip(device_ids[d].tolist(), metric_names[m].tolist(), [int(minute)] * d.size, n.tolist(),
                       lows.astype(np.float64).tolist(), (sums / n).tolist(), highs.astype(np.float64).tolist(),
                       lasts.astype(np.float64).tolist(), strict=True))
    return out


def _raw(window: TypeWindow, device_id: str, metric: str, start: float,
         end: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    row, column = window.rows[device_id], window.metric_index[metric]
    ts = window.ring_times(row, window.ts[row])
    values = window.values[row, column].astype(np.float64)
    keep = (ts >= start) & (ts < end) & ~np.isnan(values)
    order = np.argsort(ts[keep])
    return ts[keep][order], values[keep][order]


def _buckets(ts: npt.NDArray[np.float64], lows: npt.NDArray[np.float64], means: npt.NDArray[np.float64],
             highs: npt.NDArray[np.float64], lasts: npt.NDArray[np.float64], counts: npt.NDArray[np.float64],
             start: float, step: float, points: int) -> dict[str, list[float | None]]:
    if ts.size == 0:
        return {"ts": [], "min": [], "mean": [], "max": [], "last": []}
    index = np.clip(((ts - start) // step).astype(np.int64), 0, points - 1)
    used = np.unique(index)
    position = np.searchsorted(used, index)
    n = used.size
    low, high = np.full(n, np.inf), np.full(n, -np.inf)
    np.minimum.at(low, position, lows)
    np.maximum.at(high, position, highs)
    weight = np.zeros(n)
    np.add.at(weight, position, counts)
    total = np.zeros(n)
    np.add.at(total, position, means * counts)
    order = np.lexsort((ts, position))  # within a bucket, the newest value is its last
    last = np.empty(n)
    last[position[order]] = lasts[order]
    return {"ts": [round(start + (i + 0.5) * step, 3) for i in used.tolist()],
            "min": _rounded(low), "mean": _rounded(total / np.maximum(weight, 1)), "max": _rounded(high),
            "last": _rounded(last)}


def _rounded(values: npt.NDArray[np.float64]) -> list[float | None]:
    return [None if not math.isfinite(v) else round(v, 4) for v in values.tolist()]
