"""Load generator: publish air-conditioner telemetry (11 metrics) at a fixed rate from its own process.

    python benchmarks/publisher.py --port 1883 --rate 5000 --seconds 5 --devices 1000
Prints one JSON line: {"sent": N, "seconds": S, "achieved_rate": R}.
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def payload(device: int, ts: float) -> bytes:
    return orjson.dumps({"ts": ts, "type": "air_conditioner", "metrics": {
        "local_temperature": 25.1, "outdoor_temperature": 31.2, "occupied_cooling_setpoint": 25.0,
        "system_mode": 3, "compressor_on": 1, "compressor_frequency": 52.0, "compressor_current": 7.9,
        "discharge_temperature": 70.0 + device % 7, "suction_pressure": 940.0, "discharge_pressure": 2700.0,
        "indoor_coil_temperature": 9.4}})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="messages per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--prefix", default="appliances")
    args = parser.parse_args()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{time.time_ns()}")
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    topics = [f"{args.prefix}/bench-{i:05d}/telemetry" for i in range(args.devices)]
    sent = 0
    start = time.perf_counter()
    wall = time.time()
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= args.seconds:
            break
        due = int(args.rate * elapsed) - sent
        for _ in range(due):
            device = sent % args.devices
            client.publish(topics[device], payload(device, wall + elapsed), qos=0)
            sent += 1
        time.sleep(0.002)
    seconds = time.perf_counter() - start
    time.sleep(0.5)  # let paho flush its socket buffer
    client.loop_stop()
    client.disconnect()
    sys.stdout.write(orjson.dumps({"sent": sent, "seconds": seconds, "achieved_rate": sent / seconds}).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
