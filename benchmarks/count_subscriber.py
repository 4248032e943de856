"""The ceiling: a bare paho-mqtt subscriber that only counts what it receives.

    python benchmarks/count_subscriber.py --port 1883 --seconds 12
Prints {"received": N} when no message has arrived for 1 s after the first one, or at --seconds.
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    received = 0
    last = 0.0

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received, last
        received += 1
        last = time.monotonic()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{time.time_ns()}")
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("appliances/+/+", qos=0)
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    print("ready", flush=True)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline and not (received and time.monotonic() - last > 1.0):
        time.sleep(0.05)
    client.loop_stop()
    sys.stdout.write(orjson.dumps({"received": received}).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
