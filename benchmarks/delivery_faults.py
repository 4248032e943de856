"""Print the delivery fault table: tickets expected, delivered, duplicated and lost per failure scenario.

    .venv/bin/python -m benchmarks.delivery_faults [SCENARIO ...]

Scenarios: platform_down, slow_platform, random_500s, accept_then_drop, sigkill_loop, disk_full (default: all).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Protocol

from firmware_sim.delivery_faults import SCENARIOS, TABLE_HEADER


class Scenario(Protocol):
    def __call__(self, tmp: Path, /) -> Awaitable[Row]: ...


class Row(Protocol):
    def row(self) -> str: ...


async def print_table(scenarios: Mapping[str, Scenario], header: str, names: list[str]) -> None:
    """Run the scenarios named (all if none), each in a scratch folder, and print one table row per result."""
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        print(header, flush=True)
        for name in names or list(scenarios):
            if name not in scenarios:
                raise SystemExit(f"unknown scenario {name!r}; choose from {', '.join(scenarios)}")
            result = await scenarios[name](Path(folder))
            print(result.row(), flush=True)


if __name__ == "__main__":
    asyncio.run(print_table(SCENARIOS, TABLE_HEADER, sys.argv[1:]))
