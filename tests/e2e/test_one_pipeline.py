"""One pipeline: the live gateway (real broker, real SQLite, its pipeline thread), `replay` and the scorer's runner
see the same transitions and put the same incidents on the same tickets for one recording.

The recording has every appliance type, a component fault (an AC's condenser fan), impossible values (a fridge's
freezer sensor), a vendor code (an LG washer's OE) and a code the gateway does not know. The live gateway runs on
a fake clock that the test moves behind the published messages, so its time-driven rules see what they would
have seen live; replay and scoring tick at their own pace. None of that may change a transition.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.localnet import free_port
from firmware_sim.models import MODELS, FaultSchedule
from gateway.accuracy import run_messages
from gateway.app import Gateway
from gateway.clock import FakeClock
from gateway.config import BrokerConfig, GatewayConfig, HistoryConfig, StorageConfig, UpstreamConfig, WebConfig
from gateway.engine.evaluator import AlertTransition
from gateway.engine.library import load_library
from gateway.pipeline import Pipeline, settings_from_config
from gateway.replay import Message, Recording, replay
from gateway.store.db import Database
from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e

START = time.time() - 3 * 3600  # within ingest's accepted past, so the live gateway takes every sample
DURATION = 600.0
FLEET = {  # device: (type, brand, reporting interval, fault)
    "ac-1": ("air_conditioner", "Midea", 1.0, FaultSchedule("condenser_fan_failure", START + 60, 0)),
    "fr-1": ("refrigerator", "Haier", 5.0, None),
    "wm-1": ("washer", "LG", 2.0, None),
    "wh-1": ("water_heater", "AO Smith", 10.0, None),
    "dw-1": ("dishwasher", "Bosch", 2.0, None),
}


def recording() -> list[Message]:
    messages = [Message(START, f"appliances/{d}/meta",
                        orjson.dumps({"type": kind, "brand": brand, "model": "M1"}))
                for d, (kind, brand, _, _) in FLEET.items()]
    for device, (kind, _, interval, fault) in FLEET.items():
        model = MODELS[kind](7, fault)
        for i in range(int(DURATION / interval)):
            ts = START + 1 + i * interval
            metrics = model.sample(ts)
            if device == "fr-1" and i % 20 == 5:  # the freezer sensor reads impossible values now and then
                metrics["freezer_temperature"] = 999.0
            messages.append(Message(ts, f"appliances/{device}/telemetry",
                                    orjson.dumps({"ts": ts, "metrics": metrics})))
    messages.append(Message(START + 300, "appliances/wm-1/event", orjson.dumps({"ts": START + 300, "code": "OE"})))
    messages.append(Message(START + 310, "appliances/wm-1/event", orjson.dumps({"ts": START + 310, "code": "Q9"})))
    return sorted(messages, key=lambda m: m.ts)


def config(folder: Path) -> GatewayConfig:
    return GatewayConfig(site="equivalence", broker=BrokerConfig(embedded_port=0),
                         storage=StorageConfig(database=str(folder / "gateway.db"),
                                               key_file=str(folder / "gateway.key")),
                         upstream=UpstreamConfig(url=f"http://127.0.0.1:{free_port()}"),  # nothing listens
                         web=WebConfig(enabled=False), history=HistoryConfig(enabled=False))


def transition_key(transition: AlertTransition) -> tuple[Any, ...]:
    return (transition.device_id, transition.rule.rule_id, transition.kind.value, round(transition.onset_ts, 3),
            round(transition.at_ts, 3))


def cases(db_path: Path) -> list[tuple[str, tuple[tuple[str, float], ...]]]:
    """Each ticket as (device, the (rule, onset) of every incident on it): the case structure, whoever delivered."""
    db = Database(db_path)
    by_ticket: dict[int, list[tuple[str, float]]] = {}
    devices: dict[int, str] = {}
    for row in db.incident_rows():
        by_ticket.setdefault(row["ticket_id"], []).append((row["rule_id"], round(row["onset_ts"], 3)))
        devices[row["ticket_id"]] = row["device_id"]
    db.close()
    return sorted((devices[t], tuple(sorted(found))) for t, found in by_ticket.items())


def observe(pipeline: Pipeline, into: list[tuple[Any, ...]]) -> None:
    def account(found: list[AlertTransition], held: list[AlertTransition]) -> None:
        held_ids = {id(t) for t in held}
        into.extend((*transition_key(t), id(t) in held_ids) for t in found)
    pipeline.observers.append(account)


def run_replay(folder: Path, messages: list[Message]) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    folder.mkdir()
    cfg = config(folder)
    clock = FakeClock(START)
    db = Database(folder / "gateway.db")
    pipeline = Pipeline(load_library(cfg), db, clock, settings_from_config(cfg))
    seen: list[tuple[Any, ...]] = []
    observe(pipeline, seen)
    result = replay(Recording(messages), pipeline, clock)
    db.close()
    return seen, result.dropped


def run_score(folder: Path, messages: list[Message]) -> list[tuple[Any, ...]]:
    """The scorer's runner: ticks every 5 s and delivers tickets after their group wait."""
    folder.mkdir()
    seen: list[tuple[Any, ...]] = []
    run_messages(messages, config(folder), START, 5.0, observe=lambda pipeline: observe(pipeline, seen))
    return seen


async def run_live(folder: Path, messages: list[Message]) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    clock = FakeClock(START)
    gateway = Gateway(config(folder), clock=clock)
    seen: list[tuple[Any, ...]] = []
    observe(gateway.pipeline, seen)
    ready = asyncio.Event()
    task = asyncio.create_task(gateway.run(ready))
    await asyncio.wait_for(ready.wait(), 30)
    await eventually(lambda: gateway.link is not None and gateway.link.connected, 10, "gateway connects")
    assert gateway.broker is not None
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="equivalence-publisher")
    await asyncio.to_thread(client.connect, gateway.broker.host, gateway.broker.port)
    client.loop_start()
    try:
        published = 0
        chunk_end = START + 5
        for message in messages:
            if message.ts >= chunk_end:  # the gateway's clock follows the stream, a chunk behind
                await eventually(lambda n=published: gateway.ingest.messages >= n, 30, "the chunk is ingested")
                clock.set(chunk_end - 5)
                chunk_end += 5
            info = client.publish(message.topic, message.payload, qos=1)
            published += 1
            if published % 200 == 0:
                await asyncio.to_thread(info.wait_for_publish, 10)
        await asyncio.to_thread(info.wait_for_publish, 10)
        await eventually(lambda: gateway.ingest.messages >= published, 30, "every message is ingested")
        await asyncio.sleep(0.5)  # the last rule pass
    finally:
        await asyncio.to_thread(client.disconnect)
        await asyncio.to_thread(client.loop_stop)
        gateway.request_stop()
        await asyncio.wait_for(task, 30)
    return seen, gateway.drops.as_dict()


async def test_live_replay_and_score_agree_on_every_transition_and_ticket(tmp_path: Path) -> None:
    messages = recording()
    replayed, replay_drops = run_replay(tmp_path / "replay", messages)
    scored = run_score(tmp_path / "score", messages)
    (tmp_path / "live").mkdir()
    live, live_drops = await run_live(tmp_path / "live", messages)

    rules_seen = {t[1] for t in replayed if t[2] == "firing"}
    assert "condenser_airflow_loss" in rules_seen, "the AC's fault is found"
    assert "refrigerator_sensor_out_of_range" in rules_seen, "the impossible readings are found"
    assert "vendor_drain_timeout" in rules_seen, "the washer's OE code is found"
    assert replay_drops.get("out_of_range", 0) >= 3 and replay_drops.get("unknown_vendor_code") == 1

    assert len(replayed) >= 3, replayed
    assert sorted(live) == sorted(replayed), "live and replay disagree"
    assert sorted(scored) == sorted(replayed), "the scorer and replay disagree"
    assert live_drops == replay_drops
    replay_cases = cases(tmp_path / "replay" / "gateway.db")
    assert {device for device, _ in replay_cases} >= {"ac-1", "fr-1", "wm-1"}
    assert cases(tmp_path / "live" / "gateway.db") == replay_cases
    assert cases(tmp_path / "score" / "gateway.db") == replay_cases
