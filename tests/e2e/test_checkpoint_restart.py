"""SIGKILL the gateway process half-way through a rule's `for`: after the restart the fault is found on its
original onset, when the condition has held for `for` in all, not `for` after the restart (real gateway process,
real mosquitto, real SQLite, the checkpoint file)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.platform import PlatformServer
from gateway.config import PROJECT_ROOT
from tests.e2e.conftest import Mosquitto, eventually
from tests.e2e.test_restart import GatewayProcess

pytestmark = pytest.mark.e2e

FOR_SECONDS = 20
RULE = f"""
groups:
  - name: checkpoint_test
    appliance: washer
    rules:
      - alert: door_not_locking_test
        expr: operational_state == 1 and door_locked == 0
        for: {FOR_SECONDS}s
        labels: {{category: fault}}
        diagnosis:
          code: WM-DOOR-LOCK
          title: {{en: "Washer door does not lock", zh: "洗衣机门锁不上"}}
          explanation: {{en: "The door lock does not engage.", zh: "门锁无法锁上。"}}
          severity: major
          causes:
            - {{cause: "Door lock failed", likelihood: 1.0, reason: "It does not engage."}}
          service_items: [washer_door_lock]
"""


def onsets(db: Path) -> list[float]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            return [float(r[0]) for r in conn.execute("SELECT onset_ts FROM incidents WHERE rule_id LIKE ?",
                                                      ("%door_not_locking_test",))]
        except sqlite3.OperationalError:
            return []


async def test_a_fault_half_way_through_its_for_is_found_on_time_after_sigkill(
        tmp_path: Path, mosquitto: Mosquitto, platform: PlatformServer) -> None:
    db = tmp_path / "gateway.db"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[broker]
url = "mqtt://127.0.0.1:{mosquitto.port}"
reconnect_min_seconds = 0.1
reconnect_max_seconds = 1.0
[storage]
database = "{db}"
key_file = "{tmp_path / 'gateway.key'}"
checkpoint_seconds = 1.0
[rules]
paths = ["{rules}"]
profiles = "{PROJECT_ROOT / 'rules' / 'profiles'}"
[upstream]
url = "{platform.url}"
[web]
port = 0
""")
    gateway = GatewayProcess(config, tmp_path / "gateway.log")
    appliance = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="checkpoint-washer")
    appliance.connect("127.0.0.1", mosquitto.port)
    appliance.loop_start()
    stop = asyncio.Event()

    async def report() -> None:  # the washer runs with its door unlocked: the fault, from its first sample
        while not stop.is_set():
            appliance.publish("appliances/w1/telemetry", orjson.dumps(
                {"ts": time.time(), "type": "washer", "metrics": {"operational_state": 1, "door_locked": 0}}), qos=1)
            await asyncio.sleep(1.0)

    gateway.start()
    reporter = None
    try:
        await eventually(lambda: "connected to MQTT broker" in gateway.log_text(), 20, "the gateway is up")
        onset = time.time()
        reporter = asyncio.create_task(report())
        await asyncio.sleep(FOR_SECONDS * 0.6)  # past half of the `for`, and several checkpoints
        assert (tmp_path / "checkpoint.npz").exists()
        assert gateway.signal(signal.SIGKILL) == -signal.SIGKILL
        assert onsets(db) == []
        gateway.start()
        await eventually(lambda: len(onsets(db)) == 1, FOR_SECONDS + 20, "the fault is found after the restart")
        found_at = time.time()
        assert "resumed 1 appliance(s)" in gateway.log_text()
    finally:
        stop.set()
        if reporter is not None:
            await reporter
        appliance.loop_stop()
        appliance.disconnect()
        if gateway.process is not None:
            gateway.signal(signal.SIGTERM)
        gateway.kill_if_running()
    [recorded] = onsets(db)
    assert recorded == pytest.approx(onset, abs=2.0), "the onset before the crash is the fault's onset"
    # `for` counted across the restart: found about FOR_SECONDS after the onset, not FOR_SECONDS after the restart
    assert found_at - onset < FOR_SECONDS + 8, gateway.log_text()[-3000:]
    assert "Traceback" not in gateway.log_text()
