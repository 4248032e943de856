"""`appliance-gateway replay FILE`: recorded telemetry through the rule library, offline.

For a technician checking a customer's history and for an author tuning a rule. The input is JSON lines
(`{"device_id", "ts", "type", "metrics"}`, or the MQTT telemetry payload plus `device_id`) or CSV with columns
`ts,device_id,type,<metric>...` (empty cells are missing values). Samples are replayed in time order; the
gateway's clock follows their timestamps, so time-driven rules (silence) behave as they would have live.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.clock import FakeClock
from gateway.engine.evaluator import Evaluator, Transition
from gateway.engine.library import Library, build_window_store
from gateway.engine.profiles import derived_by_type, intervals_by_type
from gateway.incidents.episodes import IncidentManager
from gateway.ingest.registry import DeviceRegistry
from gateway.store.db import Database


class ReplayError(Exception):
    """The recording cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Record:
    device_id: str
    ts: float
    appliance: str
    metrics: dict[str, float]


@dataclass
class ReplayResult:
    samples: int
    transitions: list[str]
    tickets: list[dict[str, Any]]
    skipped: list[str]


def read_records(path: Path) -> list[Record]:
    """All records, sorted by time; every unreadable line is reported, not the first."""
    records, errors = [], []
    for line_number, raw in _rows(path):
        try:
            records.append(_record(raw))
        except (KeyError, TypeError, ValueError) as exc:
            errors.append(f"{path}:{line_number}: {exc}")
    if errors:
        raise ReplayError("\n".join(errors[:20]) + (f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""))
    return sorted(records, key=lambda r: r.ts)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                yield number, {"ts": row.pop("ts"), "device_id": row.pop("device_id"), "type": row.pop("type", ""),
                               "metrics": {k: float(v) for k, v in row.items() if v not in ("", None)}}
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield number, orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield number, {"error": str(exc)}


def _record(raw: dict[str, Any]) -> Record:
    if "error" in raw:
        raise ValueError(f"not JSON: {raw['error']}")
    device = raw.get("device_id") or raw.get("device")
    if not isinstance(device, str) or not device:
        raise ValueError("needs a device_id")
    metrics = {str(k): float(v) for k, v in dict(raw["metrics"]).items()}
    ts = float(raw["ts"])
    if not math.isfinite(ts):
        raise ValueError("ts must be a finite number")
    return Record(device, ts, str(raw.get("type") or ""), metrics)


def replay(records: list[Record], library: Library, site: str = "replay") -> ReplayResult:
    profiles = library.profiles
    store = build_window_store(profiles, {n: 4096 for n in profiles})
    evaluator = Evaluator(library.rules, store, derived_by_type(profiles), intervals_by_type(profiles), cadence=False)
    clock = FakeClock(records[0].ts if records else 0.0)
    db = Database(":memory:")
    manager = IncidentManager(db, store, DeviceRegistry(set(profiles)), site, clock, prices=library.prices,
                              rules=library.rules, context_for=evaluator.device_context)
    transitions: list[str] = []
    skipped: list[str] = []
    for record in records:
        profile = profiles.get(record.appliance)
        if profile is None:
            skipped.append(f"{record.device_id} at {record.ts:g}: unknown appliance type {record.appliance!r}")
            continue
        known = {k: v for k, v in record.metrics.items() if k in profile.metric_names}
        if not known:
            continue
        clock.set(record.ts)
        window = store.windows[record.appliance]
        row = window.row(record.device_id)
        if window.dirty[row]:
            _handle(evaluator.evaluate(), manager, evaluator, transitions)
        window.append(row, record.ts, known)
        _handle(evaluator.evaluate() + evaluator.evaluate_timer(record.ts), manager, evaluator, transitions)
    tickets = db.tickets(limit=10_000)
    db.close()
    return ReplayResult(len(records), transitions, list(reversed(tickets)), skipped)


def _handle(found: list[Any], manager: IncidentManager, evaluator: Evaluator, out: list[str]) -> None:
    for transition in found:
        verb = "fires" if transition.kind is Transition.FIRING else "resolves"
        out.append(f"{transition.at_ts:.0f} {transition.device_id}: {transition.rule.rule_id} {verb}")
    manager.record(found, evaluator)
