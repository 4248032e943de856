"""Gateway start-up: from starting the process to handling telemetry, against a running mosquitto.

    .venv/bin/python -m benchmarks.startup [--runs 5]

Each run starts `appliance-gateway run` on a fresh folder (no checkpoint, no database) with the shipped rule
library. A publisher sends one retained meta and then a sample of the same appliance every 20 ms from the
moment the process starts; the figure is the time until `/api/status` counts the first handled sample (the
console is polled every 20 ms, so the figure is at most that late). Printed: each run, median and worst.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.harness import ADMIN_TOKEN, PYTHON, ROOT, mosquitto, scratch
from firmware_sim.localnet import free_port, stop_process

DEVICE = "ac-startup"


def publish_until(port: int, stop: threading.Event) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="startup-publisher")
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(f"appliances/{DEVICE}/meta", json.dumps({"type": "air_conditioner"}), qos=1, retain=True)
    while not stop.is_set():
        client.publish(f"appliances/{DEVICE}/telemetry",
                       json.dumps({"ts": time.time(), "metrics": {"compressor_on": 1, "compressor_current": 7.5}}))
        time.sleep(0.02)
    client.loop_stop()
    client.disconnect()


def handled(web_port: int) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{web_port}/api/status",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return int(json.load(response)["samples"])
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


def one_run(folder: Path, broker_port: int) -> float:
    web_port = free_port()
    (folder / "gateway.toml").write_text(
        f'[broker]\nurl = "mqtt://127.0.0.1:{broker_port}"\n'
        f'[web]\nport = {web_port}\nadmin_token = "{ADMIN_TOKEN}"\n[storage]\ndatabase = "gw.db"\n'
        '[upstream]\nurl = "http://127.0.0.1:9"\n')
    stop = threading.Event()
    publisher = threading.Thread(target=publish_until, args=(broker_port, stop), daemon=True)
    started = time.monotonic()
    log = (folder / "gateway.log").open("w")
    process = subprocess.Popen([PYTHON, "-m", "gateway", "run", "--config", str(folder / "gateway.toml")],
                               cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    publisher.start()
    try:
        while handled(web_port) == 0:
            if time.monotonic() - started > 60 or process.poll() is not None:
                raise SystemExit("the gateway did not handle a sample within 60 s or exited; its log:\n"
                                 + (folder / "gateway.log").read_text()[-2000:])
            time.sleep(0.02)
        return time.monotonic() - started
    finally:
        stop.set()
        publisher.join()
        stop_process(process)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"command: .venv/bin/python -m benchmarks.startup --runs {args.runs}")
    with scratch() as tmp, mosquitto(Path(tmp)) as port:
        figures = []
        for run in range(args.runs):
            folder = Path(tmp) / f"run-{run}"
            folder.mkdir()
            figures.append(one_run(folder, port))
            print(f"run {run + 1}: first sample handled {figures[-1]:.2f} s after the process started")
        print(f"start-up to handling: median {statistics.median(figures):.2f} s, worst {max(figures):.2f} s "
              f"over {args.runs} runs")


if __name__ == "__main__":
    main()
