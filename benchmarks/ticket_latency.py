"""Latency from the publish of a threshold-crossing sample to its ticket arriving at the service platform.

    .venv/bin/python -m benchmarks.ticket_latency [--rates 1000,10000] [--seconds 10] [--probes-per-second 20]

Real processes on loopback: mosquitto, the gateway (`appliance-gateway run`, shipped rules plus one `for: 0s`
probe rule), the platform stand-in, and a publisher process offering background air-conditioner telemetry at
each rate. Meanwhile this process publishes probe samples, each from a new device, that cross the probe rule's
threshold; a probe's latency is the platform's receive time minus the probe's publish time (one clock).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks import harness

PROBE_RULE = """
groups:
  - name: benchmark_probe
    appliance: air_conditioner
    rules:
      - alert: benchmark_probe_overtemperature
        expr: discharge_temperature > 140
        for: 0s
        diagnosis:
          code: BENCH-01
          title: {en: Benchmark probe, zh: 基准探针}
          severity: info
          causes: [{cause: benchmark, likelihood: 1.0, reason: a probe sample crossed the threshold}]
          service_items: [diagnosis_visit]
"""


def run_rate(port: int, upstream: str, rate: float, seconds: float, probes_per_second: float,
             first_probe: int) -> tuple[list[float], int]:
    load = harness.start_publishers(port, rate, seconds, devices=1000)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{time.time_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(1.0)  # let the load reach its rate
    published: dict[str, float] = {}
    probe = first_probe
    end = time.monotonic() + seconds - 1.5
    while time.monotonic() < end:
        device = f"probe-{probe:05d}"
        now = time.time()
        payload = orjson.dumps({"ts": now, "type": "air_conditioner", "metrics": {"discharge_temperature": 150.0}})
        client.publish(f"appliances/{device}/telemetry", payload, qos=0)
        published[device] = now
        probe += 1
        time.sleep(1.0 / probes_per_second)
    harness.collect(load)
    time.sleep(3.0)  # the last tickets
    client.loop_stop()
    client.disconnect()
    tickets = harness.get_json(upstream + "/v1/tickets")
    latencies = [t["received_at"] - published[t["device_id"]] for t in tickets if t["device_id"] in published]
    return latencies, len(published)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="1000,10000")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--probes-per-second", type=float, default=20.0)
    args = parser.parse_args()
    print("publish -> ticket at the platform, for a for=0 rule, under background load")
    print(f"command: .venv/bin/python -m benchmarks.ticket_latency --rates {args.rates} --seconds {args.seconds:g} "
          f"--probes-per-second {args.probes_per_second:g}")
    print(f"{'load msg/s':>10} {'probes':>7} {'tickets':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    with harness.scratch() as tmp:
        folder = Path(tmp)
        rule_file = folder / "probe.yaml"
        rule_file.write_text(PROBE_RULE)
        with harness.mosquitto(folder) as port, harness.platform(folder) as upstream, \
                harness.gateway(folder, port, upstream, extra_rules=(rule_file,)):
            first = 0
            for rate in (float(r) for r in args.rates.split(",")):
                latencies, probes = run_rate(port, upstream, rate, args.seconds, args.probes_per_second, first)
                first += probes
                ms = np.array(latencies) * 1000
                p50, p99, worst = (np.percentile(ms, 50), np.percentile(ms, 99), ms.max()) if len(ms) else (0, 0, 0)
                print(f"{rate:>10.0f} {probes:>7} {len(latencies):>8} {p50:>7.1f} {p99:>7.1f} {worst:>7.1f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
