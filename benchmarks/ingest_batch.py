"""Per-message Python work of batch ingest, in-process: the whole library, 11-metric air-conditioner messages.

    .venv/bin/python -m benchmarks.ingest_batch [--devices 500] [--rounds 40]

One Pipeline on a real SQLite file and a fake clock; each round every device sends one message. A round is fed
in batches of the given size, each batch staged (decode, profile checks, timeline), written to the window
store (one append_many per type) and evaluated (a rule pass), as the pipeline thread does. Batch 1 is a
gateway evaluating every message on its own (an idle one); under load the pipeline thread's batches hold tens
to hundreds of messages.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.publisher import payload
from gateway.clock import FakeClock
from gateway.config import GatewayConfig
from gateway.engine.library import load_library
from gateway.pipeline import Pipeline, PipelineSettings
from gateway.store.db import Database


def measure(batch: int, devices: int, rounds: int, folder: Path) -> dict[str, float]:
    """Microseconds per message of staging, writing and evaluating, after 5 warm-up rounds."""
    clock = FakeClock(1_800_000_000.0)
    pipeline = Pipeline(load_library(GatewayConfig()), Database(folder / f"batch-{batch}.db"), clock,
                        PipelineSettings(min_slots=120))
    topics = [f"appliances/bench-{i:05d}/telemetry" for i in range(devices)]
    spent = {"stage": 0.0, "write": 0.0, "evaluate": 0.0}
    start, counted = clock.now(), 0
    for r in range(1, rounds + 6):
        clock.set(start + r)
        messages = [(topics[i], payload(i, start + r)) for i in range(devices)]
        for first in range(0, devices, batch):
            part = messages[first:first + batch]
            a = time.perf_counter()
            pipeline.stage_all(part)
            b = time.perf_counter()
            pipeline.write_pending()
            c = time.perf_counter()
            pipeline.evaluate()
            d = time.perf_counter()
            if r > 5:
                spent["stage"] += b - a
                spent["write"] += c - b
                spent["evaluate"] += d - c
                counted += len(part)
        pipeline.tick(clock.now())
    return {name: seconds / counted * 1e6 for name, seconds in spent.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batches", default="1,16,160,500")
    args = parser.parse_args()
    print(f"command: .venv/bin/python -m benchmarks.ingest_batch --devices {args.devices} --rounds {args.rounds} "
          f"--batches {args.batches}")
    print(f"{'batch':>6} {'stage us':>9} {'write us':>9} {'evaluate us':>12} {'total us':>9} {'msg/s':>8}")
    with tempfile.TemporaryDirectory(prefix="ingest-batch-") as tmp:
        for batch in (int(b) for b in args.batches.split(",")):
            cost = measure(batch, args.devices, args.rounds, Path(tmp))
            total = sum(cost.values())
            print(f"{batch:>6} {cost['stage']:>9.1f} {cost['write']:>9.1f} {cost['evaluate']:>12.1f} "
                  f"{total:>9.1f} {1e6 / total:>8.0f}", flush=True)
    print("per message, one core, no MQTT: paho's own cost (about 16 us a message here) comes on top")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
