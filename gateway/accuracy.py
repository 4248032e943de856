"""`appliance-gateway score`: run a scenario's simulated appliances through a real gateway in replay mode and
score its tickets against the ground truth.

Replay mode: no broker and no network. Every message goes through the gateway's one Pipeline (decoding, profile
checks, vendor codes, drops, rules, incidents, cases and ticket building) on a fresh SQLite file; the clock
follows the messages' true times, so days of simulated operation take seconds to minutes.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from firmware_sim.scenario import SERIAL_PREFIX, Scenario, World
from firmware_sim.scoring import Report, score
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, HistoryConfig, StorageConfig, WebConfig, resolve_path
from gateway.diagnosis.seal import load_or_create_key
from gateway.engine.library import load_library
from gateway.ingest.uart import UartAdapter, adapter_for
from gateway.pipeline import Pipeline, settings_from_config
from gateway.protocol.stream import FrameError, StreamDecoder
from gateway.protocol.topics import appliance_topic
from gateway.replay import Message, play
from gateway.store.db import Database

MIN_TICK_SECONDS = 5.0


@dataclass
class Run:
    truth: list[dict[str, Any]]
    tickets: list[dict[str, Any]]
    messages: int
    dropped: dict[str, int]
    seconds: float  # wall time
    cpu_seconds: float  # this process's CPU time (user + system)


def scenario_config(scenario: Scenario, folder: Path) -> GatewayConfig:
    """The gateway's defaults (group wait, reopen window, limits), with a fresh database in `folder`."""
    return GatewayConfig(site=f"scenario-{scenario.name}", web=WebConfig(enabled=False),
                         history=HistoryConfig(enabled=False),
                         storage=StorageConfig(database=str(folder / "gateway.db"),
                                               key_file=str(folder / "gateway.key")))


def run_scenario(scenario: Scenario, folder: Path, progress: Callable[[float], None] | None = None) -> Run:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("gateway.db*"):
        stale.unlink()
    config = scenario_config(scenario, folder)
    world = World(scenario, load_library(config).profiles)
    # A rule pass costs the same for one device or a thousand, so the scenario ticks once per reporting interval
    # of its fastest appliance (at least 5 s); each sample is still evaluated on its own (see gateway.pipeline).
    every = max(MIN_TICK_SECONDS, min((a.interval for a in scenario.appliances), default=10.0))

    def report(now: float) -> None:
        if progress is not None:
            progress((now - scenario.start) / scenario.duration)

    messages = _messages(world, world.profiles)
    run = run_messages(messages, config, scenario.start, every, report)
    run.truth = [t.as_dict() for t in world.truth()]
    return run


def run_messages(messages: Iterable[Message], config: GatewayConfig, start: float, tick_every: float,
                 progress: Callable[[float], None] | None = None,
                 observe: Callable[[Pipeline], None] | None = None) -> Run:
    """Play messages through a fresh Pipeline on the config's database, with a platform stand-in that takes
    each ticket once its group wait is over; returns the tickets as the scorer reads them."""
    clock = FakeClock(start)
    db = Database(resolve_path(config, config.storage.database))
    pipeline = Pipeline(load_library(config), db, clock, settings_from_config(config),
                        seal_key=load_or_create_key(resolve_path(config, config.storage.key_file)))
    if observe is not None:
        observe(pipeline)
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    last_progress = [start]

    def tick(now: float) -> None:
        _deliver_due(db, now)
        if progress is not None and now - last_progress[0] >= 3600:
            progress(now)
            last_progress[0] = now

    try:
        count = play(pipeline, clock, messages, tick_every, on_tick=tick)
        tickets = _ticket_views(pipeline)
        dropped = pipeline.drops.as_dict()
    finally:
        db.close()
    return Run([], tickets, count, dropped, time.perf_counter() - started, _cpu_seconds() - cpu_started)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _messages(world: World, profiles: dict[str, Any]) -> Iterator[Message]:
    """The world's messages as the gateway receives them; serial appliances' bytes through the gateway's own
    decoder and adapter for their dialect first, as its serial link does."""
    lines: dict[str, tuple[UartAdapter, StreamDecoder[Any]]] = {}
    for ts, topic, payload in world.messages():
        if not topic.startswith(SERIAL_PREFIX):
            yield Message(ts, topic, payload)
            continue
        device_id = topic[len(SERIAL_PREFIX):]
        if device_id not in lines:
            adapter = adapter_for(world.appliances[device_id].dialect, profiles)
            lines[device_id] = (adapter, adapter.decoder())
        adapter, decoder = lines[device_id]
        for frame in decoder.feed(payload):
            try:
                records = adapter.records(frame, ts)
            except FrameError:
                continue
            for kind, document in records:
                yield Message(ts, appliance_topic(device_id, kind), orjson.dumps(document))


def _deliver_due(db: Database, now: float) -> None:
    """Stand in for the platform: a ticket is sent (and frozen) once its group wait is over, as live."""
    for entry in db.due_outbox(now, 10_000):
        db.mark_delivered(entry, f"replay-{entry.ticket_id}", now)


def _ticket_views(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Each ticket as the platform received it: the findings it was sent with, and those added later (marked
    late: the platform heard of them as `finding_added` steps)."""
    code_of = {rule.rule_id: rule.diagnosis.code for rule in pipeline.rules}
    metrics_of = {rule.rule_id: sorted(rule.expr.metrics) for rule in pipeline.rules}
    by_ticket: dict[int, list[dict[str, Any]]] = {}
    for incident in pipeline.db.incident_rows():
        by_ticket.setdefault(incident["ticket_id"], []).append(incident)
    views = []
    for ticket in reversed(pipeline.db.tickets(limit=10**7)):
        payload = ticket["payload"]
        top_cause = (payload.get("probable_causes") or [{}])[0].get("cause", "")
        sent = {(f["rule"], round(float(f["onset_ts"]), 3)) for f in payload.get("findings", [])}
        # a late finding reached the platform as a `finding_added` step naming its own causes
        late_causes = {(rule, round(float(onset or 0.0), 3)): cause for rule, onset, cause in ticket["late_top_causes"]}
        findings = []
        for i in by_ticket.get(ticket["ticket_id"], []):
            key = (i["rule_id"], round(float(i["onset_ts"]), 3))
            findings.append({"code": code_of.get(i["rule_id"], i["rule_id"]), "detected_ts": i["detected_ts"],
                             "onset_ts": i["onset_ts"], "late": key not in sent,
                             "metrics": metrics_of.get(i["rule_id"], []),
                             "top_cause": top_cause if key in sent else late_causes.get(key, top_cause)})
        views.append({"ticket_id": ticket["ticket_id"], "device": payload["appliance"]["device_id"],
                      "code": payload["fault"]["code"], "top_cause": top_cause, "findings": findings})
    return views


def score_run(scenario: Scenario, run: Run) -> Report:
    return score(scenario.name, scenario.appliance_days, run.truth, run.tickets)
