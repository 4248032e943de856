"""Delivery under failure: each scenario queues tickets in a real gateway database, breaks the platform stand-in
(or the gateway process, or its disk) in one way, and counts what reached the platform.

Used by tests/e2e/test_delivery_faults.py (which asserts nothing is lost or duplicated) and by
benchmarks/delivery_faults.py (which prints the table). Every scenario is bounded in time and stops what it
started.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import signal
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from firmware_sim.fleet import SimClock
from firmware_sim.localnet import free_port
from firmware_sim.platform import PlatformServer
from gateway.clock import Clock, SystemClock
from gateway.config import PROJECT_ROOT, UpstreamConfig
from gateway.incidents.cases import open_incident
from gateway.model import CasePolicy, NewEpisode
from gateway.outbox.sender import OutboxSender
from gateway.store.db import Database


@dataclass(frozen=True)
class FaultResult:
    scenario: str
    expected: int
    delivered: int
    duplicated: int  # tickets at the platform beyond one per expected ticket (must be 0)
    lost: int  # expected tickets neither at the platform nor waiting in the outbox (must be 0)
    resends_absorbed: int  # POSTs the platform recognised by their idempotency key
    seconds: float
    note: str = ""

    def row(self) -> str:
        return (f"| {self.scenario} | {self.expected} | {self.delivered} | {self.duplicated} | {self.lost} | "
                f"{self.resends_absorbed} | {self.seconds:.1f} | {self.note} |")


TABLE_HEADER = ("| scenario | expected | delivered | duplicated | lost | resends absorbed | seconds | note |\n"
                "|---|---|---|---|---|---|---|---|")


def lab_ticket(device: str) -> Callable[[list[dict[str, Any]], str, float], dict[str, Any]]:
    """A minimal ticket the platform accepts (these scenarios test delivery, not diagnosis)."""
    def build(findings: list[dict[str, Any]], key: str, opened_at: float) -> dict[str, Any]:
        return {"appliance": {"device_id": device}, "fault": {"code": "AC-CND-01"}, "idempotency_key": key,
                "probable_causes": [{"cause": "fan", "likelihood": 1.0, "reason": "test"}], "evidence": {},
                "findings_detail": findings}
    return build


def queue_tickets(db: Database, count: int, prefix: str) -> list[str]:
    """Open `count` incidents, each with its ticket queued; returns their idempotency keys."""
    keys = []
    now = time.time()
    for i in range(count):
        key, device = f"{prefix}-{i:04d}", f"ac-{prefix}-{i}"
        open_incident(db, NewEpisode("fault_lab", "1", device, "fault", now, now, key), {"rule": "fault_lab"},
                      lab_ticket(device), now, CasePolicy())
        keys.append(key)
    return keys


def count(platform: PlatformServer, keys: list[str], db_path: Path, started: float, scenario: str,
          note: str = "") -> FaultResult:
    at_platform = [t["idempotency_key"] for t in platform.store.list_tickets()]
    expected = set(keys)
    delivered = len(expected & set(at_platform))
    duplicated = len(at_platform) - len(set(at_platform)) + len([k for k in at_platform if k not in expected])
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        waiting = {r[0] for r in conn.execute("SELECT idempotency_key FROM outbox WHERE state != 'delivered'")}
    lost = len(expected - set(at_platform) - waiting)
    return FaultResult(scenario, len(keys), delivered, duplicated, lost, platform.duplicates,
                       time.monotonic() - started, note)


async def until(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def _with_sender(tmp: Path, name: str, tickets: int, upstream: UpstreamConfig,
                       breakage: Callable[[PlatformServer, OutboxSender], Awaitable[str]],
                       clock: Clock | None = None, limit: float = 60) -> FaultResult:
    """Queue tickets, run the outbox sender against a stand-in broken by `breakage`, count the outcome."""
    folder = tmp / name
    folder.mkdir(parents=True, exist_ok=True)
    db = Database(folder / "gateway.db")
    keys = queue_tickets(db, tickets, name)
    port = free_port()
    platform = PlatformServer(folder / "platform.db", port=port, seed=7)
    sender = OutboxSender(db, replace(upstream, url=f"http://127.0.0.1:{port}"), clock or SystemClock(),
                          rng=random.Random(7))
    started = time.monotonic()
    task = asyncio.create_task(sender.run())
    try:
        note = await breakage(platform, sender)
        await until(lambda: db.outbox_counts()["delivered"] == tickets, limit)
        return count(platform, keys, folder / "gateway.db", started, name, note)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await platform.stop()
        db.close()


FAST_RETRY = UpstreamConfig(retry_min_seconds=0.05, retry_max_seconds=0.5, timeout_seconds=10)


async def platform_down(tmp: Path, tickets: int = 20) -> FaultResult:
    """No platform for 10 simulated minutes (gateway clock at 60x), then it comes up on the same port."""
    clock = SimClock(60.0)  # the gateway's clock at 60x, so 10 minutes of outage take 10 s

    async def breakage(platform: PlatformServer, sender: OutboxSender) -> str:
        await asyncio.sleep(10.0)  # 600 simulated seconds of refused connections
        await platform.start()
        return f"{sender.failed_attempts} refused attempts in 10 simulated min"

    upstream = UpstreamConfig(retry_min_seconds=1.0, retry_max_seconds=300.0, timeout_seconds=5)
    return await _with_sender(tmp, "platform down 10 min", tickets, upstream, breakage, clock, limit=30)


async def slow_platform(tmp: Path, tickets: int = 8) -> FaultResult:
    async def breakage(platform: PlatformServer, sender: OutboxSender) -> str:
        platform.faults.delay_seconds = 5.0
        await platform.start()
        return "every answer after 5 s; 4 in flight"

    return await _with_sender(tmp, "slow platform (5 s)", tickets, FAST_RETRY, breakage, limit=40)


async def random_500s(tmp: Path, tickets: int = 60) -> FaultResult:
    async def breakage(platform: PlatformServer, sender: OutboxSender) -> str:
        platform.faults.random_500 = 0.3
        await platform.start()
        await until(lambda: sender.delivered >= tickets, 30)
        return f"30% of answers are 500; {sender.failed_attempts} retried"

    return await _with_sender(tmp, "random 500s", tickets, FAST_RETRY, breakage)


async def accept_then_drop(tmp: Path, tickets: int = 20) -> FaultResult:
    async def breakage(platform: PlatformServer, sender: OutboxSender) -> str:
        platform.faults.drop_after_accept = 10
        await platform.start()
        await until(lambda: sender.delivered >= tickets, 30)
        return f"{platform.dropped_answers} tickets stored, then the connection cut before the answer"

    return await _with_sender(tmp, "accept, then drop the connection", tickets, FAST_RETRY, breakage)


def _gateway_toml(folder: Path, platform_url: str) -> Path:
    config = folder / "gateway.toml"
    config.write_text(f"""
site = "fault-lab"
[broker]
embedded_port = {free_port()}
[storage]
database = "{folder / 'gateway.db'}"
key_file = "{folder / 'gateway.key'}"
[rules]
paths = ["{PROJECT_ROOT / 'rules'}"]
profiles = "{PROJECT_ROOT / 'rules' / 'profiles'}"
[upstream]
url = "{platform_url}"
retry_min_seconds = 0.05
retry_max_seconds = 0.5
[web]
enabled = false
""")
    return config


class GatewayProcess:
    """`appliance-gateway run` as a child process; its output is collected through a pipe (a pipe, unlike a
    log file, still works when the child's file writes are limited)."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        """`args`: more options for `run` (--partition I --partitions N)."""
        self.config, self.log, self.args = config, log, args
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "--config", str(self.config), *self.args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=PROJECT_ROOT)
        self._reader = asyncio.create_task(self._collect(self.process))

    async def _collect(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        with self.log.open("ab") as out:
            async for line in process.stdout:
                out.write(line)
                out.flush()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def limit_file_size(self, size: int) -> None:
        """RLIMIT_FSIZE of the running gateway: 0 makes every file write fail (EFBIG), as on a full disk."""
        assert self.process is not None
        limit = resource.RLIM_INFINITY if size < 0 else size
        resource.prlimit(self.process.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int | None:
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        code = await asyncio.wait_for(self.process.wait(), 15)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        self.process = None
        return code


async def sigkill_loop(tmp: Path, tickets: int = 40, kills: int = 10, seed: int = 3) -> FaultResult:
    """The gateway process is killed with SIGKILL at random moments while it sends, and restarted."""
    folder = tmp / "sigkill"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    db = Database(folder / "gateway.db")
    keys = queue_tickets(db, tickets, "kill")
    db.close()
    platform = PlatformServer(folder / "platform.db", seed=seed)
    platform.faults.delay_seconds = 0.3  # slow enough that kills land while tickets are in flight
    await platform.start()
    gateway = GatewayProcess(_gateway_toml(folder, platform.url), folder / "gateway.log")
    started = time.monotonic()
    pending_at_kill = 0
    try:
        for _ in range(kills):
            await gateway.start()
            await until(lambda: "gateway running" in gateway.text()[-4000:], 20)
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            pending_at_kill += len(platform.store.list_tickets()) < tickets
            await gateway.stop(signal.SIGKILL)
        await gateway.start()
        await until(lambda: len(platform.store.list_tickets()) >= tickets, 60)
        await asyncio.sleep(0.5)
        await gateway.stop()
        return count(platform, keys, folder / "gateway.db", started, f"SIGKILL x{kills}, restart",
                     f"{pending_at_kill} of {kills} kills with tickets in flight or queued")
    finally:
        await gateway.stop(signal.SIGKILL)
        await platform.stop()


async def disk_full(tmp: Path, tickets: int = 10) -> FaultResult:
    """The gateway's disk fills while it runs: every SQLite write fails. It must say so, keep running, and
    deliver everything once there is room again."""
    folder = tmp / "disk-full"
    folder.mkdir(parents=True, exist_ok=True)
    db = Database(folder / "gateway.db")
    keys = queue_tickets(db, tickets, "full")
    db.close()
    platform = PlatformServer(folder / "platform.db")
    platform.fail_next(10**6)  # hold the tickets in the outbox until the disk is full
    await platform.start()
    gateway = GatewayProcess(_gateway_toml(folder, platform.url), folder / "gateway.log")
    started = time.monotonic()
    try:
        await gateway.start()
        await until(lambda: "gateway running" in gateway.text(), 20)
        gateway.limit_file_size(0)
        platform.fail_next(0)
        await until(lambda: "outbox storage failed" in gateway.text(), 20)
        await asyncio.sleep(3.0)
        assert gateway.process is not None
        alive = gateway.process.returncode is None
        gateway.limit_file_size(-1)
        await until(lambda: _delivered_in(folder / "gateway.db") == tickets, 30)
        errors = gateway.text().count("outbox storage failed")
        await gateway.stop()
        note = (f"{'kept running' if alive else 'EXITED'} while full; {errors} storage error line(s); "
                f"{platform.posts} POSTs in all")
        return count(platform, keys, folder / "gateway.db", started, "disk full, then room again", note)
    finally:
        await gateway.stop(signal.SIGKILL)
        await platform.stop()


def _delivered_in(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM outbox WHERE state='delivered'").fetchone()[0])


async def corrupt_database(tmp: Path) -> tuple[int | None, str]:
    """A database file overwritten with garbage: the gateway must refuse to start, once, with the reason."""
    folder = tmp / "corrupt"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gateway.db").write_bytes(b"this is not a database" * 200)
    gateway = GatewayProcess(_gateway_toml(folder, "http://127.0.0.1:9"), folder / "gateway.log")
    await gateway.start()
    assert gateway.process is not None
    await asyncio.wait_for(gateway.process.wait(), 30)
    code = await gateway.stop()
    return code, gateway.text()


SCENARIOS: dict[str, Callable[[Path], Awaitable[FaultResult]]] = {
    "platform_down": platform_down,
    "slow_platform": slow_platform,
    "random_500s": random_500s,
    "accept_then_drop": accept_then_drop,
    "sigkill_loop": sigkill_loop,
    "disk_full": disk_full,
}
