"""CPU of the gateway while 8 serial ports deliver telemetry at 115200 baud line rate.

    .venv/bin/python -m benchmarks.serial_ports [--ports 8] [--seconds 10]

Each port is a real pseudo-terminal whose simulated appliance streams open-dialect AC telemetry frames
(11 metrics, 63 bytes) unasked, paced to fill a 115200 baud 8N1 line (11,520 bytes/s, ~183 frames/s). The
gateway (`appliance-gateway run`, a separate process) decodes them all and runs them through ingest and rules;
its CPU is sampled with psutil. (A pty has no baud rate of its own, so the pacing is the simulator's.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks import harness
from firmware_sim.models import AirConditionerModel
from firmware_sim.serial_peer import PtyAppliance
from gateway.config import PROJECT_ROOT
from gateway.engine.profiles import load_profiles

LINE_BYTES_PER_SECOND = 115200 / 10  # 8N1: ten bit times per byte
FRAME_BYTES = 63


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ports", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    profile = load_profiles(PROJECT_ROOT / "rules" / "profiles")["air_conditioner"]
    interval = FRAME_BYTES / LINE_BYTES_PER_SECOND
    print(f"command: .venv/bin/python -m benchmarks.serial_ports --ports {args.ports} --seconds {args.seconds:g}")
    with harness.scratch() as tmp:
        folder = Path(tmp)
        peers = [PtyAppliance(folder / f"tty{i}", "open", AirConditionerModel(i), profile=profile,
                              report_interval=interval, unsolicited=True) for i in range(args.ports)]
        for peer in peers:
            peer.start()
        ports = "".join(f'\n[[serial.ports]]\nurl = "{p.path}"\ndialect = "open"\ndevice_id = "ac-uart-{i}"\n'
                        f"poll_interval_seconds = 1.0\n" for i, p in enumerate(peers))
        try:
            with harness.mosquitto(folder) as port, harness.platform(folder) as upstream, \
                    harness.gateway(folder, port, upstream, extra_toml=ports) as (process, base):
                time.sleep(2.0)  # ports open, devices identify
                before = harness.status(base)
                process.cpu_percent(None)
                time.sleep(args.seconds)
                cpu = process.cpu_percent(None)
                rss_mb = process.memory_info().rss / 2**20
                after = harness.status(base)
        finally:
            for peer in peers:
                peer.stop()
    frames = sum(p["frames"] for p in after["serial_ports"].values()) - sum(
        p["frames"] for p in before["serial_ports"].values())
    samples = after["samples"] - before["samples"]
    damage = sum(p.get("bad_crc", 0) + p.get("bad_length", 0) for p in after["serial_ports"].values())
    offered = args.ports * LINE_BYTES_PER_SECOND / FRAME_BYTES
    print(f"{args.ports} ports at 115200 baud: offered {offered:.0f} frames/s, decoded {frames / args.seconds:.0f} "
          f"frames/s, {samples / args.seconds:.0f} samples/s into ingest, CRC/length errors {damage}")
    print(f"gateway CPU: {cpu:.0f}% of one core ({cpu / args.ports:.1f}% per port), RSS {rss_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
