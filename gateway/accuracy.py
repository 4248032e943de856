"""`appliance-gateway score`: run a scenario's simulated appliances through a real gateway in replay mode and
score its tickets against the ground truth.

Replay mode: no broker and no network. Every message goes through the gateway's own ingest (decoding, profile
checks, vendor codes, drops), rules, incidents and ticket building, on a fresh SQLite file; the gateway's clock
follows the messages' true times, so days of simulated operation take seconds to minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from firmware_sim.scenario import SERIAL_PREFIX, Scenario, World
from firmware_sim.scoring import Report, score
from gateway.app import Gateway
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, HistoryConfig, StorageConfig, WebConfig
from gateway.ingest.uart import UartAdapter, adapter_for
from gateway.protocol.stream import FrameError, StreamDecoder
from gateway.protocol.topics import appliance_topic

MIN_EVALUATE_EVERY_SECONDS = 5.0


@dataclass
class Run:
    truth: list[dict[str, Any]]
    tickets: list[dict[str, Any]]
    messages: int
    dropped: dict[str, int]
    seconds: float


def run_scenario(scenario: Scenario, folder: Path, progress: Callable[[float], None] | None = None) -> Run:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("gateway.db*"):
        stale.unlink()
    config = GatewayConfig(site=f"scenario-{scenario.name}", web=WebConfig(enabled=False),
                           history=HistoryConfig(enabled=False),
                           storage=StorageConfig(database=str(folder / "gateway.db"),
                                                 key_file=str(folder / "gateway.key")))
    clock = FakeClock(scenario.start)
    gateway = Gateway(config, clock=clock)
    world = World(scenario, gateway.profiles)
    # A rule pass costs the same for one device or a thousand, so replay evaluates once per reporting interval
    # of the fastest appliance (ingest still evaluates before any device's second unevaluated sample).
    every = max(MIN_EVALUATE_EVERY_SECONDS, min((a.interval for a in scenario.appliances), default=10.0))
    started = time.perf_counter()
    last_evaluation = last_timer = last_progress = scenario.start
    count = 0
    try:
        lines: dict[str, tuple[UartAdapter, StreamDecoder[Any]]] = {}
        for ts, topic, payload in world.messages():
            if ts > clock.now():
                clock.set(ts)
            if topic.startswith(SERIAL_PREFIX):
                _serial_bytes(gateway, lines, topic[len(SERIAL_PREFIX):], payload, ts)
            else:
                gateway.ingest.handle(topic, payload)
            count += 1
            if ts - last_evaluation >= every:
                gateway.evaluate()
                last_evaluation = ts
            if ts - last_timer >= every:
                gateway.incidents.record(gateway.evaluator.evaluate_timer(ts), gateway.evaluator)
                _deliver_due(gateway, ts)
                last_timer = ts
            if progress is not None and ts - last_progress >= 3600:
                progress((ts - scenario.start) / scenario.duration)
                last_progress = ts
        gateway.evaluate()
        tickets = _ticket_views(gateway)
        dropped = gateway.drops.as_dict()
    finally:
        gateway.db.close()
    return Run([t.as_dict() for t in world.truth()], tickets, count, dropped, time.perf_counter() - started)


def _serial_bytes(gateway: Gateway, lines: dict[str, tuple[UartAdapter, StreamDecoder[Any]]], device_id: str,
                  data: bytes, now: float) -> None:
    """UART bytes through the gateway's own open-dialect decoder and adapter, as its serial link does."""
    if device_id not in lines:
        adapter = adapter_for("open", gateway.profiles)
        lines[device_id] = (adapter, adapter.decoder())
    adapter, decoder = lines[device_id]
    for frame in decoder.feed(data):
        try:
            records = adapter.records(frame, now)
        except FrameError:
            continue
        for kind, document in records:
            gateway.ingest.handle(appliance_topic(device_id, kind), orjson.dumps(document))


def _deliver_due(gateway: Gateway, now: float) -> None:
    """Stand in for the platform: a ticket is sent (and frozen) once its group wait is over, as live."""
    for entry in gateway.db.due_outbox(now, 10_000):
        gateway.db.mark_delivered(entry, f"replay-{entry.ticket_id}", now)


def _ticket_views(gateway: Gateway) -> list[dict[str, Any]]:
    code_of = {rule.rule_id: rule.diagnosis.code for rule in gateway.rules}
    by_ticket: dict[int, list[dict[str, Any]]] = {}
    for incident in gateway.db.incident_rows():
        by_ticket.setdefault(incident["ticket_id"], []).append(
            {"code": code_of.get(incident["rule_id"], incident["rule_id"]), "detected_ts": incident["detected_ts"],
             "onset_ts": incident["onset_ts"]})
    views = []
    for ticket in reversed(gateway.db.tickets(limit=10**7)):
        payload = ticket["payload"]
        views.append({"ticket_id": ticket["ticket_id"], "device": payload["appliance"]["device_id"],
                      "code": payload["fault"]["code"],
                      "top_cause": (payload.get("probable_causes") or [{}])[0].get("cause", ""),
                      "findings": by_ticket.get(ticket["ticket_id"], [])})
    return views


def score_run(scenario: Scenario, run: Run) -> Report:
    return score(scenario.name, scenario.appliance_days, run.truth, run.tickets)
