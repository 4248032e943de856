"""A mixed fleet of simulated appliances publishing over MQTT at their own intervals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from firmware_sim.models import (
    AirConditionerModel,
    ApplianceModel,
    FaultSchedule,
    RefrigeratorModel,
    WasherModel,
)
from firmware_sim.mqtt_peer import Identity, MqttAppliance

log = logging.getLogger("firmware_sim.fleet")

INTERVALS = {"air_conditioner": 1.0, "refrigerator": 5.0, "washer": 2.0}
BRANDS = {
    "air_conditioner": [("Midea", "KFR-35GW"), ("Gree", "KFR-26GW"), ("Haier", "KFR-35GW/03")],
    "refrigerator": [("Haier", "BCD-470WDPG"), ("Midea", "BCD-516WKPZM")],
    "washer": [("Haier", "EG100HB"), ("LG", "FCV1209")],
}


class SimClock:
    """Simulated time: starts at `start` (epoch s) and runs `scale` times faster than the wall clock."""

    def __init__(self, scale: float = 1.0, start: float | None = None) -> None:
        self.scale = scale
        self.start = time.time() if start is None else start
        self._wall_start = time.time()

    def now(self) -> float:
        return self.start + (time.time() - self._wall_start) * self.scale


@dataclass(frozen=True)
class FleetSpec:
    air_conditioners: int = 8
    refrigerators: int = 7
    washers: int = 5
    seed: int = 1
    faulty_device: str | None = "ac-01"
    fault_after_seconds: float = 30.0
    fault_ramp_seconds: float = 10.0


def build_fleet(spec: FleetSpec, host: str, port: int, start: float) -> list[MqttAppliance]:
    """Devices named ac-01.., fridge-01.., washer-01..; the faulty one's fault starts `fault_after` after `start`."""
    devices: list[MqttAppliance] = []
    counts = (("air_conditioner", "ac", spec.air_conditioners), ("refrigerator", "fridge", spec.refrigerators),
              ("washer", "washer", spec.washers))
    for appliance, short, count in counts:
        for n in range(1, count + 1):
            device_id = f"{short}-{n:02d}"
            seed = spec.seed * 10_000 + len(devices)
            model: ApplianceModel
            if appliance == "air_conditioner":
                fault = None
                if device_id == spec.faulty_device:
                    fault = FaultSchedule("condenser_fan_failure", start + spec.fault_after_seconds,
                                          spec.fault_ramp_seconds)
                model = AirConditionerModel(seed, fault)
            elif appliance == "refrigerator":
                model = RefrigeratorModel(seed)
            else:
                model = WasherModel(seed, continuous=True)
            brand, model_name = BRANDS[appliance][n % len(BRANDS[appliance])]
            identity = Identity(device_id, brand, model_name, f"SN{seed:08d}")
            devices.append(MqttAppliance(identity, model, host, port))
    return devices


async def run_fleet(devices: list[MqttAppliance], stop: asyncio.Event, clock: SimClock) -> None:
    """Connect every appliance, then publish each at its type's interval (in simulated time) until `stop`."""
    for device in devices:
        await asyncio.to_thread(device.connect)
    log.info("fleet of %d appliances connected", len(devices))
    next_due = {d.identity.device_id: 0.0 for d in devices}
    tick = max(0.005, 0.1 / clock.scale)
    try:
        while not stop.is_set():
            now = clock.now()
            for device in devices:
                if now >= next_due[device.identity.device_id]:
                    device.publish_sample(now)
                    next_due[device.identity.device_id] = now + INTERVALS[device.model.appliance_type]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)
    finally:
        for device in devices:
            await asyncio.to_thread(device.disconnect, True)
