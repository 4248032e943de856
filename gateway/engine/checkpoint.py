"""A checkpoint of what detection holds only in memory: the telemetry windows and the rules' pending `for` timers.

Without it a crash forgot both (only open incidents are in the database), so a fault half-way through its `for`
was found late after a restart, or not at all. Prometheus restores `for` state after a restart the same way.

One `.npz` file (numpy's zip of arrays, no pickle) beside the database, written every `checkpoint_seconds` to a
temporary name and renamed, so a crash while writing leaves the previous checkpoint whole. The copy is taken on
the pipeline thread (the only writer of these arrays, so it is consistent) and written on a thread of its own.
At start a checkpoint is restored for each appliance type whose layout is unchanged, and for each rule whose
version is unchanged; one older than `checkpoint_max_age_seconds` is ignored. The time the gateway was down is a
gap like any other: longer than the profile's `max_gap`, it is not counted as observed time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from gateway.engine.evaluator import Evaluator
from gateway.memory import release_free_memory
from gateway.store.window import TypeWindow, WindowStore

log = logging.getLogger("gateway.checkpoint")

FORMAT = 1
MAX_SHARE = 0.02  # of the pipeline thread's time the copy may take: a large fleet is checkpointed less often


def _signature(window: TypeWindow) -> list[Any]:
    """What must match for a type's saved rows to fit its arrays now (the long ring's columns too: another
    column read over a long window has the same shape but not the same values)."""
    return [list(window.metric_names), window.slots, list(window.long_names), list(window.parameter_defaults),
            [[list(a.shape[1:]), str(a.dtype)] for a in window.arrays()]]


def take(store: WindowStore, evaluator: Evaluator, now: float) -> dict[str, npt.NDArray[Any]]:
    """A copy of the rows in use, and a header saying what they are. Call where no sample is being appended."""
    header: dict[str, Any] = {"format": FORMAT, "saved_at": now, "windows": {}, "rules": {}}
    arrays: dict[str, npt.NDArray[Any]] = {}
    for appliance, window in store.windows.items():
        count = len(window.device_ids)
        if not count:
            continue
        header["windows"][appliance] = {"signature": _signature(window), "devices": list(window.device_ids)}
        for i, array in enumerate(window.arrays()):
            arrays[f"window/{appliance}/{i}"] = array[:count].copy()
        for name, array in window.recordings_state().items():
            arrays[f"recording/{appliance}/{name}"] = array
    for rule_id, (appliance, version, fields) in evaluator.pending_state().items():
        if appliance not in header["windows"]:
            continue
        header["rules"][rule_id] = {"appliance": appliance, "version": version, "fields": list(fields)}
        for name, array in fields.items():
            arrays[f"rule/{rule_id}/{name}"] = array
    arrays["header"] = np.frombuffer(orjson.dumps(header), dtype=np.uint8)
    return arrays


def write(path: Path, arrays: dict[str, npt.NDArray[Any]]) -> int:
    """Write atomically (temporary file, fsync, rename); the size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    return path.stat().st_size


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
    rows_by_type: dict[str, npt.NDArray[np.intp]] = {}
    for appliance, saved in header["windows"].items():
        window = store.windows.get(appliance)
        if window is None or saved["signature"] != _signature(window):
            log.info("checkpoint: the %s layout changed (profile or rules); its windows start empty", appliance)
            continue
        rows = np.array([window.row(device) for device in saved["devices"]], dtype=np.intp)  # may grow arrays
        for i, array in enumerate(window.arrays()):
            array[rows] = data[f"window/{appliance}/{i}"]
        window.dirty[rows] = False
        prefix = f"recording/{appliance}/"
        recorded = {name.removeprefix(prefix): data[name] for name in data.files if name.startswith(prefix)}
        if recorded:  # before the rules: resuming one records what is not recorded yet
            window.restore_recordings(recorded, rows)
        window.newest_ts = max(window.newest_ts, float(np.nanmax(window.latest_ts[rows], initial=-np.inf)))
        rows_by_type[appliance] = rows
        devices += rows.size
    resumed = 0
    for rule_id, saved in header["rules"].items():
        type_rows = rows_by_type.get(saved["appliance"])
        if type_rows is not None and evaluator.resume_pending(
                rule_id, saved["version"], type_rows,
                {name: data[f"rule/{rule_id}/{name}"] for name in saved["fields"]}):
            resumed += 1
    log.info("resumed %d appliance(s) and %d rule(s) from a checkpoint %.0f s old", devices, resumed, age)
    return devices


class Checkpointer:
    """Takes a checkpoint every `interval` seconds when asked (on the pipeline thread) and writes it on a thread
    of its own; a write still running when the next is due makes that one wait for the next interval. The copy
    stops ingest while it runs (3 ms at 100 appliances, 90 ms at 1,000, 1.4 s at 10,000 on this machine:
    `python -m benchmarks.checkpoint`), so the interval stretches to keep it under MAX_SHARE of the thread's time."""

    def __init__(self, path: Path, interval: float) -> None:
        self.path = path
        self.interval = interval
        self.saved = 0
        self.failures = 0
        self.last_bytes = 0
        self.last_write_ms = 0.0
        self.last_copy_ms = 0.0
        self._next = time.monotonic() + interval
        self._writer: threading.Thread | None = None
        self._failing = False

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def maybe_save(self, store: WindowStore, evaluator: Evaluator, now: float) -> None:
        if not self.enabled or time.monotonic() < self._next or (self._writer and self._writer.is_alive()):
            return
        started = time.monotonic()
        arrays = take(store, evaluator, now)
        self.last_copy_ms = (time.monotonic() - started) * 1000
        self._next = time.monotonic() + max(self.interval, self.last_copy_ms / 1000 / MAX_SHARE)
        self._writer = threading.Thread(target=self._write_then_free, args=([arrays],), name="checkpoint",
                                        daemon=True)
        self._writer.start()

    def save_now(self, store: WindowStore, evaluator: Evaluator, now: float) -> None:
        """At a clean stop: the last state, written before returning."""
        if not self.enabled:
            return
        if self._writer is not None:
            self._writer.join()
        self._write(take(store, evaluator, now))

    def _write_then_free(self, holder: list[dict[str, npt.NDArray[Any]]]) -> None:
        """The copy is as large as the window store: freed as soon as it is written (the thread's arguments
        would hold it until the thread ends) and given back to the system (gateway/memory.py)."""
        self._write(holder.pop())
        release_free_memory()

    def _write(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        started = time.perf_counter()
        try:
            self.last_bytes = write(self.path, arrays)
        except OSError as exc:
            self.failures += 1
            if not self._failing:
                log.error("cannot write the checkpoint %s (%s); detection goes on, a crash now would forget "
                          "pending timers", self.path, exc)
            self._failing = True
            with contextlib.suppress(OSError):
                self.path.with_name(self.path.name + ".partial").unlink()
            return
        if self._failing:
            log.warning("checkpoint %s written again", self.path)
        self._failing = False
        self.saved += 1
        self.last_write_ms = (time.perf_counter() - started) * 1000

    def snapshot(self) -> dict[str, object]:
        return {"enabled": self.enabled, "saved": self.saved, "failures": self.failures, "bytes": self.last_bytes,
                "last_copy_ms": round(self.last_copy_ms, 1), "last_write_ms": round(self.last_write_ms, 1)}
