"""Scale-out: one gateway worker behind mosquitto, one behind a 3-node NATS cluster (the partition mapping with
N = 1), and two workers behind the same cluster (N = 2), all in one run with the same load.

    .venv/bin/python -m benchmarks.scale_out [--rates 1000,2000,4000] [--seconds 8] [--devices 1000]

Real processes on loopback: the brokers, the workers (`appliance-gateway run` with the shipped rules,
`--partition I --partitions N` behind NATS), the platform stand-in and two publisher processes (air-conditioner
telemetry, 11 metrics, QoS 0). Per step: messages sent, samples the workers handled, whether the step was
sustained (all handled within 1 s of the last publish), the CPU of each worker and of the broker (all nodes
together) in % of one core, and each worker's CPU per 1,000 msg/s it handled: the figure that says how many
workers a fleet needs. The load generator shares the 2 cores, which caps the total.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks import harness
from benchmarks.harness import cpu_seconds
from firmware_sim.nats_cluster import NatsCluster

SUSTAINED_LAG_SECONDS = 1.0
PUBLISHERS = 2


@dataclass
class Setup:
    name: str
    workers: list[tuple[psutil.Process, str]]
    brokers: list[psutil.Process]
    publish_port: int


def handled(setup: Setup) -> int:
    return sum(int(harness.status(base)["samples"]) for _, base in setup.workers)


@contextlib.contextmanager
def mosquitto_setup(folder: Path, upstream: str) -> Iterator[Setup]:
    (folder / "w0").mkdir()
    with harness.mosquitto(folder) as port, harness.gateway(folder / "w0", port, upstream) as worker:
        broker = next(p for p in psutil.process_iter(["name", "cmdline"])
                      if p.info["name"] == "mosquitto" and str(folder) in " ".join(p.info["cmdline"] or []))
        yield Setup("mosquitto, 1 worker", [worker], [broker], port)


@contextlib.contextmanager
def nats_setup(folder: Path, upstream: str, workers: int) -> Iterator[Setup]:
    cluster = NatsCluster(folder / "nats", nodes=3, partitions=workers)
    cluster.start()
    for i in range(workers):
        (folder / f"w{i}").mkdir()
    try:
        with contextlib.ExitStack() as stack:
            team = [stack.enter_context(harness.gateway(
                folder / f"w{i}", cluster.nodes[i].port, upstream,
                extra_toml=f"[cluster]\npartition = {i}\npartitions = {workers}\n")) for i in range(workers)]
            brokers = [psutil.Process(node.process.pid) for node in cluster.nodes if node.process]
            yield Setup(f"NATS (3 nodes), {workers} worker{'s' if workers > 1 else ''}", team, brokers,
                        cluster.nodes[2].port)
    finally:
        cluster.stop()


def step(setup: Setup, rate: float, seconds: float, devices: int) -> str:
    before = handled(setup)
    processes = [p for p, _ in setup.workers]
    worker_cpu = [cpu_seconds([p]) for p in processes]
    broker_cpu = cpu_seconds(setup.brokers)
    started = time.monotonic()
    sent = harness.publish(setup.publish_port, rate, seconds, devices, PUBLISHERS)["sent"]
    published = time.monotonic()
    while handled(setup) - before < sent and time.monotonic() - published < 10:
        time.sleep(0.05)
    lag = time.monotonic() - published
    took = handled(setup) - before
    elapsed = published - started
    cpu = [100 * (cpu_seconds([p]) - c) / elapsed for p, c in zip(processes, worker_cpu, strict=True)]
    per_worker = [int(harness.status(base)["samples"]) for _, base in setup.workers]
    broker = 100 * (cpu_seconds(setup.brokers) - broker_cpu) / elapsed
    share = [c / max(rate / len(processes) / 1000, 1e-9) for c in cpu]
    sustained = took >= sent and lag < SUSTAINED_LAG_SECONDS
    return (f"| {setup.name} | {rate:,.0f} | {sent:,} | {took:,} ({100 * took / max(sent, 1):.1f} %) | "
            f"{'yes' if sustained else 'NO'} ({lag:.1f} s) | {' / '.join(f'{c:.0f}' for c in cpu)} | "
            f"{' / '.join(f'{s:.1f}' for s in share)} | {broker:.0f} | {' / '.join(map(str, per_worker))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="1000,2000,4000")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--devices", type=int, default=1000)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    print("| setup | offered msg/s | sent | handled | sustained (drain) | worker CPU % | worker CPU % per 1,000 "
          "msg/s | broker CPU % | samples per worker (cumulative) |\n|---|---|---|---|---|---|---|---|---|",
          flush=True)
    with harness.scratch() as name:
        folder = Path(name)
        with harness.platform(folder) as upstream:
            for index, setup in enumerate((lambda f: mosquitto_setup(f, upstream),
                                           lambda f: nats_setup(f, upstream, 1),
                                           lambda f: nats_setup(f, upstream, 2))):
                run = folder / f"setup-{index}"
                run.mkdir()
                with setup(run) as ready:
                    for rate in rates:
                        print(step(ready, rate, args.seconds, args.devices), flush=True)


if __name__ == "__main__":
    main()
