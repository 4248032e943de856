"""InfluxDB sink sustained write rate, against Debian's victoria-metrics (InfluxDB v2 write API) on loopback.

    .venv/bin/python -m benchmarks.influx_sink [--samples 200000]

Buffers N air-conditioner samples (11 fields each, one line-protocol point per sample) as ingest would,
then times the sink draining them with its default batch size (5,000 points per write).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from firmware_sim.delivery_faults import until
from firmware_sim.localnet import VictoriaMetricsProcess
from gateway.config import InfluxConfig
from gateway.ingest.registry import DeviceRegistry
from gateway.sinks.influx import InfluxSink
from gateway.store.db import Database


async def run(samples: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        server = VictoriaMetricsProcess(Path(folder))
        server.start()
        try:
            registry = DeviceRegistry({"air_conditioner"})
            for d in range(100):
                registry.set_meta(f"ac-{d}", {"type": "air_conditioner", "brand": "Gree", "model": "KFR-26GW"})
            db = Database(Path(folder) / "gw.db")
            sink = InfluxSink(InfluxConfig(url=server.url, org="home", max_buffered_samples=samples + 1),
                              registry, db, "bench")
            start = time.time() - samples / 100
            fields = ("compressor_on", "compressor_current", "discharge_pressure", "discharge_temperature",
                      "suction_pressure", "suction_temperature", "outdoor_temperature", "local_temperature",
                      "liquid_line_temperature", "indoor_coil_temperature", "outdoor_fan_speed")
            began = time.perf_counter()
            for i in range(samples):
                sink.add_sample(f"ac-{i % 100}", start + i / 100, {f: float(i % 97) + k for k, f in enumerate(fields)})
            buffered = time.perf_counter() - began
            task = asyncio.create_task(sink.run())
            began = time.perf_counter()
            await until(lambda: sink.points_written >= samples, 600)
            elapsed = time.perf_counter() - began
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            db.close()
        finally:
            server.stop()
    print(f"buffering (the ingest side, including building each 11-field sample here): "
          f"{buffered / samples * 1e6:.2f} us per sample")
    print(f"{samples:,} points of {len(fields)} fields written in {elapsed:.1f} s: {samples / elapsed:,.0f} points/s "
          f"({samples * len(fields) / elapsed:,.0f} field values/s), {sink.write_failures} failed writes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200_000)
    asyncio.run(run(parser.parse_args().samples))


if __name__ == "__main__":
    main()
