"""Soak: a fleet of simulated appliances against the gateway CLI on its embedded defaults for a long run, with
the gateway's RSS, CPU, open file descriptors and SQLite file sizes sampled every 10 s, and a verdict per figure:
flat after warm-up, or growing (and how fast).

    .venv/bin/python -m benchmarks.soak [--appliances 2000] [--minutes 30] [--interval 10] [--warmup-minutes 5]

The fleet (five appliance types, realistic models, one MQTT connection) runs in this process; the figures are
the gateway's own process plus its children (the embedded mosquitto). "Flat" means the least-squares slope over
the samples after warm-up, projected over that whole span, moves the figure by less than 5 % of its mean (CPU:
by less than 2 points of a core). The files grow by design while the history fills towards its first tier's
length (`history.minute_days`); their growth rate is printed with where it would level off.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from benchmarks.harness import cpu_seconds, gateway, platform, scratch, status
from firmware_sim.bulk_fleet import BulkFleet
from gateway.config import GatewayConfig, HistoryConfig

SAMPLE_SECONDS = 10.0
FLAT_SHARE = 0.05
FLAT_CPU_POINTS = 2.0
FILES = ("gateway.db", "gateway.db-wal", "history.db", "history.db-wal", "checkpoint.npz")


@dataclass
class Series:
    name: str
    unit: str
    values: list[float] = field(default_factory=list)


def process_tree(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return [process]


def verdict(series: Series, times: list[float], warmup: float) -> str:
    after = [(t, v) for t, v in zip(times, series.values, strict=True) if t >= warmup]
    if len(after) < 3:
        return "too short to say"
    t, v = np.array(after).T
    slope = float(np.polyfit(t, v, 1)[0])
    drift = slope * (t[-1] - t[0])
    mean = float(v.mean())
    limit = FLAT_CPU_POINTS if series.unit == "% of a core" else FLAT_SHARE * max(abs(mean), 1e-9)
    if abs(drift) < limit:
        return f"flat after warm-up (drift {drift:+.2f} {series.unit} over {(t[-1] - t[0]) / 60:.0f} min)"
    per_hour = slope * 3600
    trend = "GROWING" if drift > 0 else "falling"  # a leak grows; a figure settling after warm-up falls
    return f"{trend} {per_hour:+.2f} {series.unit}/hour after warm-up (drift {drift:+.2f} over the run)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appliances", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between one appliance's reports")
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    args = parser.parse_args()
    with scratch() as name:
        folder = Path(name)
        slots = GatewayConfig().window.slots
        with platform(folder) as upstream, gateway(folder, None, upstream, slots=slots) as (process, base):
            port = int(str(status(base)["broker_url"]).rsplit(":", 1)[1])
            fleet = BulkFleet(args.appliances, "127.0.0.1", port)
            fleet.connect()
            stop = asyncio.Event()
            loop = asyncio.new_event_loop()
            runner = threading.Thread(target=loop.run_until_complete,
                                      args=(fleet.run(stop, interval=args.interval),), daemon=True)
            runner.start()
            print(f"soak: {args.appliances:,} appliances every {args.interval:g} s "
                  f"({args.appliances / args.interval:,.0f} msg/s) for {args.minutes:g} min; a line every "
                  f"{SAMPLE_SECONDS:g} s", flush=True)
            rss = Series("RSS (gateway + embedded broker)", "MB")
            cpu = Series("CPU", "% of a core")
            fds = Series("open file descriptors", "fds")
            files = {f: Series(f, "MB") for f in FILES}
            times: list[float] = []
            started = time.monotonic()
            last_cpu, last_t = cpu_seconds(process_tree(process)), started
            try:
                while time.monotonic() - started < args.minutes * 60:
                    time.sleep(SAMPLE_SECONDS)
                    tree, now = process_tree(process), time.monotonic()
                    used = cpu_seconds(tree)
                    times.append(now - started)
                    cpu.values.append(100 * (used - last_cpu) / (now - last_t))
                    last_cpu, last_t = used, now
                    rss.values.append(sum(p.memory_info().rss for p in tree if p.is_running()) / 1e6)
                    fds.values.append(float(sum(p.num_fds() for p in tree if p.is_running())))
                    for file_name, series in files.items():
                        path = folder / file_name
                        series.values.append(path.stat().st_size / 1e6 if path.exists() else 0.0)
                    handled = status(base)["samples"]
                    print(f"{times[-1] / 60:5.1f} min  rss {rss.values[-1]:6.1f} MB  cpu {cpu.values[-1]:5.1f} %  "
                          f"fds {fds.values[-1]:4.0f}  history {files['history.db'].values[-1]:6.1f} MB  "
                          f"gateway.db {files['gateway.db'].values[-1]:5.1f} MB  samples {handled:,}", flush=True)
            finally:
                loop.call_soon_threadsafe(stop.set)
                runner.join(timeout=30)
                fleet.disconnect()
            final = status(base)
    warmup = args.warmup_minutes * 60
    print(f"\nafter {args.minutes:g} min (warm-up {args.warmup_minutes:g} min), {fleet.published:,} reports "
          f"published, {final['samples']:,} samples handled, drops {final['dropped']}")
    print("| figure | first after warm-up | last | verdict |\n|---|---|---|---|")
    for series in (rss, cpu, fds, *files.values()):
        after = [v for t, v in zip(times, series.values, strict=True) if t >= warmup] or series.values
        print(f"| {series.name} ({series.unit}) | {after[0]:.1f} | {series.values[-1]:.1f} | "
              f"{verdict(series, times, warmup)} |")
    history = files["history.db"]
    if len(times) > 2 and history.values[-1] > history.values[0]:
        per_hour = float(np.polyfit(times, history.values, 1)[0]) * 3600
        kept = HistoryConfig()
        hours_of_minutes = kept.minute_days * 24
        level = per_hour * hours_of_minutes + per_hour * (kept.days * 24 - hours_of_minutes) / 60
        where = (f"levels off near {level:,.0f} MB" if level <= kept.max_megabytes else
                 f"would reach {level:,.0f} MB, so the budget holds it at {kept.max_megabytes:,.0f} MB "
                 "(the oldest rows dropped first)")
        print(f"history.db grows {per_hour:.1f} MB/hour while it fills its minute tier; at the defaults "
              f"(minutes for {kept.minute_days:g} day, then hours until {kept.days:g} days, budget "
              f"{kept.max_megabytes:,.0f} MB) it {where}")


if __name__ == "__main__":
    main()
