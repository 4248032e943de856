"""Appliance models that produce plausible telemetry from a seeded random generator.

Each model is a pure function of (time, its own state, its rng): `sample(ts)` advances the state to `ts`
and returns the metric values the appliance would report. Faults are injected by scheduling them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class FaultSchedule:
    """A fault that starts at `onset` (epoch s) and reaches full severity after `ramp_seconds`."""

    name: str
    onset: float
    ramp_seconds: float = 20.0

    def severity(self, ts: float) -> float:
        if ts < self.onset:
            return 0.0
        if self.ramp_seconds <= 0:
            return 1.0
        return min(1.0, (ts - self.onset) / self.ramp_seconds)


class ApplianceModel(Protocol):
    appliance_type: str
    faults: tuple[str, ...]

    def sample(self, ts: float) -> dict[str, float]: ...


def r32_saturation_kpa_gauge(temp_c: float) -> float:
    """R32 saturation pressure (Clausius-Clapeyron fit through 0.81 MPa at 0 degC and 3.14 MPa at 50 degC)."""
    absolute_mpa = math.exp(8.524 - 2385.0 / (temp_c + 273.15))
    return absolute_mpa * 1000.0 - 101.3


class AirConditionerModel:
    """Split inverter AC in cooling mode; injectable fault `condenser_fan_failure`."""

    appliance_type = "air_conditioner"
    faults: tuple[str, ...] = ("condenser_fan_failure",)

    def __init__(self, seed: int, fault: FaultSchedule | None = None, outdoor_base: float = 31.0) -> None:
        self.rng = random.Random(seed)
        self.fault = fault
        self.outdoor_base = outdoor_base + self.rng.uniform(-3, 3)
        self.setpoint = float(self.rng.choice([24, 25, 26]))
        self.room = self.setpoint + self.rng.uniform(0, 2)
        self.filter_hours = self.rng.uniform(0, 300)
        self.last_ts: float | None = None

    def sample(self, ts: float) -> dict[str, float]:
        dt = 1.0 if self.last_ts is None else max(0.0, min(60.0, ts - self.last_ts))
        self.last_ts = ts
        noise = self.rng.gauss
        severity = self.fault.severity(ts) if self.fault else 0.0
        outdoor = self.outdoor_base + 3.0 * math.sin(2 * math.pi * ((ts / 86400.0) % 1.0)) + noise(0, 0.1)
        error = self.room - self.setpoint
        frequency = max(20.0, min(90.0, 45.0 + 25.0 * error))
        heat_gain = 0.0002 * (outdoor - self.room)
        cooling = 0.0012 * frequency / 45.0 * (1.0 - 0.3 * severity)
        self.room += (heat_gain - cooling) * dt
        # Losing condenser airflow divides the coil's heat rejection: the approach to outdoor air grows until
        # the high-pressure switch would trip (about 4.15 MPa, 64 degC for R32), whatever the weather.
        approach = (11.0 + 0.05 * (frequency - 45.0)) / max(0.2, 1.0 - 0.8 * severity)
        condensing = min(outdoor + approach, max(outdoor + 11.0, 63.5))
        evaporating = 8.0 - 0.04 * (frequency - 45.0)
        self.filter_hours += dt / 3600.0
        return {
            "local_temperature": round(self.room + noise(0, 0.05), 2),
            "outdoor_temperature": round(outdoor, 2),
            "occupied_cooling_setpoint": self.setpoint,
            "system_mode": 3.0,
            "compressor_on": 1.0,
            "compressor_frequency": round(frequency, 1),
            "compressor_current": round(3.5 + 0.085 * frequency + 3.0 * severity + noise(0, 0.1), 2),
            "discharge_temperature": round(condensing + 24.0 + 20.0 * severity + noise(0, 0.3), 1),
            "suction_pressure": round(r32_saturation_kpa_gauge(evaporating) + noise(0, 5), 0),
            "discharge_pressure": round(r32_saturation_kpa_gauge(condensing) + noise(0, 10), 0),
            "indoor_coil_temperature": round(evaporating + 1.5 + noise(0, 0.2), 2),
            "suction_temperature": round(evaporating + 6.0 + noise(0, 0.2), 2),
            "liquid_line_temperature": round(condensing - 5.0 + noise(0, 0.2), 2),
            "indoor_fan_speed": round(900.0 + noise(0, 5.0)),
            "outdoor_fan_speed": round(800.0 * (1.0 - severity) + abs(noise(0, 3.0))),
            "filter_runtime_hours": round(self.filter_hours, 3),
        }


class RefrigeratorModel:
    """Fridge-freezer with thermostat cycling, defrost heater cycles and door openings."""

    appliance_type = "refrigerator"
    faults: tuple[str, ...] = ()

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.freezer = -18.0 + self.rng.uniform(-1, 1)
        self.fresh = 4.0 + self.rng.uniform(-0.5, 0.5)
        self.compressor = False
        self.door_until = 0.0
        self.last_ts: float | None = None

    def sample(self, ts: float) -> dict[str, float]:
        dt = 5.0 if self.last_ts is None else max(0.0, min(300.0, ts - self.last_ts))
        self.last_ts = ts
        if self.rng.random() < 0.002 * dt:
            self.door_until = ts + self.rng.uniform(5, 40)
        door = ts < self.door_until
        defrost = (ts % 28800) < 1200
        if self.freezer > -16.5:
            self.compressor = True
        elif self.freezer < -19.5:
            self.compressor = False
        compressor = self.compressor and not defrost
        ambient = 22.0
        # rates in K/s: a closed freezer warms ~0.004 K/s off-cycle (-19.5 -> -16.5 degC in about 12 min) and
        # 4-5 K over a 20 min defrost; the compressor pulls it down in about 5 min
        self.freezer += (0.0001 * (ambient - self.freezer) - (0.014 if compressor else 0.0)
                         + (0.002 if door else 0.0)) * dt
        damper_open = compressor and self.fresh > 3.5  # the fresh-food side has its own air damper control
        self.fresh += (0.00005 * (ambient - self.fresh) - (0.004 if damper_open else 0.0)
                       + (0.004 if door else 0.0)) * dt
        # the evaporator reads far below the freezer while cooling, and well above 0 degC while defrosting
        evaporator = self.freezer - (8.0 if compressor else 0.0) + (25.0 if defrost else 0.0)
        noise = self.rng.gauss
        return {
            "fresh_temperature": round(self.fresh + noise(0, 0.05), 2),
            "freezer_temperature": round(self.freezer + noise(0, 0.05), 2),
            "evaporator_temperature": round(evaporator + noise(0, 0.2), 2),
            "ambient_temperature": round(ambient + noise(0, 0.1), 2),
            "compressor_on": float(compressor),
            "defrost_heater_on": float(defrost),
            "door_open": float(door),
        }


class WasherModel:
    """Front loader running programs: fill, wash, rinse, spin, drain, then idle for a while."""

    appliance_type = "washer"
    faults: tuple[str, ...] = ()
    # phase code, duration (s), water level %, drum rpm, motor current A
    PROGRAM: tuple[tuple[int, float, float, float, float], ...] = (
               (1, 90, 60.0, 0.0, 0.4), (2, 600, 60.0, 50.0, 1.8), (5, 60, 5.0, 0.0, 0.3),
               (1, 90, 60.0, 0.0, 0.4), (3, 300, 60.0, 45.0, 1.6), (5, 60, 5.0, 0.0, 0.3),
               (4, 420, 0.0, 1200.0, 3.2), (0, 1800, 0.0, 0.0, 0.0))

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.offset = self.rng.uniform(0, sum(p[1] for p in self.PROGRAM))

    def _step_at(self, ts: float) -> tuple[int, float, float, float, float]:
        position = (ts + self.offset) % sum(p[1] for p in self.PROGRAM)
        for step in self.PROGRAM:
            if position < step[1]:
                return step
            position -= step[1]
        return self.PROGRAM[-1]

    def sample(self, ts: float) -> dict[str, float]:
        phase, _, level, rpm, current = self._step_at(ts)
        running = phase != 0
        noise = self.rng.gauss
        return {
            "operational_state": 1.0 if running else 0.0,
            "phase": float(phase),
            "water_level": round(max(0.0, level + noise(0, 1.0)) if running else 0.0, 1),
            "water_temperature": round(40.0 + noise(0, 0.3) if running else 20.0, 1),
            "motor_current": round(max(0.0, current + noise(0, 0.05)), 2),
            "drum_speed": round(max(0.0, rpm + noise(0, 5.0)) if rpm else 0.0, 0),
            "vibration": round(abs(0.05 + rpm / 2000.0 * 0.4 + noise(0, 0.02)), 3),
            "door_locked": float(running),
        }
