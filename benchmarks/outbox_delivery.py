"""Outbox delivery figures against the platform stand-in (its own process) on loopback.

    .venv/bin/python -m benchmarks.outbox_delivery [--tickets 2000] [--rate 20] [--seconds 15]

1. Throughput: N tickets already queued (each with a 300-sample evidence window, about 23 KB as sent),
   delivered with the default 4 requests in flight; tickets per second until the last is accepted.
2. Latency: incidents opened at a steady rate while the sender runs (group wait 0); for each, the time
   from the incident's transaction to the platform's accepted answer being recorded, p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.harness import platform
from firmware_sim.delivery_faults import until
from gateway.clock import SystemClock
from gateway.config import UpstreamConfig
from gateway.incidents.cases import open_incident
from gateway.model import CasePolicy, NewEpisode
from gateway.outbox.sender import OutboxSender
from gateway.store.db import Database


def ticket(device: str, key: str, samples: int = 300) -> dict[str, object]:
    rng = random.Random(key)
    window = [[1.75e9 + i] + [round(rng.uniform(0, 100), 2) for _ in range(11)] for i in range(samples)]
    return {"appliance": {"device_id": device}, "fault": {"code": "AC-CND-01"}, "idempotency_key": key,
            "probable_causes": [{"cause": "fan", "likelihood": 1.0, "reason": "benchmark"}],
            "evidence": {"window": window}}


def open_ticket(db: Database, key: str, now: float) -> None:
    device = f"ac-{key}"
    open_incident(db, NewEpisode("bench", "1", device, "fault", now, now, key), {"rule": "bench"},
                  lambda findings, k, _at: {**ticket(device, k), "findings_detail": findings}, now, CasePolicy())


async def throughput(db: Database, url: str, tickets: int) -> tuple[float, int]:
    for i in range(tickets):
        open_ticket(db, f"tp-{i}", time.time())
    size = len(db.due_outbox(time.time(), 1)[0].payload)
    sender = OutboxSender(db, UpstreamConfig(url=url), SystemClock())
    started = time.perf_counter()
    task = asyncio.create_task(sender.run())
    await until(lambda: db.outbox_counts()["delivered"] >= tickets, 600)
    elapsed = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return tickets / elapsed, size


async def latency(db: Database, url: str, rate: float, seconds: float) -> list[float]:
    sender = OutboxSender(db, UpstreamConfig(url=url), SystemClock())
    task = asyncio.create_task(sender.run())
    keys = []
    for i in range(int(rate * seconds)):
        key = f"lat-{i}"
        open_ticket(db, key, time.time())
        sender.wake()
        keys.append(key)
        await asyncio.sleep(1 / rate)
    await until(lambda: all(e["state"] == "delivered" for e in db.outbox_entries(limit=len(keys))), 120)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return [(e["delivered_at"] - e["created_at"]) * 1000 for e in db.outbox_entries(limit=len(keys))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20.0, help="incidents per second for the latency run")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, platform(Path(folder)) as url:
        print(f"machine: {os.cpu_count()} cores; platform stand-in in its own process at {url}")
        db = Database(Path(folder) / "throughput.db")
        per_second, size = await throughput(db, url, args.tickets)
        print(f"throughput: {args.tickets} queued tickets ({size / 1024:.0f} KB each) delivered at "
              f"{per_second:.0f} tickets/s")
        db.close()
        db = Database(Path(folder) / "latency.db")
        waits = sorted(await latency(db, url, args.rate, args.seconds))
        p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
        print(f"incident -> delivered at {args.rate:g} incidents/s ({len(waits)} tickets): "
              f"p50 {statistics.median(waits):.1f} ms, p99 {p99:.1f} ms, max {waits[-1]:.1f} ms")
        db.close()


if __name__ == "__main__":
    asyncio.run(main())
