"""Faults under load with real processes (the gateway CLI, mosquitto, the platform stand-in, appliances over
MQTT): every faulty appliance ends with exactly one ticket. The table these produce is printed by
`python -m benchmarks.load_faults`."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from firmware_sim.load_faults import Publisher, broker_killed, fault_burst, sigkill_in_group_wait
from firmware_sim.localnet import free_port
from tests.e2e.conftest import Mosquitto

pytestmark = pytest.mark.e2e


async def test_300_appliances_faulting_within_10_s_each_get_one_ticket_and_the_console_answers(
        tmp_path: Path) -> None:
    result = await fault_burst(tmp_path, appliances=300, within=10.0)
    print(result.row())
    assert (result.delivered, result.duplicated, result.lost) == (300, 0, 0), result.row()
    assert " 0 failed" in result.note, result.note


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
async def test_a_broker_stopped_mid_stream_loses_no_ticket_and_no_acknowledged_telemetry(
        tmp_path: Path, how: signal.Signals) -> None:
    result = await broker_killed(tmp_path, how)
    print(result.row())
    assert (result.delivered, result.duplicated, result.lost) == (2, 0, 0), result.row()
    assert " 0 handled twice" in result.telemetry, "a QoS 1 repeat is recognised and dropped"
    if how == signal.SIGTERM:  # a clean stop saves the broker's queues: everything acknowledged arrives
        assert " 0 lost" in result.telemetry, result.telemetry


async def test_a_gateway_killed_inside_the_group_wait_sends_the_ticket_once_after_restart(tmp_path: Path) -> None:
    result = await sigkill_in_group_wait(tmp_path)
    print(result.row())
    assert result.note.startswith("0 POSTs before the kill"), "the kill landed inside the group wait"
    assert (result.delivered, result.duplicated, result.lost) == (1, 0, 0), result.row()


def test_the_test_publisher_moves_past_a_node_that_is_down(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The cluster tests' appliances keep publishing when the node after theirs is down as well: a refused
    connection moves the publisher on, as a lost one does (it once retried the dead node until the test ended)."""
    (tmp_path / "second").mkdir()
    second = Mosquitto(tmp_path / "second")
    second.start()
    publisher = Publisher([mosquitto.port, free_port(), second.port], "moves-on")
    try:
        mosquitto.stop()  # the publisher's node goes away; the next one in its list is not there at all
        for i in range(20):
            publisher.send("appliances/wm-1/telemetry", {"ts": float(i), "metrics": {"vibration": 0.1}})
        assert publisher.acknowledged(20) == publisher.sent, "the third node acknowledged what was sent"
        assert publisher.node == 2
    finally:
        publisher.close()
        second.stop()
