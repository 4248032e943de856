"""The fleet generator's own throughput: messages per second one process produces for 10,000 appliances.

    .venv/bin/python -m benchmarks.fleet_generator [--devices 10000] [--rounds 3]

First without a network (model sampling and JSON only), then published through one MQTT connection to a
local mosquitto, with a bare subscriber in its own process counting what arrives.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import ROOT, mosquitto
from firmware_sim.bulk_fleet import BulkFleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, mosquitto(Path(folder)) as port:
        fleet = BulkFleet(args.devices, "127.0.0.1", port)
        started = time.perf_counter()
        for appliance in fleet.appliances:
            appliance.model.sample(time.time())
        sampling = time.perf_counter() - started
        print(f"{args.devices:,} appliances (five types): models alone {args.devices / sampling:,.0f} samples/s")
        counter = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "count_subscriber.py"), "--port",
                                    str(port), "--seconds", "120"], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        fleet.connect()
        started = time.perf_counter()
        base = time.time()
        for round_number in range(args.rounds):
            for appliance in fleet.appliances:
                fleet.publish(appliance, base + 10.0 * (round_number + 1))
        fleet.flush()
        elapsed = time.perf_counter() - started
        fleet.disconnect()
        received = json.loads(counter.communicate(timeout=130)[0].strip().splitlines()[-1])["received"]
        sent = args.devices * args.rounds
        print(f"published {sent:,} telemetry messages in {elapsed:.1f} s: {sent / elapsed:,.0f} msg/s from one "
              f"process; the subscriber received {received:,} messages (telemetry plus {2 * args.devices:,} "
              "retained meta and status)")


if __name__ == "__main__":
    main()
