"""Fridge-freezer: thermostat cycling, a defrost every 8 hours, door openings around meal times."""

from __future__ import annotations

from firmware_sim.models.base import FaultableModel, FaultSchedule, day_fraction

DEFROST_EVERY, DEFROST_SECONDS = 28800.0, 1200.0


class RefrigeratorModel(FaultableModel):
    """Faults: defrost_heater_failure (the heater is powered but the coil stays frozen),
    defrost_termination_failure (the heater stays on for an hour), compressor_start_failure (the compressor
    never starts: the freezer warms), door_seal_leak (warm air leaks into the fridge side)."""

    appliance_type = "refrigerator"
    faults: tuple[str, ...] = ("defrost_heater_failure", "defrost_termination_failure", "compressor_start_failure",
              "door_seal_leak")

    def __init__(self, seed: int, schedules: list[FaultSchedule] | FaultSchedule | None = None) -> None:
        super().__init__(seed, schedules)
        self.freezer = -18.0 + self.rng.uniform(-1, 1)
        self.fresh = 4.0 + self.rng.uniform(-0.5, 0.5)
        self.compressor = False
        self.door_opens_at: float | None = None  # the next door opening, drawn as an event in time
        self.door_until = 0.0
        self.defrost_phase = self.rng.uniform(0, DEFROST_EVERY)

    def _door_rate(self, ts: float) -> float:
        """Door openings per second: often around meals, rarely at night."""
        hour = day_fraction(ts) * 24.0
        if 6.5 <= hour < 8.5 or 11.5 <= hour < 13.0 or 17.5 <= hour < 20.0:
            return self.usage / 600.0
        return self.usage * (1 / 3600.0 if 7.0 <= hour < 23.0 else 1 / 20000.0)

    def _door_open_seconds(self, start: float, end: float) -> float:
        """Seconds the door stood open in (start, end]. Openings are events in time (a Poisson process at the
        hour's rate, each 5-40 s long), so a fridge reporting every 5 minutes sees the same doors as one
        reporting every 5 seconds."""
        if self.door_opens_at is None:
            self.door_opens_at = start + self.rng.expovariate(self._door_rate(start))
        open_seconds = max(0.0, min(end, self.door_until) - start)
        while self.door_opens_at <= end:
            opened = self.door_opens_at
            self.door_until = opened + self.rng.uniform(5, 40)
            open_seconds += max(0.0, min(end, self.door_until) - max(start, opened))
            self.door_opens_at = self.door_until + self.rng.expovariate(self._door_rate(self.door_until))
        return open_seconds

    def sample(self, ts: float) -> dict[str, float]:
        previous = self.last_ts
        dt = self.step(ts, 5.0, 300.0)
        door_seconds = min(dt, self._door_open_seconds(ts - dt if previous is None else max(previous, ts - dt), ts))
        door = ts < self.door_until
        position = (ts + self.defrost_phase) % DEFROST_EVERY
        long_defrost = self.level("defrost_termination_failure", ts) > 0.5
        defrost = position < (3600.0 if long_defrost else DEFROST_SECONDS)
        if self.freezer > -16.5:
            self.compressor = True
        elif self.freezer < -19.5:
            self.compressor = False
        compressor = self.compressor and not defrost and self.level("compressor_start_failure", ts) < 0.5
        ambient = 22.0 + 2.0 * (day_fraction(ts) > 0.5)
        leak = self.level("door_seal_leak", ts)
        # rates in K/s: a closed freezer warms ~0.004 K/s off-cycle (-19.5 -> -16.5 degC in about 12 min) and
        # 4-5 K over a 20 min defrost; the compressor pulls it down in about 5 min
        self.freezer += (0.0001 * (ambient - self.freezer) - (0.014 if compressor else 0.0)) * dt \
            + 0.002 * door_seconds
        damper_open = compressor and self.fresh > 3.5  # the fresh-food side has its own air damper control
        self.fresh += (0.00005 * (ambient - self.fresh) + 0.0004 * leak * (ambient - self.fresh)
                       - (0.004 if damper_open else 0.0)) * dt + 0.004 * door_seconds
        self.fresh = max(self.fresh, self.freezer + 2.0)
        heater_works = self.level("defrost_heater_failure", ts) < 0.5
        # the evaporator reads far below the freezer while cooling, and well above 0 degC while defrosting
        evaporator = self.freezer - (8.0 if compressor else 0.0)
        if defrost and heater_works:  # the termination thermostat holds the coil near +10 degC at most
            evaporator = min(evaporator + 25.0, 10.0)
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
