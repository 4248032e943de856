"""Play a scenario live: its appliances over one MQTT connection in (scaled) real time, from now."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.scenario import World, load_scenario
from gateway.config import GatewayConfig
from gateway.engine.library import load_library


async def play_scenario(path: Path, host: str, port: int, scale: float, stop: asyncio.Event) -> int:
    """A scenario in (scaled) real time over one MQTT connection, starting now; prints its ground truth at the end."""
    scenario = load_scenario(path)
    scenario.start = time.time()
    world = World(scenario, load_library(GatewayConfig()).profiles)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"scenario-{scenario.name}", protocol=mqtt.MQTTv311)
    client.max_queued_messages_set(0)
    await asyncio.to_thread(client.connect, host, port)
    client.loop_start()
    print(f"playing {scenario.name}: {len(scenario.appliances)} appliances for {scenario.duration:g} s "
          f"at {scale:g}x to {host}:{port}", flush=True)
    if scale > 1:
        print("note: at more than real time the reports' timestamps run ahead of the clock; a gateway accepts "
              "them only as far as its ingest.max_future_seconds allows", flush=True)
    sent = 0
    for ts, topic, payload in world.messages():
        wait = (ts - scenario.start) / scale - (time.time() - scenario.start)
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
        if stop.is_set():
            break
        retained = topic.endswith(("/meta", "/status"))
        last = client.publish(topic, payload, qos=1 if retained else 0, retain=retained)
        sent += 1
    if sent:
        await asyncio.to_thread(last.wait_for_publish, 10)
    await asyncio.to_thread(client.disconnect)
    client.loop_stop()
    print(f"sent {sent} messages; ground truth (what the appliances showed):")
    for entry in world.truth():  # after the run: a washer fault no program reached was never there to see
        print("  " + orjson.dumps(entry.as_dict()).decode(), flush=True)
    return 0
