"""Print the delivery fault table: tickets expected, delivered, duplicated and lost per failure scenario.

    .venv/bin/python -m benchmarks.delivery_faults [SCENARIO ...]

Scenarios: platform_down, slow_platform, random_500s, accept_then_drop, sigkill_loop, disk_full (default: all).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from pathlib import Path

from firmware_sim.delivery_faults import SCENARIOS, TABLE_HEADER


async def main(names: list[str]) -> None:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        print(TABLE_HEADER, flush=True)
        for name in names or list(SCENARIOS):
            if name not in SCENARIOS:
                raise SystemExit(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
            result = await SCENARIOS[name](Path(folder))
            print(result.row(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
