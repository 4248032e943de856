"""Sustained MQTT ingest through decode -> window store -> rules, against the bare-paho ceiling.

    .venv/bin/python -m benchmarks.ingest_throughput [--seconds 5] [--rates 1000,2000,...]

Real processes on loopback: mosquitto, one load publisher (air-conditioner telemetry, 11 metrics, 1,000
devices), and either a bare paho subscriber that only counts (the ceiling on this machine) or the gateway
(`appliance-gateway run`, all shipped rules). The offered rate rises step by step; a step is lossless when
every published message was received (the subscriber) or turned into a stored sample (the gateway), and
sustained when the gateway also finished within 1 s of the last publish (no backlog growing in the broker).
CPU and RSS are the gateway process's, sampled with psutil during the step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
from pathlib import Path

import psutil

from benchmarks import harness

SUSTAINED_LAG_SECONDS = 1.0  # a step keeps up when the last sample is processed within 1 s of the last publish
PUBLISHERS = 2  # one Python publisher tops out near 25k msg/s


def ceiling_step(port: int, rate: float, seconds: float, devices: int) -> tuple[dict[str, float], int]:
    subscriber = subprocess.Popen([harness.PYTHON, str(harness.ROOT / "benchmarks" / "count_subscriber.py"),
                                   "--port", str(port), "--seconds", str(seconds + 20)],
                                  stdout=subprocess.PIPE, text=True)
    assert subscriber.stdout is not None
    subscriber.stdout.readline()  # "ready"
    time.sleep(0.3)
    sent = harness.publish(port, rate, seconds, devices, PUBLISHERS)
    received = json.loads(subscriber.communicate(timeout=60)[0].strip().splitlines()[-1])["received"]
    return sent, int(received)


def gateway_step(port: int, base: str, process: psutil.Process, rate: float, seconds: float,
                 devices: int) -> tuple[dict[str, float], int, float, float, int, float]:
    before = harness.status(base)
    cpu: list[float] = []
    rss: list[int] = []
    done = threading.Event()

    def sample() -> None:
        process.cpu_percent(None)
        while not done.wait(0.5):
            cpu.append(process.cpu_percent(None))
            rss.append(process.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    sent = harness.publish(port, rate, seconds, devices, PUBLISHERS)
    published_at = time.monotonic()
    done.set()
    sampler.join()
    target = before["samples"] + sent["sent"]
    previous, stable_since, lag = -1, time.monotonic(), float("nan")
    while time.monotonic() - stable_since < 1.0:  # drain: until all arrived or the count stops moving
        samples = harness.status(base)["samples"]
        if samples >= target:
            lag = time.monotonic() - published_at
            break
        if samples != previous:
            previous, stable_since = samples, time.monotonic()
        time.sleep(0.02)
    after = harness.status(base)
    processed = after["samples"] - before["samples"]
    queue_full = after["dropped"].get("queue_full", 0) - before["dropped"].get("queue_full", 0)
    return sent, processed, sum(cpu) / max(1, len(cpu)), max(rss, default=0) / 2**20, queue_full, lag


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="publishing time per step")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rates", default="2000,5000,10000,15000,20000,25000,30000,40000,50000")
    parser.add_argument("--no-history", action="store_true", help="run the gateway with history.enabled = false")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the bare paho subscriber")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    print(f"ingest throughput: {args.devices} devices, 11 metrics per message, {args.seconds:.0f} s per step")
    print(f"command: .venv/bin/python -m benchmarks.ingest_throughput --seconds {args.seconds:g} "
          f"--rates {args.rates}")
    best_ceiling = best_gateway = 0.0
    with harness.scratch() as tmp:
        folder = Path(tmp)
        with harness.mosquitto(folder) as port, harness.platform(folder) as upstream:
            print("\n bare paho subscriber (ceiling)")
            print(f"{'offered/s':>10} {'published/s':>12} {'received':>9} {'sent':>9} {'lossless':>9}")
            for rate in [] if args.no_ceiling else rates:
                sent, received = ceiling_step(port, rate, args.seconds, args.devices)
                lossless = received >= sent["sent"]
                if lossless:
                    best_ceiling = max(best_ceiling, sent["achieved_rate"])
                print(f"{rate:>10.0f} {sent['achieved_rate']:>12.0f} {received:>9} {sent['sent']:>9} "
                      f"{'yes' if lossless else 'NO':>9}", flush=True)
                if not lossless:
                    break
            print("\n gateway: decode -> window store -> rules (all shipped rules)")
            print(f"{'offered/s':>10} {'published/s':>12} {'processed':>9} {'sent':>9} {'lossless':>9} "
                  f"{'lag s':>6} {'CPU %':>6} {'RSS MB':>7} {'queue_full':>10}")
            extra = "[history]\nenabled = false\n" if args.no_history else ""
            with harness.gateway(folder, port, upstream, extra_toml=extra) as (process, base):
                for rate in rates:
                    sent, processed, cpu, rss, queue_full, lag = gateway_step(port, base, process, rate,
                                                                              args.seconds, args.devices)
                    lossless = processed >= sent["sent"]
                    sustained = lossless and lag < SUSTAINED_LAG_SECONDS
                    if sustained:
                        best_gateway = max(best_gateway, sent["achieved_rate"])
                    print(f"{rate:>10.0f} {sent['achieved_rate']:>12.0f} {processed:>9} {sent['sent']:>9} "
                          f"{'yes' if lossless else 'NO':>9} {lag:>6.2f} {cpu:>6.0f} {rss:>7.0f} {queue_full:>10}",
                          flush=True)
                    if not sustained:
                        break
    ratio = best_gateway / best_ceiling if best_ceiling else 0.0
    print(f"\nhighest sustained lossless rate: gateway {best_gateway:.0f} msg/s, bare paho {best_ceiling:.0f} msg/s, "
          f"ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
