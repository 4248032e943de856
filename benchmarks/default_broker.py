"""What the gateway on its defaults carries: the embedded broker against mosquitto, rate by rate.

    .venv/bin/python -m benchmarks.default_broker [--rates 2000,4000,6000,8000] [--seconds 10] [--devices 300]

For each offered rate a fresh `appliance-gateway run` starts: on its defaults (no broker configured, so it starts
its embedded broker: mosquitto where installed), with the amqtt fallback forced (`embedded_broker = "amqtt"`),
and against an external Debian mosquitto on the same machine. 300 air conditioners announce
themselves with retained meta, then one paho publisher process sends 11-metric telemetry at QoS 0 for the
given seconds; the table counts the samples the gateway stored (`samples` in /api/status) once the count stops
moving, and what the gateway says about its broker link (`broker` in /api/status). A rate is sustained when
every message was stored and the median lag stayed under 1 s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks import harness


def announce(port: int, devices: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-meta-{time.time_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(f"appliances/bench-{i:05d}/meta",
                            orjson.dumps({"type": "air_conditioner", "brand": "Gree", "model": "Q"}), qos=1,
                            retain=True) for i in range(devices)]
    for info in infos:
        info.wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


def settle(base: str, target: int, quiet_seconds: float = 2.0, limit: float = 60.0) -> dict[str, Any]:
    """The status once every sample arrived, or once the count stopped moving."""
    previous, since, deadline = -1, time.monotonic(), time.monotonic() + limit
    while time.monotonic() < deadline:
        status = harness.status(base)
        if status["samples"] >= target:
            return status
        if status["samples"] != previous:
            previous, since = status["samples"], time.monotonic()
        elif time.monotonic() - since > quiet_seconds:
            return status
        time.sleep(0.1)
    return harness.status(base)


def step(folder: Path, broker_port: int | None, upstream: str, rate: float, seconds: float,
         devices: int, broker_toml: str = "") -> tuple[int, int, dict[str, Any]]:
    with harness.gateway(folder, broker_port, upstream, broker_toml=broker_toml) as (_process, base):
        port = broker_port or int(harness.status(base)["broker_url"].rsplit(":", 1)[1])
        announce(port, devices)
        settle(base, 0, quiet_seconds=0.5, limit=5)
        before = harness.status(base)["samples"]
        sent = harness.publish(port, rate, seconds, devices)
        status = settle(base, before + sent["sent"])
        return int(sent["sent"]), int(status["samples"] - before), status.get("broker", {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="2000,4000,6000,8000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--devices", type=int, default=300)
    args = parser.parse_args()
    print(f"command: .venv/bin/python -m benchmarks.default_broker --rates {args.rates} --seconds {args.seconds:g} "
          f"--devices {args.devices}")
    print(f"{'offered/s':>10} {'path':>10} {'sent':>8} {'stored':>8} {'stored %':>9} {'sustained':>9}  broker link")
    results: dict[tuple[float, str], float] = {}
    with harness.scratch() as tmp:
        folder = Path(tmp)
        with harness.mosquitto(folder) as mosquitto_port, harness.platform(folder) as upstream:
            for rate in (float(r) for r in args.rates.split(",")):
                for path, port, toml in (("default", None, ""), ("amqtt", None, 'embedded_broker = "amqtt"'),
                                         ("external", mosquitto_port, "")):
                    run = folder / f"{path}-{rate:.0f}"
                    run.mkdir()
                    sent, stored, broker = step(run, port, upstream, rate, args.seconds, args.devices, toml)
                    sustained = stored >= sent and broker.get("lag_seconds", 0) < 1.0
                    results[(rate, path)] = stored / sent if sustained and sent else 0.0
                    print(f"{rate:>10.0f} {path:>10} {sent:>8} {stored:>8} {100 * stored / max(sent, 1):>8.1f}% "
                          f"{'yes' if sustained else 'NO':>9}  {orjson.dumps(broker).decode()}", flush=True)
    rates = sorted({rate for rate, _ in results})
    for path in ("default", "amqtt"):
        worst = min(results[(r, path)] / max(results[(r, "external")], 1e-9) for r in rates)
        print(f"worst ratio of {path} to the external mosquitto (sustained share stored) over the rates: {worst:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
