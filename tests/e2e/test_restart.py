"""Kill -9 and restart the gateway process mid-run: the fault keeps going, yet exactly one ticket arrives."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_sim.fleet import FleetSpec
from firmware_sim.load_faults import incidents_in
from firmware_sim.platform import PlatformServer
from gateway.config import PROJECT_ROOT
from tests.e2e.conftest import Mosquitto, eventually
from tests.e2e.test_fault_to_ticket import fleet_running

pytestmark = pytest.mark.e2e


class GatewayProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(self.config)],
                                            stdout=log, stderr=log, cwd=PROJECT_ROOT)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=15)
        self.process = None
        return code

    def kill_if_running(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def test_kill_and_restart_opens_no_duplicate_ticket(
        tmp_path: Path, mosquitto: Mosquitto, platform: PlatformServer) -> None:
    db = tmp_path / "gateway.db"
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
site = "restart-home"
[broker]
url = "mqtt://127.0.0.1:{mosquitto.port}"
reconnect_min_seconds = 0.1
reconnect_max_seconds = 1.0
[storage]
database = "{db}"
key_file = "{tmp_path / 'gateway.key'}"
[rules]
paths = ["{PROJECT_ROOT / 'rules'}"]
profiles = "{PROJECT_ROOT / 'rules' / 'profiles'}"
[upstream]
url = "{platform.url}"
group_wait_seconds = 0.5
retry_min_seconds = 0.2
retry_max_seconds = 1.0
[web]
port = 0
""")
    gateway = GatewayProcess(config, tmp_path / "gateway.log")
    spec = FleetSpec(air_conditioners=2, refrigerators=1, washers=0, faulty_device="ac-01",
                     fault_after_seconds=5, fault_ramp_seconds=5)
    platform.fail_next(10_000)  # the platform is down: the ticket must wait in the outbox
    gateway.start()
    try:
        await eventually(lambda: "connected to MQTT broker" in gateway.log_text(), 20, "the gateway is up")
        async with fleet_running(spec, "127.0.0.1", mosquitto.port):
            await eventually(lambda: incidents_in(db) == 1, 30, "the gateway records the incident")
            await eventually(lambda: platform.posts >= 1, 10, "the gateway tries to send and is refused")
            assert platform.store.list_tickets() == []
            assert gateway.signal(signal.SIGKILL) == -signal.SIGKILL  # killed with the ticket undelivered

            platform.fail_next(0)
            gateway.start()
            await eventually(lambda: len(platform.store.list_tickets()) == 1, 30, "the queued ticket is delivered")
            await asyncio.sleep(2)  # 20 simulated seconds more with the fault still present

            assert gateway.signal(signal.SIGKILL) == -signal.SIGKILL  # and once more after delivery
            gateway.start()
            await eventually(lambda: gateway.log_text().count("resumed 1 open incident") == 2, 20,
                             "the restarted gateway resumes the open incident")
            await asyncio.sleep(2)
            assert gateway.signal(signal.SIGTERM) == 0, gateway.log_text()[-2000:]
    finally:
        gateway.kill_if_running()

    assert len(platform.store.list_tickets()) == 1, "exactly one ticket upstream"
    assert incidents_in(db) == 1, "one incident for one fault episode"
    assert platform.posts >= 2  # refused while down, then accepted
    assert "Traceback" not in gateway.log_text()
