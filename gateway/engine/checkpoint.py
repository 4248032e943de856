"""A checkpoint of what detection holds only in memory: the telemetry windows and the rules' pending `for` timers.

Without it a crash forgot both (only open incidents are in the database), so a fault half-way through its `for`
was found late after a restart, or not at all. Prometheus restores `for` state after a restart the same way.

One `.npz` file (numpy's zip of arrays, no pickle) beside the database, written every `checkpoint_seconds` to a
temporary name and renamed, so a crash while writing leaves the previous checkpoint whole. It is copied on the
pipeline thread (the only writer of these arrays) in chunks of rows, each at one moment, so every device is
consistent in itself, and written on a thread of its own as the chunks come (`Checkpointer`).
At start a checkpoint is restored for each appliance type whose layout is unchanged, and for each rule whose
version is unchanged; one older than `checkpoint_max_age_seconds` is ignored. The time the gateway was down is a
gap like any other: longer than the profile's `max_gap`, it is not counted as observed time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from gateway.engine.evaluator import PENDING_FIELDS, Evaluator
from gateway.memory import release_free_memory
from gateway.store.window import TypeWindow, WindowStore

log = logging.getLogger("gateway.checkpoint")

FORMAT = 2  # 2: each type's rows in chunks (1 had one copy of everything, taken at once)
MAX_SHARE = 0.02  # of the pipeline thread's time the copying may take
CHUNK_BYTES = 8 << 20  # of a type's rows copied at once
QUEUED = 4  # chunks copied but not yet written, at most
_END, _ABORT = "end", "abort"  # told to the writer thread: finish the file, or drop it


def _signature(window: TypeWindow) -> list[Any]:
    """What must match for a type's saved rows to fit its arrays now (the long ring's columns too: another
    column read over a long window has the same shape but not the same values)."""
    return [list(window.metric_names), window.slots, list(window.long_names), list(window.parameter_defaults),
            [[list(a.shape[1:]), str(a.dtype)] for a in window.arrays()]]


Chunk = tuple[str, int, int, int]  # (appliance type, chunk number, first row, end row)


class Plan:
    """What one checkpoint holds: each type's rows in use when it began, in chunks of about CHUNK_BYTES, and
    a header saying what they are. Each chunk is copied at one moment, every array of its rows and its rules'
    timers, so each device comes back as it was at one moment; two chunks may be a few seconds apart."""

    def __init__(self, store: WindowStore, evaluator: Evaluator, now: float) -> None:
        self.store = store
        self.evaluator = evaluator
        self.header: dict[str, Any] = {"format": FORMAT, "saved_at": now, "windows": {}, "rules": {}}
        self.chunks: list[Chunk] = []
        for appliance, window in store.windows.items():
            count = len(window.device_ids)
            if not count:
                continue
            row_bytes = sum(a[:1].nbytes for a in window.arrays()) + len(PENDING_FIELDS) * 8 * len(
                evaluator.rules_by_type.get(appliance, ()))
            step = max(1, CHUNK_BYTES // row_bytes)
            ranges = [(first, min(count, first + step)) for first in range(0, count, step)]
            self.header["windows"][appliance] = {"signature": _signature(window),
                                                 "devices": list(window.device_ids), "chunks": ranges}
            self.chunks += [(appliance, k, first, end) for k, (first, end) in enumerate(ranges)]
            for rule in evaluator.rules_by_type.get(appliance, ()):
                self.header["rules"][rule.rule_id] = {"appliance": appliance, "version": rule.version,
                                                      "fields": list(PENDING_FIELDS)}

    def copy(self, chunk: Chunk) -> dict[str, npt.NDArray[Any]]:
        """One chunk's arrays. Call where no sample is being appended (the pipeline thread)."""
        appliance, k, first, end = chunk
        window = self.store.windows[appliance]
        arrays = {f"window/{appliance}/{i}/{k}": array[first:end].copy() for i, array in enumerate(window.arrays())}
        for name, array in window.recordings_state(first, end).items():
            arrays[f"recording/{appliance}/{k}/{name}"] = array
        for rule_id, (_, fields) in self.evaluator.pending_state(appliance, first, end).items():
            for name, array in fields.items():
                arrays[f"rule/{rule_id}/{k}/{name}"] = array
        return arrays

    def header_array(self) -> npt.NDArray[np.uint8]:
        return np.frombuffer(orjson.dumps(self.header), dtype=np.uint8)


def take(store: WindowStore, evaluator: Evaluator, now: float) -> dict[str, npt.NDArray[Any]]:
    """A whole checkpoint at once (at stop, in tests and benchmarks). Call where no sample is being appended."""
    plan = Plan(store, evaluator, now)
    arrays: dict[str, npt.NDArray[Any]] = {}
    for chunk in plan.chunks:
        arrays.update(plan.copy(chunk))
    arrays["header"] = plan.header_array()
    return arrays


class CheckpointFile:
    """A checkpoint written entry by entry (numpy's .npz layout: one .npy per array in an uncompressed zip) to a
    temporary name, then fsynced and renamed over the last one, so a crash while writing leaves that one whole."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self._handle = os.fdopen(os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
        self._zip = zipfile.ZipFile(self._handle, "w", zipfile.ZIP_STORED, allowZip64=True)

    def add(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        for name, array in arrays.items():
            with self._zip.open(name + ".npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.asanyarray(array), allow_pickle=False)

    def finish(self) -> int:
        """Close, fsync and rename; the size in bytes."""
        self._zip.close()
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self.partial, self.path)
        return self.path.stat().st_size

    def abort(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._zip.close()
        with contextlib.suppress(OSError, ValueError):
            self._handle.close()
        with contextlib.suppress(OSError):
            self.partial.unlink()


def write(path: Path, arrays: dict[str, npt.NDArray[Any]]) -> int:
    """Write atomically (temporary file, fsync, rename); the size in bytes."""
    file = CheckpointFile(path)
    try:
        file.add(arrays)
        return file.finish()
    except BaseException:
        file.abort()
        raise


def restore(path: Path, store: WindowStore, evaluator: Evaluator, now: float, max_age: float) -> int:
    """Put back what a checkpoint holds; the number of devices restored. Never raises for a bad file: a
    checkpoint that cannot be used is logged and detection starts empty, as without one."""
    if not path.exists():
        return 0
    try:
        with np.load(path, allow_pickle=False) as data:
            header = orjson.loads(data["header"].tobytes())
            if header.get("format") != FORMAT:
                log.warning("checkpoint %s has format %r, not %d: not used", path, header.get("format"), FORMAT)
                return 0
            age = now - float(header["saved_at"])
            if not 0 <= age <= max_age:
                log.info("checkpoint %s is %.0f s old (limit %.0f s): not used; detection starts empty", path, age,
                         max_age)
                return 0
            return _restore(data, header, store, evaluator, age)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, orjson.JSONDecodeError) as exc:
        log.warning("checkpoint %s cannot be read (%s): not used; detection starts empty", path, exc)
        return 0


def _restore(data: Any, header: dict[str, Any], store: WindowStore, evaluator: Evaluator, age: float) -> int:
    devices = 0
    chunks_by_type: dict[str, list[tuple[int, npt.NDArray[np.intp]]]] = {}
    for appliance, saved in header["windows"].items():
        window = store.windows.get(appliance)
        if window is None or saved["signature"] != _signature(window):
            log.info("checkpoint: the %s layout changed (profile or rules); its windows start empty", appliance)
            continue
        rows = np.array([window.row(device) for device in saved["devices"]], dtype=np.intp)  # may grow arrays
        chunks = [(k, rows[first:end]) for k, (first, end) in enumerate(saved["chunks"])]
        for k, chunk_rows in chunks:
            for i, array in enumerate(window.arrays()):
                array[chunk_rows] = data[f"window/{appliance}/{i}/{k}"]
            prefix = f"recording/{appliance}/{k}/"
            recorded = {name.removeprefix(prefix): data[name] for name in data.files if name.startswith(prefix)}
            if recorded:  # before the rules: resuming one records what is not recorded yet
                window.restore_recordings(recorded, rows)
        window.dirty[rows] = False
        window.newest_ts = max(window.newest_ts, float(np.nanmax(window.latest_ts[rows], initial=-np.inf)))
        chunks_by_type[appliance] = chunks
        devices += rows.size
    resumed = 0
    for rule_id, saved in header["rules"].items():
        if saved["appliance"] in chunks_by_type and all([evaluator.resume_pending(
                rule_id, saved["version"], chunk_rows,
                {name: data[f"rule/{rule_id}/{k}/{name}"] for name in saved["fields"]})
                for k, chunk_rows in chunks_by_type[saved["appliance"]]]):
            resumed += 1
    log.info("resumed %d appliance(s) and %d rule(s) from a checkpoint %.0f s old", devices, resumed, age)
    return devices


class Checkpointer:
    """Takes a checkpoint every `interval` seconds: chunk by chunk on the pipeline thread (`step`, between its
    passes), each chunk written on a thread of its own as it comes. The whole store copied at once stopped
    ingest for 350 ms at 10,000 appliances and held a second copy of the store (235 MB) until it was written
    (`python -m benchmarks.checkpoint`). A chunk is about CHUNK_BYTES, a few milliseconds to copy; chunks are
    spaced so that copying takes at most MAX_SHARE of the thread's time, and at most QUEUED of them wait for
    the writer (a slow disk slows the checkpoint, not ingest, and holds no more memory)."""

    def __init__(self, path: Path, interval: float) -> None:
        self.path = path
        self.interval = interval
        self.saved = 0
        self.failures = 0
        self.last_bytes = 0
        self.last_write_ms = 0.0
        self.last_copy_ms = 0.0  # the longest chunk copy of the last checkpoint: the longest ingest waited
        self.last_chunks = 0
        self._next = time.monotonic() + interval
        self._plan: Plan | None = None  # the checkpoint being taken
        self._left: list[Chunk] = []
        # unbounded, so that a put never blocks the pipeline thread; `step` puts a chunk only while fewer than
        # QUEUED wait, which bounds the memory they hold
        self._queue: queue.Queue[dict[str, npt.NDArray[Any]] | str] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._next_chunk = 0.0
        self._longest_copy = 0.0
        self._failing = False

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def maybe_save(self, store: WindowStore, evaluator: Evaluator, now: float) -> None:
        """Begin a checkpoint when one is due (and the last is written)."""
        if not self.enabled or time.monotonic() < self._next or self._busy:
            return
        self._plan = Plan(store, evaluator, now)
        self._left = list(self._plan.chunks)
        self._longest_copy = 0.0
        self._next_chunk = 0.0
        self._next = time.monotonic() + self.interval
        self._writer = threading.Thread(target=self._write_chunks, args=(self._queue,), name="checkpoint",
                                        daemon=True)
        self._writer.start()
        self.step()

    @property
    def next_step(self) -> float:
        """When `step` has work (monotonic time; infinite while no checkpoint is being taken)."""
        return self._next_chunk if self._plan is not None else math.inf

    def step(self) -> None:
        """Copy the next chunk if its time has come and the writer has room; after the last, the header."""
        plan = self._plan
        if plan is None or time.monotonic() < self._next_chunk or self._queue.qsize() >= QUEUED:
            return
        if self._left:
            started = time.monotonic()
            self._queue.put(plan.copy(self._left.pop(0)))
            spent = time.monotonic() - started
            self._longest_copy = max(self._longest_copy, spent)
            self._next_chunk = time.monotonic() + spent / MAX_SHARE
            if self._left:
                return
        self._queue.put({"header": plan.header_array()})
        self._queue.put(_END)
        self.last_copy_ms = self._longest_copy * 1000
        self.last_chunks = len(plan.chunks)
        self._plan = None

    def save_now(self, store: WindowStore, evaluator: Evaluator, now: float) -> None:
        """At a clean stop: the last state, written before returning (a checkpoint half taken is dropped)."""
        if not self.enabled:
            return
        if self._plan is not None:
            self._plan = None
            self._queue.put(_ABORT)
        if self._writer is not None:
            self._writer.join()
        self._write(take(store, evaluator, now))

    @property
    def _busy(self) -> bool:
        return self._plan is not None or (self._writer is not None and self._writer.is_alive())

    def _write_chunks(self, chunks: queue.Queue[dict[str, npt.NDArray[Any]] | str]) -> None:
        """The writer thread: each chunk into the file as it comes, and dropped (given back to the system at
        the end, gateway/memory.py); on a write error the rest is taken and dropped, so the copying goes on."""
        started = time.perf_counter()
        file: CheckpointFile | None = None
        error: OSError | None = None
        while True:
            item = chunks.get()
            if item is _END or item is _ABORT:
                break
            if error is not None or isinstance(item, str):
                continue
            try:
                file = file or CheckpointFile(self.path)
                file.add(item)
            except OSError as exc:
                error = exc
            del item
        if item is _ABORT or error is not None:
            if file is not None:
                file.abort()
            if error is not None:
                self._failed(error)
        elif file is not None:
            try:
                self._written(file.finish(), started)
            except OSError as exc:
                file.abort()
                self._failed(exc)
        release_free_memory()

    def _write(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        started = time.perf_counter()
        try:
            size = write(self.path, arrays)
        except OSError as exc:
            self._failed(exc)
            return
        self._written(size, started)

    def _failed(self, exc: OSError) -> None:
        self.failures += 1
        if not self._failing:
            log.error("cannot write the checkpoint %s (%s); detection goes on, a crash now would forget "
                      "pending timers", self.path, exc)
        self._failing = True

    def _written(self, size: int, started: float) -> None:
        if self._failing:
            log.warning("checkpoint %s written again", self.path)
        self._failing = False
        self.saved += 1
        self.last_bytes = size
        self.last_write_ms = (time.perf_counter() - started) * 1000

    def snapshot(self) -> dict[str, object]:
        return {"enabled": self.enabled, "saved": self.saved, "failures": self.failures, "bytes": self.last_bytes,
                "chunks": self.last_chunks, "last_copy_ms": round(self.last_copy_ms, 1),
                "last_write_ms": round(self.last_write_ms, 1)}
