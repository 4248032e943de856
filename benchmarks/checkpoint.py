"""What a checkpoint of the windows and pending timers costs: the copy on the pipeline thread (ingest waits for
it), the write on its own thread, the file size, and the restore at start.

    .venv/bin/python -m benchmarks.checkpoint [--devices 100,1000,10000]

Windows are filled to their full length with the whole rule library loaded (benchmarks/rule_engine.py's fleet),
devices split evenly over the five appliance types.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.rule_engine import T0, build
from gateway.engine.checkpoint import restore, take, write


def measure(devices: int, folder: Path) -> dict[str, float]:
    evaluator, store, _ = build(devices)
    evaluator.evaluate()
    started = time.perf_counter()
    arrays = take(store, evaluator, T0)
    copied = time.perf_counter() - started
    path = folder / f"checkpoint-{devices}.npz"
    started = time.perf_counter()
    size = write(path, arrays)
    written = time.perf_counter() - started
    fresh_evaluator, fresh_store, _ = build(1)
    started = time.perf_counter()
    restored = restore(path, fresh_store, fresh_evaluator, T0, 3600.0)
    loaded = time.perf_counter() - started
    path.unlink()
    assert restored >= devices - 5, restored
    return {"copy_ms": copied * 1000, "write_ms": written * 1000, "mb": size / 2**20, "restore_ms": loaded * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="100,1000,10000", help="comma-separated fleet sizes")
    args = parser.parse_args()
    print(f"{'devices':>8} {'copy (pipeline thread)':>23} {'write':>9} {'file':>9} {'restore':>9}")
    with tempfile.TemporaryDirectory() as scratch:
        for devices in (int(d) for d in args.devices.split(",")):
            r = measure(devices, Path(scratch))
            print(f"{devices:>8} {r['copy_ms']:>20.1f} ms {r['write_ms']:>6.0f} ms {r['mb']:>6.1f} MB "
                  f"{r['restore_ms']:>6.0f} ms", flush=True)


if __name__ == "__main__":
    main()
