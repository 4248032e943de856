"""Decoder throughput per UART dialect: frames/s and MB/s through the incremental decoder, in 4 KiB reads.

    .venv/bin/python -m benchmarks.serial_decoders [--frames 20000]

Frames are the kind each dialect carries most: a Midea AC state response (0xC0, 34 bytes), a Haier washer
status report with CRC (29 bytes on the wire, one stuffed byte), an open-dialect AC telemetry frame (11 metrics,
63 bytes).
"""

from __future__ import annotations

import argparse
import time

from gateway.protocol import haier, midea, open_dialect
from gateway.protocol.stream import StreamDecoder


def streams(count: int) -> dict[str, tuple[bytes, StreamDecoder[object]]]:
    state = midea.ACState(True, 24.0, midea.Mode.COOL, 102, 25.3, 31.5, False, False, 0)
    midea_frame = midea.MideaFrame(midea.AIR_CONDITIONER, 3, midea.FrameType.QUERY, midea.state_body(state)).to_bytes()
    haier_frame = haier.HaierFrame(0x06, b"\x6d\x01\x01\xb0\x31" + bytes(9) + b"\xff").to_wire()
    telemetry = open_dialect.Telemetry(tuple((i, 20.0 + i) for i in range(1, 12)))
    open_frame = open_dialect.OpenFrame(open_dialect.MessageType.TELEMETRY, 1, telemetry.encode()).to_bytes()
    return {
        "midea": (midea_frame * count, midea.MideaDecoder()),  # type: ignore[dict-item]
        "haier": (haier_frame * count, haier.HaierDecoder()),  # type: ignore[dict-item]
        "open": (open_frame * count, open_dialect.OpenDecoder()),  # type: ignore[dict-item]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20_000)
    args = parser.parse_args()
    print(f"command: .venv/bin/python -m benchmarks.serial_decoders --frames {args.frames}")
    print(f"{'dialect':>8} {'frame bytes':>12} {'frames/s':>10} {'MB/s':>6} {'us/frame':>9}")
    for name, (stream, decoder) in streams(args.frames).items():
        started = time.perf_counter()
        decoded = sum(len(decoder.feed(stream[i:i + 4096])) for i in range(0, len(stream), 4096))
        elapsed = time.perf_counter() - started
        assert decoded == args.frames, (name, decoded)
        print(f"{name:>8} {len(stream) // args.frames:>12} {decoded / elapsed:>10.0f} "
              f"{len(stream) / elapsed / 1e6:>6.2f} {elapsed / decoded * 1e6:>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
