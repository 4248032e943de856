"""Recorded telemetry through the one Pipeline, offline: `appliance-gateway replay FILE` and the scorer.

A recording is read into raw MQTT messages, exactly what the live gateway would have received, and played
through a `Pipeline` whose clock follows the recording: every value is validated as live (a reading outside
the profile's range is dropped and counted, and the data-quality rules see it), and the time-driven rules
(silence) tick through gaps as they would have live.

Recording formats (README "Replay"):
- JSON lines, each a sample `{"device_id", "ts", "type", "metrics": {...}}` (the MQTT telemetry payload plus
  its device id) or a captured MQTT message `{"ts", "topic", "payload"}` (payload: a JSON value or a string),
  which carries events, meta and status too;
- CSV with a header `ts,device_id,type,<metric>...`; an empty cell is a missing value.
`ts` is epoch seconds or an ISO 8601 time (UTC where no zone is given).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.clock import FakeClock
from gateway.engine.evaluator import AlertTransition, Transition
from gateway.pipeline import Pipeline
from gateway.protocol.topics import TopicKind, appliance_topic

TICK_SECONDS = 1.0  # the live gateway runs its time-driven rules once a second
MAX_TICKS_PER_GAP = 720  # through a longer gap the ticks are spread out (a day's gap: every 2 minutes)


class ReplayError(Exception):
    """The recording cannot be read; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Message:
    ts: float  # when it was received (a sample's own time for sample lines)
    topic: str
    payload: bytes


@dataclass
class Recording:
    messages: list[Message]  # in time order
    notes: list[str] = field(default_factory=list)  # cells the live gateway would drop, with file:line


def read_recording(path: Path, topic_prefix: str = "appliances") -> Recording:
    """Every message of a recording in time order; unreadable lines are all reported at once."""
    messages: list[Message] = []
    errors: list[str] = []
    notes: list[str] = []
    rows = _csv_rows(path, notes) if path.suffix.lower() == ".csv" else _json_rows(path)
    for line_number, raw in rows:
        try:
            messages.append(_message(raw, topic_prefix))
        except (KeyError, TypeError, ValueError) as exc:
            errors.append(f"{path}:{line_number}: {exc}")
    if errors:
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise ReplayError("\n".join(errors[:20]) + more)
    messages.sort(key=lambda m: m.ts)
    return Recording(messages, notes)


def _json_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                doc = {"error": f"not JSON: {exc}"}
            yield number, doc if isinstance(doc, dict) else {"error": "a line must be a JSON object"}


def _csv_rows(path: Path, notes: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle)
        missing = {"ts", "device_id"} - set(reader.fieldnames or [])
        if missing:
            raise ReplayError(f"{path}:1: the header needs the column(s) {sorted(missing)} "
                              f"(ts, device_id, type, then one column per metric)")
        for number, row in enumerate(reader, start=2):
            if None in row:
                yield number, {"error": f"{len(row[None])} more cell(s) than the header has columns"}
                continue
            metrics: dict[str, Any] = {}
            for name, cell in row.items():
                if name in ("ts", "device_id", "type") or cell is None or not cell.strip():
                    continue
                try:
                    metrics[name] = float(cell)
                except ValueError:  # passed on as it is: the gateway drops it with its reason, as live
                    metrics[name] = cell
                    notes.append(f"{path}:{number}: column {name!r}: {cell[:40]!r} is not a number")
            yield number, {"ts": row["ts"], "device_id": row["device_id"], "type": row.get("type") or None,
                           "metrics": metrics}


def _message(raw: dict[str, Any], prefix: str) -> Message:
    if "error" in raw:
        raise ValueError(raw["error"])
    ts = _timestamp(raw.get("ts"))
    if "topic" in raw:
        topic, payload = raw["topic"], raw.get("payload")
        if not isinstance(topic, str) or not topic:
            raise ValueError("'topic' must be a non-empty string")
        body = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
        return Message(ts, topic, body)
    device = raw.get("device_id") or raw.get("device")
    if not isinstance(device, str) or not device:
        raise ValueError("needs a device_id (or a topic and payload)")
    if not isinstance(raw.get("metrics"), dict):
        raise ValueError("needs 'metrics', an object of metric: value")
    telemetry = {"ts": ts, "metrics": raw["metrics"]}
    if raw.get("type"):
        telemetry["type"] = raw["type"]
    return Message(ts, appliance_topic(device, TopicKind.TELEMETRY, prefix), orjson.dumps(telemetry))


def _timestamp(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        ts = float(value)
    elif isinstance(value, str):
        try:
            ts = float(value)
        except ValueError:
            try:
                parsed = dt.datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(f"ts {value[:40]!r} is neither epoch seconds nor an ISO 8601 time") from None
            ts = (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()
    else:
        raise ValueError("needs 'ts', epoch seconds or an ISO 8601 time")
    if not math.isfinite(ts):
        raise ValueError("ts must be a finite number")
    return ts


def play(pipeline: Pipeline, clock: FakeClock, messages: Iterable[Message], tick_every: float = TICK_SECONDS,
         on_tick: Callable[[float], None] | None = None, progress: Callable[[float], None] | None = None) -> int:
    """Feed messages in time order with the clock following them. Before the clock moves past a tick, the
    messages so far are evaluated and the time-driven rules tick, as live (a pass, then a tick a second); a
    gap ticks through at most MAX_TICKS_PER_GAP times. Returns the number of messages."""
    count = 0
    next_tick: float | None = None
    for message in messages:
        if next_tick is None:
            clock.set(message.ts)
            next_tick = message.ts + tick_every
        if message.ts >= next_tick:
            step = max(tick_every, (message.ts - next_tick) / MAX_TICKS_PER_GAP)
            while next_tick <= message.ts:
                pipeline.evaluate()
                clock.set(next_tick)
                pipeline.tick(next_tick)
                if on_tick is not None:
                    on_tick(next_tick)
                if progress is not None:
                    progress(next_tick)
                next_tick += step
        if message.ts > clock.now():
            clock.set(message.ts)
        pipeline.stage(message.topic, message.payload)  # written in a batch before the next pass
        count += 1
    pipeline.evaluate()
    return count


@dataclass
class ReplayResult:
    messages: int
    transitions: list[dict[str, Any]]
    tickets: list[dict[str, Any]]
    dropped: dict[str, int]
    drop_details: dict[str, str]
    notes: list[str]


def describe(transition: AlertTransition, held: bool) -> dict[str, Any]:
    return {"ts": transition.at_ts, "device_id": transition.device_id, "rule": transition.rule.rule_id,
            "kind": transition.kind.value, "onset_ts": transition.onset_ts, "held_back": held,
            "observed": [{"quantity": o.quantity, "value": o.value, "op": o.op, "threshold": o.threshold}
                         for o in transition.observations]}


def replay(recording: Recording, pipeline: Pipeline, clock: FakeClock,
           tick_every: float = TICK_SECONDS) -> ReplayResult:
    """Play a recording through a fresh pipeline and report what it did, as the live gateway would have."""
    transitions: list[dict[str, Any]] = []

    def account(found: list[AlertTransition], held: list[AlertTransition]) -> None:
        held_ids = {id(t) for t in held}
        transitions.extend(describe(t, id(t) in held_ids and t.kind is Transition.FIRING) for t in found)

    pipeline.observers.append(account)
    count = play(pipeline, clock, recording.messages, tick_every)
    tickets = list(reversed(pipeline.db.tickets(limit=10**6)))
    return ReplayResult(count, transitions, tickets, pipeline.drops.as_dict(), pipeline.drops.details(),
                        recording.notes)
