"""CPU per message of reading MQTT: paho's own reads against the gateway's chunked reads.

    .venv/bin/python -m benchmarks.mqtt_reads [--messages 60000] [--repeats 2]

A real mosquitto on loopback. For each repeat and each client (paho's `Client`; the gateway's
`ChunkedReadClient`, gateway/transport/chunked_reads.py, with paho reading each packet; and the same with the
PUBLISH packets taken from the chunk directly, `on_received`, as the gateway's link runs it) a persistent QoS 1
session is made and left, the messages (the bench peers' 150-byte telemetry, 500 devices) are queued for it at
the broker, and the client comes back and drains them in this process, paho's `loop` in a loop as the
gateway's MQTT link runs it, with a callback that only counts. Printed: the drain's CPU time (user and system)
per message and its rate.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks import harness
from firmware_sim.mqtt_peer import publish_while_away
from gateway.transport.chunked_reads import ChunkedReadClient

PAYLOAD = (b'{"dev":"dev-0001","ts":1800000000.123456,"seq":1234,"type":"bench_ac","metrics":{"discharge_temp":80.12,'
           b'"suction_temp":10.2,"current_a":7.3,"comp_on":1}}')
DEVICES = 500


def queue_messages(port: int, client_id: str, count: int) -> None:
    publish_while_away(port, client_id, "appliance/+/telemetry",
                       ((f"appliance/dev-{i % DEVICES:04d}/telemetry", PAYLOAD) for i in range(count)))


def drain(port: int, client_class: type[mqtt.Client], client_id: str, count: int, direct: bool,
          ) -> dict[str, float]:
    received = 0

    def on_received(topic: str, payload: bytes, qos: int, dup: bool) -> None:
        nonlocal received
        received += 1

    client = client_class(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                          protocol=mqtt.MQTTv311)
    client.on_message = lambda c, userdata, message: on_received(message.topic, message.payload, message.qos,
                                                                 message.dup)
    if isinstance(client, ChunkedReadClient) and direct:
        client.on_received = on_received
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    client.connect("127.0.0.1", port)
    while received < count and time.perf_counter() - started < 120:
        client.loop(timeout=0.2)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    client.disconnect()
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {"received": received, "user_us": user / max(1, received) * 1e6,
            "system_us": system / max(1, received) * 1e6, "rate": received / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"command: .venv/bin/python -m benchmarks.mqtt_reads --messages {args.messages} --repeats {args.repeats}")
    print(f"{'client':<20} {'received':>9} {'CPU us/msg':>11} {'user':>6} {'system':>7} {'msg/s':>8}")
    with harness.scratch() as folder, harness.mosquitto(Path(folder)) as port:
        for repeat in range(args.repeats):
            for name, client_class, direct in (("paho Client", mqtt.Client, False),
                                               ("ChunkedReadClient", ChunkedReadClient, False),
                                               ("  + PUBLISH direct", ChunkedReadClient, True)):
                client_id = f"reads-{repeat}-{client_class.__name__}-{direct}"
                queue_messages(port, client_id, args.messages)
                row = drain(port, client_class, client_id, args.messages, direct)
                print(f"{name:<20} {row['received']:>9.0f} {row['user_us'] + row['system_us']:>11.1f} "
                      f"{row['user_us']:>6.1f} {row['system_us']:>7.1f} {row['rate']:>8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
