"""Every ticket arrives exactly once whatever breaks: the platform (down, slow, failing, dropping answers),
the gateway process (SIGKILL at random while sending) or its disk (full, corrupt). Real HTTP, real SQLite,
real processes; the table these produce is printed by `python -m benchmarks.delivery_faults`."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.delivery_faults import SCENARIOS, corrupt_database

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_no_ticket_is_lost_or_duplicated(tmp_path: Path, scenario: str) -> None:
    result = await SCENARIOS[scenario](tmp_path)
    print(result.row())
    assert result.expected > 0
    assert (result.delivered, result.duplicated, result.lost) == (result.expected, 0, 0), result.row()
    if scenario == "disk_full":
        assert result.note.startswith("kept running"), result.note
    if scenario == "accept_then_drop":
        assert result.resends_absorbed == 10, "each cut answer was resent and recognised by its key"


async def test_a_corrupt_database_stops_the_gateway_once_with_the_reason(tmp_path: Path) -> None:
    code, log = await corrupt_database(tmp_path)
    assert code == 2
    assert "cannot open the gateway database" in log and "file is not a database" in log
    assert "Traceback" not in log
