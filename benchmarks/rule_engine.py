"""The whole rule library over many devices: time per evaluation tick, and memory per device.

    .venv/bin/python -m benchmarks.rule_engine [--devices 1000,10000,100000] [--ticks 5]

Devices are split evenly over the five appliance types. Every window is filled to its full length with
plausible values first (the longest window each type's rules read, at the profile's reporting interval), then
every device reports one sample per tick and the whole library (written and built-in rules) is evaluated:
the worst case of the micro-batch design, where all devices are dirty at once. Rules reading long windows run
on their cadence (1/20 of the window, at most 30 s), so the table gives the median tick, the worst tick (when
they come due) and the mean. Rule evaluations/s counts every rule for every device each second. Ingest cost
per message is measured separately by benchmarks/ingest_throughput.py. `RSS MB` is the whole process after
the ticks (the interpreter, the library and the store, with what the filling left); `trimmed` the same after
the allocator's free pages went back to the system, as the gateway does every 30 s (gateway/memory.py).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import psutil

from gateway.config import GatewayConfig
from gateway.engine.evaluator import Evaluator
from gateway.engine.library import build_window_store, load_library, window_layouts
from gateway.engine.profiles import Profile, derived_by_type, intervals_by_type
from gateway.memory import release_free_memory
from gateway.store.window import WindowStore
from gateway.web.units import STATE_UNITS

T0 = 1_750_000_000.0


def healthy_value(low: float, high: float, unit: str, rng: np.random.Generator, count: int) -> np.ndarray:
    """A reading a third of the way up its valid range; a state at its lowest (off, idle, no alarm bit set: a
    mid-range alarm bitmap set the drain and temperature bits of every dishwasher at once)."""
    if unit in STATE_UNITS:
        return np.full(count, low)
    middle = low + (high - low) * 0.3
    return middle + rng.normal(0, (high - low) * 0.002, count)


def build(devices: int, seed: int = 1) -> tuple[Evaluator, WindowStore, float]:
    library = load_library(GatewayConfig())
    profiles = library.profiles
    layouts = window_layouts(profiles, library.rules, GatewayConfig().window.slots)
    store = build_window_store(profiles, layouts, initial_devices=1)
    rng = np.random.default_rng(seed)
    per_type = devices // len(profiles)
    started = time.perf_counter()
    for name, profile in profiles.items():
        window = store.windows[name]
        for i in range(per_type):
            window.row(f"{name}-{i}")
        rows, slots = per_type, window.slots
        ts = T0 + (np.arange(slots) - slots) * profile.interval_seconds
        window.ring_base[:rows] = T0  # ring times are offsets from each device's base
        window.ts[:rows] = ts - T0
        for spec in profile.metrics:
            column = window.metric_index[spec.name]
            base = healthy_value(spec.low, spec.high, spec.unit, rng, rows)
            noise = rng.normal(0, max(1e-3, (spec.high - spec.low) * 0.001), (rows, slots))
            state = spec.unit in STATE_UNITS
            window.values[:rows, column, :] = (base[:, None] + (0 if state else noise)).astype(np.float32)
        window.values[:rows, window.metric_index["dq_out_of_range"], :] = np.nan
        window.head[:rows] = 0
        long_slots = window.long_slots
        if long_slots:  # the long ring ends at the same sample as the main ring
            window.long_ts[:rows] = (np.arange(long_slots) - long_slots) * profile.interval_seconds
            older = (np.arange(long_slots) - long_slots) % slots  # the main ring's samples over again
            window.long_values[:rows] = window.values[:rows, window.long_positions, :][:, :, older]
            window.long_head[:rows] = 0
        window.latest[:rows] = window.values[:rows, :, -1]
        window.latest_ts[:rows] = ts[-1]
        window.latest_metric_ts[:rows] = ts[-1]
        window.changed_observed[:rows] = ts[-1]  # no gaps: the observed clock is the sample clock
        window.reported_observed[:rows] = ts[-1]
        window.online[:rows] = 1.0
    evaluator = Evaluator(library.rules, store, derived_by_type(profiles), intervals_by_type(profiles))
    return evaluator, store, time.perf_counter() - started


def reading_columns(store: WindowStore, profiles: dict[str, Profile]) -> dict[str, list[int]]:
    """Per type, the columns of readings (which wander from sample to sample), not of states (which hold)."""
    return {name: [window.metric_index[m.name] for m in profiles[name].metrics if m.unit not in STATE_UNITS]
            for name, window in store.windows.items()}


def tick(store: WindowStore, readings: dict[str, list[int]], now: float, rng: np.random.Generator) -> None:
    """Every device reports one sample (written straight into the arrays, as ingest would one by one): the
    readings wander a little, the states hold (a compressor flag wandering by noise counted as starts)."""
    for name, window in store.windows.items():
        rows = len(window.device_ids)
        slot = int(window.head[0])
        previous = window.values[:rows, :, slot - 1]
        columns = readings[name]
        sample = previous.copy()
        sample[:, columns] += rng.normal(0, 0.01, (rows, len(columns))).astype(np.float32)
        sample[:, window.metric_index["dq_out_of_range"]] = np.nan
        window.values[:rows, :, slot] = sample
        window.ts[:rows, slot] = now - T0
        window.head[:rows] = (slot + 1) % window.slots
        if window.long_slots:
            long_slot = int(window.long_head[0])
            window.long_values[:rows, :, long_slot] = sample[:, window.long_positions]
            window.long_ts[:rows, long_slot] = now - T0
            window.long_head[:rows] = (long_slot + 1) % window.long_slots
        window.latest[:rows] = sample
        window.latest_ts[:rows] = now
        window.latest_metric_ts[:rows] = now
        window.reported_observed[:rows] = now
        window.mark_dirty(np.arange(rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="1000,10000,100000")
    parser.add_argument("--ticks", type=int, default=35, help="1 s ticks (at least 31: every cadence comes due)")
    args = parser.parse_args()
    print(f"command: .venv/bin/python -m benchmarks.rule_engine --devices {args.devices} --ticks {args.ticks}")
    library = load_library(GatewayConfig())
    sample_rules = [r for r in library.rules if not r.time_driven]
    print(f"library: {len(library.rules)} rules ({len(sample_rules)} per sample, "
          f"{len(library.rules) - len(sample_rules)} on the timer) over 5 appliance types")
    print(f"{'devices':>8} {'median ms':>9} {'worst ms':>8} {'mean ms':>8} {'timer ms':>8} {'rule evals/s':>13} "
          f"{'samples/s':>10} {'window MB':>10} {'KB/device':>10} {'RSS MB':>7} {'trimmed':>8}")
    rng = np.random.default_rng(2)
    for devices in (int(d) for d in args.devices.split(",")):
        evaluator, store, _ = build(devices)
        per_type = {n: len(w.device_ids) for n, w in store.windows.items()}
        evaluations = sum(len(evaluator.rules_by_type.get(n, [])) * c for n, c in per_type.items())
        timings, timer_timings = [], []
        readings = reading_columns(store, library.profiles)
        for i in range(args.ticks + 1):
            now = T0 + 1 + i
            tick(store, readings, now, rng)
            started = time.perf_counter()
            evaluator.evaluate()
            elapsed = time.perf_counter() - started
            started = time.perf_counter()
            evaluator.evaluate_timer(now)
            timer_elapsed = time.perf_counter() - started
            if i:  # the first tick also builds first-time transitions; report the steady state
                timings.append(elapsed)
                timer_timings.append(timer_elapsed)
        median, worst, mean = (float(f(timings)) * 1000 for f in (np.median, np.max, np.mean))
        memory = store.memory_bytes() / 2**20
        total = sum(per_type.values())
        rss = psutil.Process().memory_info().rss / 2**20
        release_free_memory()
        trimmed = psutil.Process().memory_info().rss / 2**20
        print(f"{total:>8} {median:>9.1f} {worst:>8.1f} {mean:>8.1f} {np.median(timer_timings) * 1000:>8.1f} "
              f"{evaluations / (mean / 1000):>13.0f} {total / (mean / 1000):>10.0f} {memory:>10.0f} "
              f"{memory * 1024 / total:>10.1f} {rss:>7.0f} {trimmed:>8.0f}", flush=True)
        del evaluator, store
    for name, layout in window_layouts(library.profiles, library.rules, GatewayConfig().window.slots).items():
        print(f"{name}: {layout.slots} slots of every column; long ring of {layout.long_slots} slots of "
              f"{', '.join(layout.long_columns) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
