"""Print the faults-under-load table: faulty appliances, tickets delivered, duplicated and lost, and what
happened to the telemetry, per scenario (the gateway CLI, mosquitto, the platform stand-in, MQTT appliances).

    .venv/bin/python -m benchmarks.load_faults [SCENARIO ...]

Scenarios: fault_burst, broker_restarted, broker_killed, sigkill_in_group_wait (default: all).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from pathlib import Path

from firmware_sim.load_faults import SCENARIOS, TABLE_HEADER


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
