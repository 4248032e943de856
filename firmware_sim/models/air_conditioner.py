"""Split inverter air conditioner (R32) in cooling mode, switched on by its owner for the warm part of the day."""

from __future__ import annotations

import math
from typing import ClassVar

from firmware_sim.models.base import FaultableModel, FaultSchedule, daily_wave, day_fraction


def r32_saturation_kpa_gauge(temp_c: float) -> float:
    """R32 saturation pressure (Clausius-Clapeyron fit through 0.81 MPa at 0 degC and 3.14 MPa at 50 degC)."""
    absolute_mpa = math.exp(8.524 - 2385.0 / (temp_c + 273.15))
    return absolute_mpa * 1000.0 - 101.3


FILTER_CLEANING_HOURS = 500.0  # the fan hours at which the unit's own counter asks for a filter cleaning


FREEZING_SHOWS_AFTER = 600.0  # seconds of a running coil below 0 degC


class AirConditionerModel(FaultableModel):
    """Faults: condenser_fan_failure (no airflow: head pressure and discharge temperature climb, fan speed 0),
    condenser_fouling (the same climb with the fan turning normally, usually gradual), refrigerant_leak (high
    superheat, low subcooling), room_sensor_fault (the compressor cycles every few minutes), filter_clogged
    (too little air over the indoor coil: it falls below freezing, once the compressor runs long enough)."""

    appliance_type = "air_conditioner"
    faults: tuple[str, ...] = ("condenser_fan_failure", "condenser_fouling", "refrigerant_leak", "room_sensor_fault",
              "filter_clogged")
    # a clogged filter shows only as a coil that stays below freezing while the compressor runs: an AC that
    # short-cycles (a faulty room sensor) never runs long enough for the coil to freeze
    SHOWN_BY_USE: ClassVar[frozenset[str]] = frozenset({"filter_clogged"})

    def __init__(self, seed: int, schedules: list[FaultSchedule] | FaultSchedule | None = None,
                 outdoor_base: float = 31.0, always_on: bool = True) -> None:
        super().__init__(seed, schedules)
        self.outdoor_base = outdoor_base + self.rng.uniform(-3, 3)
        self.weather = 0.0  # day-to-day deviation, a slow random walk
        self.setpoint = float(self.rng.choice([24, 25, 26]))
        self.room = self.setpoint + self.rng.uniform(0, 2)
        self.filter_hours = self.rng.uniform(0, 300)
        self.always_on = always_on  # the demo's units run all the time; scenario units follow their owners
        self.on_hour = self.rng.uniform(9.0, 13.0)
        self.off_hour = self.rng.uniform(21.0, 23.5)
        self.lagged: dict[str, float] = {}
        self.filter_due_at: float | None = None  # metal and refrigerant take a minute or two to follow the compressor
        self.freezing_since: float | None = None  # since when the running coil's temperature is below 0 degC

    def _lag(self, name: str, target: float, dt: float, tau: float = 30.0) -> float:
        """First-order lag towards `target` with time constant `tau` seconds."""
        value = self.lagged.get(name, target)
        value += (target - value) * (1.0 - math.exp(-dt / tau))
        self.lagged[name] = value
        return value

    def _record_freezing(self, ts: float, coil: float, clog: float) -> None:
        """The clogged filter shows once the coil has stayed below 0 degC for 10 minutes of running."""
        if coil >= 0.0 or clog < 0.5:
            self.freezing_since = None
        elif self.freezing_since is None:
            self.freezing_since = ts
        elif ts - self.freezing_since >= FREEZING_SHOWS_AFTER:
            self._show("filter_clogged", ts)

    def user_wants_cooling(self, ts: float) -> bool:
        hour = day_fraction(ts) * 24.0
        if self.usage > 1.5:  # a heavy user sleeps with it on too
            return True
        return self.always_on or self.on_hour <= hour < self.off_hour

    def sample(self, ts: float) -> dict[str, float]:
        dt = self.step(ts, 1.0, 60.0)
        noise = self.rng.gauss
        self.weather = max(-4.0, min(4.0, self.weather + noise(0, 0.02) * math.sqrt(dt / 60.0)))
        outdoor = self.outdoor_base + self.weather + 4.0 * daily_wave(ts) + noise(0, 0.1)
        fan_loss = self.level("condenser_fan_failure", ts)
        fouling = self.level("condenser_fouling", ts)
        leak = self.level("refrigerant_leak", ts)
        clog = self.level("filter_clogged", ts)
        cycling = self.level("room_sensor_fault", ts) > 0.5
        on = self.user_wants_cooling(ts)
        if on and cycling:  # a sensor in the unit's own airflow: 100 s on, 100 s off
            on = (ts % 200.0) < 100.0
        error = self.room - self.setpoint
        frequency = max(20.0, min(90.0, 45.0 + 25.0 * error)) if on else 0.0
        heat_gain = 0.0002 * (outdoor - self.room)
        cooling = 0.0012 * frequency / 45.0 * (1.0 - 0.3 * max(fan_loss, fouling) - 0.4 * leak)
        self.room += (heat_gain - cooling) * dt
        if on:
            self.filter_hours += dt / 3600.0
            if self.filter_hours > FILTER_CLEANING_HOURS and self.filter_due_at is None:
                self.filter_due_at = ts  # a real maintenance need the gateway should remind about
        if not on:  # pressures equalise near the saturation pressure of the warmer side, temperatures settle
            self.freezing_since = None
            equal = r32_saturation_kpa_gauge(outdoor - 2.0)
            return {
                "local_temperature": round(self.room + noise(0, 0.05), 2),
                "outdoor_temperature": round(outdoor, 2),
                "occupied_cooling_setpoint": self.setpoint,
                "system_mode": 3.0 if self.user_wants_cooling(ts) else 0.0,
                "compressor_on": 0.0, "compressor_frequency": 0.0,
                "compressor_current": round(abs(noise(0.2, 0.02)), 2),
                "discharge_temperature": round(self._lag("tp", outdoor + 3.0, dt, 240.0) + noise(0, 0.3), 1),
                "suction_pressure": round(self._lag("ps", equal, dt) + noise(0, 5), 0),
                "discharge_pressure": round(self._lag("pd", equal, dt) + noise(0, 10), 0),
                "indoor_coil_temperature": round(self._lag("coil", self.room - 1.0, dt) + noise(0, 0.2), 2),
                "suction_temperature": round(self._lag("ts", self.room, dt) + noise(0, 0.2), 2),
                "liquid_line_temperature": round(self._lag("tl", outdoor, dt) + noise(0, 0.2), 2),
                "indoor_fan_speed": 0.0, "outdoor_fan_speed": 0.0,
                "filter_runtime_hours": round(self.filter_hours, 3),
            }
        # Losing condenser airflow divides the coil's heat rejection: the approach to outdoor air grows until
        # the high-pressure switch would trip (about 4.15 MPa, 64 degC for R32), whatever the weather.
        airflow = max(0.2, 1.0 - 0.8 * max(fan_loss, fouling))
        approach = (11.0 + 0.05 * (frequency - 45.0)) / airflow
        condensing = min(outdoor + approach, max(outdoor + 11.0, 63.5))
        evaporating = 8.0 - 0.04 * (frequency - 45.0) - 4.0 * leak - 14.0 * clog
        superheat = 6.0 + 14.0 * leak
        self._record_freezing(ts, evaporating + 1.5, clog)
        subcooling = 5.0 - 4.3 * leak
        return {
            "local_temperature": round(self.room + noise(0, 0.05), 2),
            "outdoor_temperature": round(outdoor, 2),
            "occupied_cooling_setpoint": self.setpoint,
            "system_mode": 3.0,
            "compressor_on": 1.0,
            "compressor_frequency": round(frequency, 1),
            "compressor_current": round(3.5 + 0.085 * frequency + 3.0 * max(fan_loss, fouling) + noise(0, 0.1), 2),
            "discharge_temperature": round(self._lag("tp", condensing + 24.0 + 20.0 * max(fan_loss, fouling)
                                                     + 10.0 * leak, dt) + noise(0, 0.3), 1),
            "suction_pressure": round(self._lag("ps", r32_saturation_kpa_gauge(evaporating), dt) + noise(0, 5), 0),
            "discharge_pressure": round(self._lag("pd", r32_saturation_kpa_gauge(condensing), dt) + noise(0, 10), 0),
            "indoor_coil_temperature": round(self._lag("coil", evaporating + 1.5, dt) + noise(0, 0.2), 2),
            "suction_temperature": round(self._lag("ts", evaporating + superheat, dt) + noise(0, 0.2), 2),
            "liquid_line_temperature": round(self._lag("tl", condensing - subcooling, dt) + noise(0, 0.2), 2),
            "indoor_fan_speed": round(900.0 * (1.0 - 0.5 * clog) + noise(0, 5.0)),
            "outdoor_fan_speed": round(800.0 * (1.0 - fan_loss) + abs(noise(0, 3.0))),
            "filter_runtime_hours": round(self.filter_hours, 3),
        }
