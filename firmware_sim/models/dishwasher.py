"""Dishwasher: one program most evenings (fill, wash at 55-65 degC, drain, fill, rinse, drain, dry). Its firmware
raises the Matter DishwasherAlarm bits when a phase does not do what it should."""

from __future__ import annotations

import math
from typing import ClassVar

from firmware_sim.models.base import FaultableModel, FaultSchedule, day_fraction

# phase (0 idle, 1 fill, 2 wash, 3 drain, 4 rinse, 5 dry), seconds
PROGRAM = ((1, 120), (2, 1800), (3, 90), (1, 120), (4, 900), (3, 90), (5, 1200))
PROGRAM_SECONDS = sum(p[1] for p in PROGRAM)
INFLOW, DRAIN, DOOR, TEMP_LOW, TEMP_HIGH, LEVEL = 1, 2, 4, 8, 16, 32  # DishwasherAlarm bitmap
ALARM_OF = {"inlet_supply_blocked": INFLOW, "drain_filter_clogged": DRAIN, "heater_failure": TEMP_LOW,
            "level_sensor_fault": LEVEL}
SUBSTEP_SECONDS = 5.0  # the firmware's checks run at least this often, whatever the reporting rate
MAX_SUBSTEPS = 720  # a long gap (an outage) is crossed in at most this many steps


class DishwasherModel(FaultableModel):
    """Faults: inlet_supply_blocked (no water comes in), drain_filter_clogged (the water stays), heater_failure
    (the wash stays cold), level_sensor_fault (the level reads full whatever the water)."""

    appliance_type = "dishwasher"
    faults: tuple[str, ...] = ("inlet_supply_blocked", "drain_filter_clogged", "heater_failure", "level_sensor_fault")
    # a fault shows when a program reaches the check that raises its alarm, and only while no other alarm has
    # stopped the programs (a clogged drain hides a heater that failed after it)
    SHOWN_BY_USE: ClassVar[frozenset[str]] = frozenset(faults)

    def __init__(self, seed: int, schedules: list[FaultSchedule] | FaultSchedule | None = None) -> None:
        super().__init__(seed, schedules)
        self.start_hour = self.rng.uniform(19.5, 22.0)
        self.runs_today = self.rng.random() < 0.8
        self.day = -1
        self.level_pct = 0.0
        self.temperature = 22.0
        self.target = self.rng.choice([55.0, 60.0, 65.0])
        self.latched = 0  # firmware stops the program on an alarm and keeps it raised until serviced
        self._inflow = 0.0

    def repair(self) -> None:
        super().repair()
        self.latched = 0

    def _phase(self, ts: float) -> tuple[int, float]:
        day = int((ts / 3600.0 + 8.0) // 24)
        if day != self.day:
            self.day, self.runs_today = day, self.rng.random() < min(1.0, 0.8 * self.usage)
        position = day_fraction(ts) * 86400.0 - self.start_hour * 3600.0
        if not self.runs_today or not 0 <= position < PROGRAM_SECONDS:
            return 0, 0.0
        for phase, seconds in PROGRAM:
            if position < seconds:
                return phase, position
            position -= seconds
        return 0, 0.0

    def sample(self, ts: float) -> dict[str, float]:
        """The firmware runs all the time, not only when it reports: its water, heat and alarm checks advance in
        steps of at most SUBSTEP_SECONDS since the previous report, so a dishwasher reporting every minute
        drains, heats and raises the same alarms as one reporting every two seconds."""
        previous, self.last_ts = self.last_ts, ts
        if previous is None:
            self._advance(ts, 2.0)
        else:
            gap = max(0.0, ts - previous)
            steps = max(1, min(MAX_SUBSTEPS, math.ceil(gap / SUBSTEP_SECONDS)))
            for i in range(1, steps + 1):
                self._advance(previous + gap * i / steps, gap / steps)
        phase, _ = self._phase(ts) if not self.latched else (0, 0.0)
        inflow = self._inflow
        noise = self.rng.gauss
        reported_level = 100.0 if self.level("level_sensor_fault", ts) > 0.5 else self.level_pct
        return {
            "operational_state": 3.0 if self.latched else 1.0 if phase else 0.0,
            "phase": float(phase),
            "water_level": round(max(0.0, min(100.0, reported_level + noise(0, 0.5))), 1),
            "water_temperature": round(self.temperature + noise(0, 0.2), 1),
            "inflow_rate": round(inflow + (abs(noise(0, 0.05)) if inflow else 0.0), 2),
            "drain_pump_on": float(phase == 3),
            "door_open": 0.0,
            "alarm": float(self.latched),
        }

    def _advance(self, ts: float, dt: float) -> None:
        """The water, the heat and the firmware's phase checks over `dt` seconds ending at `ts`."""
        if self.latched and not any(self.latched & bit and self.level(fault, ts) > 0.5
                                    for fault, bit in ALARM_OF.items()):
            self.latched = 0  # the fault behind the alarm was repaired, and the technician reset it
        phase, elapsed = self._phase(ts) if not self.latched else (0, 0.0)
        blocked_in = self.level("inlet_supply_blocked", ts) > 0.5
        blocked_out = self.level("drain_filter_clogged", ts) > 0.5
        inflow = 2.5 if phase == 1 and not blocked_in and self.level_pct < 80.0 else 0.0
        self._inflow = inflow
        self.level_pct = min(100.0, self.level_pct + inflow * dt * 0.8)
        if phase == 3 and not blocked_out:
            self.level_pct = max(0.0, self.level_pct - dt * 1.5)
        heating = phase in (2, 4) and self.level("heater_failure", ts) < 0.5 and self.temperature < self.target
        self.temperature += ((0.03 if heating else 0.0) - 0.0008 * (self.temperature - 22.0)) * dt
        if phase == 0 and self.level_pct > 0 and not blocked_out:
            self.level_pct = 0.0
        alarm = 0
        if phase == 1 and elapsed > 100 and self.level_pct < 40.0:
            alarm |= INFLOW
        if phase == 3 and elapsed > 80 and self.level_pct > 20.0:
            alarm |= DRAIN
        if phase == 2 and elapsed > 1500 and self.temperature < 40.0:
            alarm |= TEMP_LOW
        reported_level = 100.0 if self.level("level_sensor_fault", ts) > 0.5 else self.level_pct
        if phase == 3 and elapsed > 80 and reported_level > 95.0 and not blocked_out:
            alarm |= LEVEL  # the level reads full after a drain that worked: the sensor is wrong
        for fault, bit in ALARM_OF.items():
            if alarm & bit and not self.latched & bit and self.level(fault, ts) > 0.5:
                self._show(fault, ts)
        self.latched |= alarm
