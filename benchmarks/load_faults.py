"""Print the faults-under-load table: faulty appliances, tickets delivered, duplicated and lost, and what
happened to the telemetry, per scenario (the gateway CLI, mosquitto, the platform stand-in, MQTT appliances).

    .venv/bin/python -m benchmarks.load_faults [SCENARIO ...]

Scenarios: fault_burst, broker_restarted, broker_killed, sigkill_in_group_wait (default: all).
"""

from __future__ import annotations

import asyncio
import sys

from benchmarks.delivery_faults import print_table
from firmware_sim.load_faults import SCENARIOS, TABLE_HEADER

if __name__ == "__main__":
    asyncio.run(print_table(SCENARIOS, TABLE_HEADER, sys.argv[1:]))
