"""Cost of the telemetry history: computing and writing 1-minute aggregates from the window store.

    .venv/bin/python -m benchmarks.history_write [--devices 1000 10000]

Every air conditioner reports all 16 metrics every second for a minute (the window holds them); the history
flush then computes min/mean/max/last per device and metric and writes the rows, on a worker thread in the
gateway (timed here in line). Ingest itself does no history work.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from gateway.config import GatewayConfig
from gateway.engine.library import build_window_store, load_library
from gateway.store.history import History


def run(devices: int) -> None:
    profiles = load_library(GatewayConfig()).profiles
    profile = profiles["air_conditioner"]
    store = build_window_store({"air_conditioner": profile}, {"air_conditioner": 120}, devices)
    window = store.windows["air_conditioner"]
    names = profile.metric_names
    rng = np.random.default_rng(1)
    start = 1_750_000_020.0 - 1_750_000_020.0 % 60
    values = rng.uniform(0, 50, size=(60, devices, len(names)))
    rows = [window.row(f"ac-{d}") for d in range(devices)]
    for second in range(60):
        for d, row in enumerate(rows):
            window.append(row, start + second, dict(zip(names, values[second, d].tolist(), strict=True)))
    readings = 60 * devices * len(names)
    with tempfile.TemporaryDirectory() as folder:
        history = History(Path(folder) / "history.db", store, {"air_conditioner": 1.0})
        history._next_minute["air_conditioner"] = start
        began = time.perf_counter()
        minute_rows = history.collect(start + 66)
        computed = time.perf_counter()
        history.write(minute_rows)
        written = time.perf_counter()
        history.close()
    compute_ms, write_ms = (computed - began) * 1000, (written - computed) * 1000
    print(f"{devices:>6} devices x {len(names)} metrics x 60 s = {readings:>10,} readings -> {len(minute_rows):,} "
          f"minute rows: compute {compute_ms:.0f} ms, write {write_ms:.0f} ms; "
          f"{(compute_ms + write_ms) * 1000 / (readings / 1000):.2f} us per 1,000 readings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[1000, 10000])
    for devices in parser.parse_args().devices:
        run(devices)


if __name__ == "__main__":
    main()
