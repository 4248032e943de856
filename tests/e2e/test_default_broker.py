"""The gateway on its defaults: the embedded broker (a child process) carries a building's load without loss, and
when the broker falls behind the gateway says so on /api/status, /metrics and once in the log."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from firmware_sim.platform import PlatformServer
from gateway.config import BrokerConfig
from tests.e2e.conftest import ADMIN, StartGateway, eventually

pytestmark = pytest.mark.e2e

PUBLISHER = Path(__file__).resolve().parents[2] / "benchmarks" / "publisher.py"


def publisher(port: int, rate: float, seconds: float, devices: int = 300) -> subprocess.Popen[str]:
    """A load publisher in its own process, like a fleet of appliances."""
    return subprocess.Popen([sys.executable, str(PUBLISHER), "--port", str(port), "--rate", str(rate), "--seconds",
                             str(seconds), "--devices", str(devices)], stdout=subprocess.PIPE, text=True)


async def sent_by(process: subprocess.Popen[str]) -> int:
    out, _ = await asyncio.to_thread(process.communicate, timeout=60)
    return int(json.loads(out.strip().splitlines()[-1])["sent"])


@pytest.mark.parametrize("kind", ["auto", "amqtt"])
async def test_the_embedded_broker_carries_1000_messages_a_second_without_loss(
        start_gateway: StartGateway, platform: PlatformServer, kind: str) -> None:
    """auto: mosquitto, which `make test` installs; amqtt: the fallback where mosquitto is not installed."""
    running = await start_gateway(broker=BrokerConfig(embedded_port=0, embedded_broker=kind,
                                                      reconnect_min_seconds=0.1, reconnect_max_seconds=1.0))
    gateway = running.gateway
    assert gateway.broker is not None and gateway.broker.pid != os.getpid(), "the broker is a process of its own"
    assert gateway.broker.kind == ("mosquitto" if kind == "auto" else "amqtt")
    sent = await sent_by(publisher(running.broker_port, 1000, 10))
    assert sent >= 9_900
    await eventually(lambda: gateway.ingest.samples >= sent, 20, "every message is stored")
    assert gateway.ingest.samples == sent
    assert gateway.drops.total == 0
    assert gateway.status()["broker"]["state"] == "ok"


async def test_a_broker_that_falls_behind_is_reported(start_gateway: StartGateway, platform: PlatformServer,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    running = await start_gateway()
    gateway = running.gateway
    assert gateway.broker is not None and gateway.broker.pid is not None
    load = publisher(running.broker_port, 500, 30)
    await eventually(lambda: gateway.ingest.samples > 500, 10, "telemetry flows")
    assert gateway.status()["broker"]["state"] == "ok"
    with caplog.at_level(logging.INFO, logger="gateway.mqtt"):
        os.kill(gateway.broker.pid, signal.SIGSTOP)  # the broker stalls: messages wait at the publisher
        try:
            await asyncio.sleep(15)  # most of what waits is then more than 5 s late
        finally:
            os.kill(gateway.broker.pid, signal.SIGCONT)
        await eventually(lambda: gateway.status()["broker"]["state"] == "behind", 10,
                         "the late telemetry shows the broker fell behind")
        async with aiohttp.ClientSession(headers=ADMIN) as http:
            base = f"http://127.0.0.1:{gateway.web_port}"
            async with http.get(f"{base}/metrics") as answer:
                assert "appliance_gateway_broker_link_behind 1" in await answer.text()
            async with http.get(f"{base}/gateway") as answer:
                assert "FALLING BEHIND" in await answer.text()
        await sent_by(load)
        await eventually(lambda: gateway.status()["broker"]["state"] == "ok", 20, "the link catches up")
    warnings = [r for r in caplog.records if "falling behind" in r.getMessage()]
    assert len(warnings) == 1, "said once, not on every second"
    assert any("caught up" in r.getMessage() for r in caplog.records)
    assert gateway.status()["broker"]["times_behind"] == 1
