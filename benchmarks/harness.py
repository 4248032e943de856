"""Real processes for benchmarks: mosquitto, the gateway CLI, the platform stand-in, load publishers."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from firmware_sim.localnet import LocalServiceError, MosquittoProcess, free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "benchmark-admin-token"
PYTHON = sys.executable


@contextlib.contextmanager
def mosquitto(folder: Path) -> Iterator[int]:
    broker = MosquittoProcess(folder, extra_config="max_queued_messages 0\n")
    broker.start()
    try:
        yield broker.port
    finally:
        broker.stop()


@contextlib.contextmanager
def platform(folder: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([PYTHON, "-m", "gateway", "platform", "--port", str(port), "--db",
                                str(folder / "platform.db")], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


@contextlib.contextmanager
def gateway(folder: Path, broker_port: int | None, upstream: str, extra_rules: tuple[Path, ...] = (),
            slots: int = 120, extra_toml: str = "", broker_toml: str = "") -> Iterator[tuple[psutil.Process, str]]:
    """`appliance-gateway run` with the shipped rules (plus `extra_rules`) against an external broker, or with
    `broker_port=None` on its defaults: the embedded broker, here on a free port (`embedded_port` in /api/status)."""
    web_port = free_port()
    rules_line = "paths = " + json.dumps([str(ROOT / "rules"), *(str(p) for p in extra_rules)])
    config = folder / "gateway.toml"
    broker_line = f'url = "mqtt://127.0.0.1:{broker_port}"' if broker_port else f"embedded_port = {free_port()}"
    config.write_text(f"""
[broker]
{broker_line}
{broker_toml}
[rules]
{rules_line}
profiles = "{ROOT / 'rules' / 'profiles'}"
[window]
slots = {slots}
[storage]
database = "{folder / 'gateway.db'}"
key_file = "{folder / 'gateway.key'}"
[upstream]
url = "{upstream}"
group_wait_seconds = 0
retry_min_seconds = 0.1
retry_max_seconds = 1.0
[web]
port = {web_port}
admin_token = "{ADMIN_TOKEN}"
{extra_toml}
""")
    log = (folder / "gateway.log").open("wb")
    process = subprocess.Popen([PYTHON, "-m", "gateway", "--log-level", "WARNING", "run", "--config", str(config)],
                               cwd=ROOT, stdout=log, stderr=log)
    try:
        try:
            wait_for_port(web_port)
        except LocalServiceError:
            log.close()
            raise LocalServiceError("the gateway did not start: "
                                    + (folder / "gateway.log").read_text(errors="replace")[-1500:]) from None
        base = f"http://127.0.0.1:{web_port}"
        deadline = time.monotonic() + 10
        while not status(base)["mqtt_connected"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not connect to the broker")
            time.sleep(0.05)
        yield psutil.Process(process.pid), base
    finally:
        stop_process(process)
        log.close()


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User and system CPU time of these processes (one that has exited counts nothing)."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def status(base: str) -> dict[str, Any]:
    request = urllib.request.Request(base + "/api/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def start_publishers(port: int, rate: float, seconds: float, devices: int,
                     processes: int = 1) -> list[subprocess.Popen[str]]:
    """Start `processes` publisher processes sharing `rate` msg/s for `seconds`."""
    return [
        subprocess.Popen([PYTHON, str(ROOT / "benchmarks" / "publisher.py"), "--port", str(port), "--rate",
                          str(rate / processes), "--seconds", str(seconds), "--devices", str(devices)],
                         stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]


def publish(port: int, rate: float, seconds: float, devices: int, processes: int = 1) -> dict[str, Any]:
    """Publish `rate` msg/s for `seconds`, split over `processes` publisher processes; returns totals."""
    return collect(start_publishers(port, rate, seconds, devices, processes))


def collect(workers: list[subprocess.Popen[str]]) -> dict[str, Any]:
    results = [json.loads(w.communicate()[0].strip().splitlines()[-1]) for w in workers]
    sent = sum(r["sent"] for r in results)
    elapsed = max(r["seconds"] for r in results)
    return {"sent": sent, "seconds": elapsed, "achieved_rate": sent / elapsed}


def scratch() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="gateway-bench-")
