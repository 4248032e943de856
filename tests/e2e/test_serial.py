"""Appliances on real pseudo-terminals, speaking Midea, Haier and the open dialect to a running gateway."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim.models import AirConditionerModel, FaultSchedule, RefrigeratorModel, WasherModel
from firmware_sim.platform import PlatformServer
from firmware_sim.serial_peer import LineFaults, PtyAppliance
from gateway.config import PROJECT_ROOT, SerialPortConfig
from gateway.engine.profiles import load_profiles
from tests.e2e.conftest import StartGateway, eventually

pytestmark = pytest.mark.e2e

PROFILES = load_profiles(PROJECT_ROOT / "rules" / "profiles")
ONE_PERCENT = LineFaults(bit_flip_rate=0.005, drop_rate=0.003, duplicate_rate=0.002, noise_burst_rate=0.02,
                         split_writes=True)


@pytest.fixture
def ptys() -> Iterator[list[PtyAppliance]]:
    started: list[PtyAppliance] = []
    yield started
    for peer in started:
        peer.stop()


def port(path: Path, dialect: str, device_id: str, appliance: str = "", **changes: object) -> SerialPortConfig:
    return SerialPortConfig(url=str(path), dialect=dialect, device_id=device_id, appliance=appliance,
                            brand="Midea" if dialect == "midea" else "", model="KFR-35GW" if dialect == "midea" else "",
                            baudrate=9600, poll_interval_seconds=0.25, response_timeout_seconds=0.2, watchdog_polls=8,
                            reconnect_min_seconds=0.1, reconnect_max_seconds=0.5, **changes)  # type: ignore[arg-type]


async def test_midea_ac_fault_over_serial_opens_one_ticket_and_line_noise_opens_none(
        tmp_path: Path, start_gateway: StartGateway, platform: PlatformServer, ptys: list[PtyAppliance]) -> None:
    now = time.time()
    fan_failure = FaultSchedule("condenser_fan_failure", now + 2, 2)
    faulty = PtyAppliance(tmp_path / "ttyAC0", "midea", AirConditionerModel(7, fan_failure))
    noisy = PtyAppliance(tmp_path / "ttyAC1", "midea", AirConditionerModel(8), faults=ONE_PERCENT, seed=3)
    for peer in (faulty, noisy):
        peer.start()
        ptys.append(peer)
    running = await start_gateway(serial_ports=(
        port(faulty.path, "midea", "ac-serial-1", "air_conditioner"),
        port(noisy.path, "midea", "ac-serial-2", "air_conditioner")))
    gateway = running.gateway

    # the discharge line takes a minute or two to heat past 105 degC (the model's thermal lag), then 30 s of `for`
    await eventually(lambda: len(platform.store.list_tickets()) >= 1, 180, "the serial AC's fault reaches the platform")
    [summary] = platform.store.list_tickets()
    ticket = platform.store.get(summary["ticket_id"])
    assert ticket is not None
    body = ticket["ticket"]
    assert body["appliance"]["device_id"] == "ac-serial-1"
    assert (body["appliance"]["brand"], body["appliance"]["model"]) == ("Midea", "KFR-35GW")
    assert body["fault"]["code"] == "AC-TP-01"
    observed = {o["quantity"]: o["value"] for o in body["evidence"]["observed"]}
    assert observed["discharge_temperature"] > 105
    assert len(body["evidence"]["window"]["ts"]) > 30

    noisy_port = gateway.status()["serial_ports"]["ac-serial-2"]
    damage = sum(noisy_port.get(k, 0) for k in ("bad_checksum", "bad_crc", "bad_length", "wrong_appliance"))
    assert damage > 0, noisy_port
    assert noisy_port["frames"] > 100, noisy_port
    assert noisy_port["resyncs"] >= damage
    assert gateway.ingest.samples > 200
    assert len(platform.store.list_tickets()) == 1, "no false ticket from the noisy line"
    assert gateway.internal_errors == 0


async def test_unplugged_port_comes_back_without_a_restart(
        tmp_path: Path, start_gateway: StartGateway, ptys: list[PtyAppliance]) -> None:
    fridge = PtyAppliance(tmp_path / "ttyFR0", "open", RefrigeratorModel(5), profile=PROFILES["refrigerator"])
    washer = PtyAppliance(tmp_path / "ttyWM0", "haier", WasherModel(6), report_interval=0.2)
    for peer in (fridge, washer):
        peer.start()
        ptys.append(peer)
    running = await start_gateway(serial_ports=(port(fridge.path, "open", "fridge-serial"),
                                                port(washer.path, "haier", "washer-serial", "washer")))
    gateway = running.gateway
    registry = gateway.registry
    fridge_rows = gateway.store.windows["refrigerator"].rows
    await eventually(lambda: "fridge-serial" in fridge_rows and "washer-serial" in gateway.store.windows["washer"].rows
                     and gateway.store.windows["refrigerator"].latest_ts[fridge_rows["fridge-serial"]] > 0,
                     15, "both serial appliances report (the fridge its telemetry)")
    device = registry.get("fridge-serial")
    assert device is not None and device.meta is not None and device.meta.brand == "OpenMaker"
    assert device.meta.appliance_type == "refrigerator"  # from the open dialect's IDENTIFY

    link = next(link for link in gateway.serial_links if link.name == "fridge-serial")
    fridge.unplug()
    await eventually(lambda: link.state == "closed", 10, "the gateway notices the port vanished")
    await eventually(lambda: registry.get("fridge-serial").online is False, 10, "the fridge shows offline")
    samples_while_away = gateway.store.windows["refrigerator"].latest_ts[fridge_rows["fridge-serial"]]
    fridge.plug()
    await eventually(lambda: link.state == "open", 15, "the port is reopened")
    await eventually(lambda: gateway.store.windows["refrigerator"].latest_ts[fridge_rows["fridge-serial"]]
                     > samples_while_away, 15, "fridge telemetry resumes")
    assert registry.get("fridge-serial").online is True
    assert link.counters["reconnects"] >= 1

    fridge.silent = True  # the appliance stops answering: the watchdog reopens the port and marks it offline
    await eventually(lambda: link.counters["watchdog_resets"] >= 1, 10, "the watchdog notices the silence")
    assert registry.get("fridge-serial").online is False
    assert link.counters["timeouts"] > 0
    fridge.silent = False
    await eventually(lambda: registry.get("fridge-serial").online is True, 10, "the fridge answers again")
    await eventually(lambda: gateway.status()["serial_ports"]["washer-serial"]["frames"] > 5, 10,
                     "the washer's unsolicited status reports keep arriving")
    washer = gateway.store.windows["washer"]
    assert washer.latest[washer.rows["washer-serial"], washer.metric_index["operational_state"]] in (0.0, 1.0)
