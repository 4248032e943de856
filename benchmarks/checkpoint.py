"""What a checkpoint of the windows and pending timers costs: the copy on the pipeline thread (ingest waits for
it), all at once and in the live gateway's chunks, the memory the copies hold, the write on its own thread, the
file size, and the restore at start.

    .venv/bin/python -m benchmarks.checkpoint [--devices 100,1000,10000]

Windows are filled to their full length with the whole rule library loaded (benchmarks/rule_engine.py's fleet),
devices split evenly over the five appliance types.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import tracemalloc
from pathlib import Path

from benchmarks.rule_engine import T0, build
from gateway.engine.checkpoint import Checkpointer, restore, take, write


def measure(devices: int, folder: Path) -> dict[str, float]:
    evaluator, store, _ = build(devices)
    evaluator.evaluate()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    arrays = take(store, evaluator, T0)  # all at once: what a checkpoint cost before the chunks, and at stop
    copied = time.perf_counter() - started
    whole_peak = tracemalloc.get_traced_memory()[1] - base
    path = folder / f"checkpoint-{devices}.npz"
    started = time.perf_counter()
    size = write(path, arrays)
    written = time.perf_counter() - started
    del arrays
    path.unlink()

    saver = Checkpointer(path, interval=1e-9)  # as the live gateway takes it: chunk by chunk, paced
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    saver.maybe_save(store, evaluator, T0)
    while saver.next_step != math.inf:
        time.sleep(max(0.0, saver.next_step - time.monotonic()))
        saver.step()
    assert saver._writer is not None
    saver._writer.join()
    chunked_seconds = time.perf_counter() - started
    chunked_peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert saver.saved == 1, "the chunked checkpoint was not written"

    fresh_evaluator, fresh_store, _ = build(1)
    started = time.perf_counter()
    restored = restore(path, fresh_store, fresh_evaluator, T0, 3600.0)
    loaded = time.perf_counter() - started
    path.unlink()
    assert restored >= devices - 5, restored
    return {"copy_ms": copied * 1000, "whole_mb": whole_peak / 2**20, "write_ms": written * 1000,
            "mb": size / 2**20, "chunks": saver.last_chunks, "chunk_ms": saver.last_copy_ms,
            "chunked_s": chunked_seconds, "chunked_mb": chunked_peak / 2**20, "restore_ms": loaded * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="100,1000,10000", help="comma-separated fleet sizes")
    args = parser.parse_args()
    print(f"command: .venv/bin/python -m benchmarks.checkpoint --devices {args.devices}")
    print("all at once: the copy stops ingest for its whole length and holds a copy of the store until written;")
    print("in chunks (the live gateway): ingest waits at most the longest chunk, spaced to 2% of the thread")
    print(f"{'devices':>8} {'all at once: copy':>18} {'memory':>8} {'write':>8} {'file':>9} | {'chunks':>6} "
          f"{'longest':>8} {'taken in':>9} {'memory':>8} | {'restore':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        for devices in (int(d) for d in args.devices.split(",")):
            r = measure(devices, Path(scratch))
            print(f"{devices:>8} {r['copy_ms']:>15.1f} ms {r['whole_mb']:>5.0f} MB {r['write_ms']:>5.0f} ms "
                  f"{r['mb']:>6.1f} MB | {r['chunks']:>6.0f} {r['chunk_ms']:>5.1f} ms {r['chunked_s']:>7.1f} s "
                  f"{r['chunked_mb']:>5.0f} MB | {r['restore_ms']:>5.0f} ms", flush=True)


if __name__ == "__main__":
    main()
