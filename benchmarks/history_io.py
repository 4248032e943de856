"""Bytes the history writes to disk per minute of fleet data, and how large its WAL grows: the flash wear of a
gateway on an SD card.

    .venv/bin/python -m benchmarks.history_io [--devices 2000] [--metrics 10] [--minutes 60]

Synthetic minute rows (devices x metrics per minute) written three ways into a fresh history.db: as before
(one transaction per minute), one minute at a time in key-ordered chunks, and in 5-minute batches in chunks (what
the gateway does now). Bytes are this process's write() volume (/proc/self/io wchar: WAL appends and the
checkpoints into the database), per minute of data, against the bytes the rows themselves hold in the file.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from gateway.store import history as history_module
from gateway.store.history import History
from gateway.store.window import WindowStore

T0 = 1_750_000_020 - 1_750_000_020 % 3600


def written_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def run(label: str, devices: int, metrics: int, minutes: int, batch: int, chunk: int) -> None:
    history_module.WRITE_CHUNK = chunk
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "history.db"
        history = History(path, WindowStore({"x": ("m",)}, slots=10), {"x": 1.0}, minute_days=30)
        wal = path.with_name("history.db-wal")
        before, largest_wal = written_bytes(), 0
        for first in range(0, minutes, batch):
            rows = [(f"dev-{d:05d}", f"metric_{m:02d}", T0 + 60 * minute, 10, 1.0, 2.0, 3.0, 2.5)
                    for minute in range(first, min(first + batch, minutes)) for d in range(devices)
                    for m in range(metrics)]
            history.write(rows)
            largest_wal = max(largest_wal, wal.stat().st_size if wal.exists() else 0)
        total = written_bytes() - before
        data = history.used_bytes()
        history.close()
    print(f"| {label} | {total / minutes / 1e6:.1f} | {total / max(data, 1):.0f}x | {largest_wal / 1e6:.1f} | "
          f"{data / 1e6:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args()
    print(f"{args.devices:,} devices x {args.metrics} metrics, {args.minutes} minutes "
          f"({args.devices * args.metrics:,} rows a minute)")
    print("| writing | MB written per minute of data | written / stored | largest WAL MB | stored MB |\n"
          "|---|---|---|---|---|")
    default_chunk = history_module.WRITE_CHUNK
    run("as before: one transaction a minute", args.devices, args.metrics, args.minutes, 1, 10**9)
    run("one minute at a time, key-ordered chunks", args.devices, args.metrics, args.minutes, 1, default_chunk)
    run("5-minute batches, key-ordered chunks (now)", args.devices, args.metrics, args.minutes, 5, default_chunk)


if __name__ == "__main__":
    main()
