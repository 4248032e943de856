"""Electric storage water heater (80 l): thermostat with hysteresis, showers morning and evening, small draws."""

from __future__ import annotations

from typing import ClassVar

from firmware_sim.models.base import FaultableModel, FaultSchedule, day_fraction

TANK_LITRES = 80.0
HEAT_CAPACITY = TANK_LITRES * 4186.0  # J/K
HIGH_LIMIT = 92.0  # the safety cut-out
STRATIFICATION = 0.35
STUCK_SHOWS_ABOVE = 10.0  # K past the setpoint at which a thermostat that does not open shows in telemetry


class WaterHeaterModel(FaultableModel):
    """Faults: element_burnout (energised, no heat), scale_build_up (heats at a fraction of its rate, usually
    gradual), thermostat_stuck_closed (heats on to the safety cut-out), thermostat_failed_open (never calls
    for heat: the tank goes cold)."""

    appliance_type = "water_heater"
    faults: tuple[str, ...] = ("element_burnout", "scale_build_up", "thermostat_stuck_closed", "thermostat_failed_open")
    SHOWN_BY_USE: ClassVar[frozenset[str]] = frozenset({"element_burnout", "scale_build_up", "thermostat_failed_open",
                                                        "thermostat_stuck_closed"})

    def __init__(self, seed: int, schedules: list[FaultSchedule] | FaultSchedule | None = None) -> None:
        super().__init__(seed, schedules)
        self.setpoint = float(self.rng.choice([55, 60, 65]))
        self.tank = self.setpoint - self.rng.uniform(0, 4)
        self.heating = False
        self.power = self.rng.choice([2000.0, 2500.0, 3000.0])
        self.inlet = 15.0 + self.rng.uniform(-3, 3)
        self.draw_until = 0.0
        self.draw_flow = 0.0
        self.showers = [self.rng.uniform(6.5, 8.0), self.rng.uniform(19.5, 22.5)]

    def _maybe_draw(self, ts: float, dt: float) -> None:
        if ts < self.draw_until:
            return
        hour = day_fraction(ts) * 24.0
        if any(0 <= hour - start < dt / 3600.0 for start in self.showers):
            self.draw_until, self.draw_flow = ts + self.rng.uniform(420, 720), self.rng.uniform(6.0, 9.0)
        elif 7.0 <= hour < 23.0 and self.rng.random() < self.usage * dt / 5400.0:  # a hand wash, the dishes
            self.draw_until, self.draw_flow = ts + self.rng.uniform(20, 90), self.rng.uniform(2.0, 5.0)

    def _record_shown(self, ts: float, element_ok: bool) -> None:
        """A dead or scaled element shows only while the thermostat calls for heat (scale only on an element
        that still heats: a dead one heats at no rate at all); a thermostat failed open only once the tank has
        cooled to where it would have called; a thermostat stuck closed only once its element has heated the tank
        10 K past the setpoint, where telemetry tells it from a heat-up's overshoot (one that failed open first,
        or whose element is already dead, never gets there)."""
        if self.heating and not element_ok:
            self._show("element_burnout", ts)
        if self.heating and element_ok and self.level("scale_build_up", ts) > 0.5:
            self._show("scale_build_up", ts)
        if self.level("thermostat_failed_open", ts) > 0.5 and self.tank < self.setpoint - 5.0:
            self._show("thermostat_failed_open", ts)
        if (self.level("thermostat_stuck_closed", ts) > 0.5 and self.level("thermostat_failed_open", ts) < 0.5
                and self.heating and element_ok and self.tank >= self.setpoint + STUCK_SHOWS_ABOVE):
            self._show("thermostat_stuck_closed", ts)

    def sample(self, ts: float) -> dict[str, float]:
        dt = self.step(ts, 10.0, 300.0)
        self._maybe_draw(ts, dt)
        flow = self.draw_flow if ts < self.draw_until else 0.0
        if self.level("thermostat_failed_open", ts) > 0.5:
            self.heating = False
        elif self.level("thermostat_stuck_closed", ts) > 0.5:
            self.heating = self.tank < HIGH_LIMIT
        elif self.tank < self.setpoint - 5.0:
            self.heating = True
        elif self.tank >= self.setpoint:
            self.heating = False
        element_ok = self.level("element_burnout", ts) < 0.5
        efficiency = 1.0 - 0.6 * self.level("scale_build_up", ts)
        self._record_shown(ts, element_ok)
        power = self.power * (1.0 if element_ok else 0.0) if self.heating else 0.0
        # the sensor sits in the hot top layer: cold inflow stays stratified below it, so a draw cools it at
        # about a third of the rate a fully mixed tank would show
        self.tank += (power * efficiency / HEAT_CAPACITY
                      - STRATIFICATION * flow / 60.0 / TANK_LITRES * (self.tank - self.inlet)
                      - 0.000012 * (self.tank - 20.0)) * dt  # standing loss
        noise = self.rng.gauss
        return {
            "tank_temperature": round(self.tank + noise(0, 0.05), 2),
            "setpoint": self.setpoint,
            "heating_on": float(self.heating),
            "element_power": round(max(0.0, power + noise(0, 10.0)) if power else 0.0, 0),
            "inlet_temperature": round(self.inlet + noise(0, 0.1), 2),
            "hot_water_flow": round(flow + (abs(noise(0, 0.05)) if flow else 0.0), 2),
        }
