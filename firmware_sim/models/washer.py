"""Front-loading washer: one or two programs a day (fill, wash, drain, fill, rinse, drain, spin), error codes
shown the way its brand's firmware shows them."""

from __future__ import annotations

from typing import ClassVar

from firmware_sim.models.base import FaultableModel, FaultSchedule, day_fraction

# phase code, duration (s), water level %, drum rpm, motor current A
PROGRAM: tuple[tuple[int, float, float, float, float], ...] = (
    (1, 90, 60.0, 0.0, 0.4), (2, 600, 60.0, 50.0, 1.8), (5, 60, 5.0, 0.0, 0.3),
    (1, 90, 60.0, 0.0, 0.4), (3, 300, 60.0, 45.0, 1.6), (5, 60, 5.0, 0.0, 0.3),
    (4, 420, 0.0, 1200.0, 3.2))
PROGRAM_SECONDS = sum(p[1] for p in PROGRAM)
# canonical fault of the vendor tables (rules/vendor_codes) -> the code each brand displays
BRAND_CODES = {
    "LG": {"drain_timeout": "OE", "fill_timeout": "IE", "door_lock": "dE", "motor": "LE"},
    # 3E is what Samsung firmware shows for a motor fault; the gateway's Samsung table leaves it out on purpose
    # (sources disagree by model), so a Samsung motor fault is a known blind spot the scorer shows
    "Samsung": {"drain_timeout": "5E", "fill_timeout": "4E", "door_lock": "dE", "motor": "3E"},
    # Bosch door-lock and motor codes differ by model generation; the gateway's table maps only E18 and E17
    "Bosch": {"drain_timeout": "E18", "fill_timeout": "E17", "door_lock": "E16", "motor": "E02"},
}


class WasherModel(FaultableModel):
    """Faults: drain_filter_clogged (the water does not go), water_supply_low_pressure (filling never finishes),
    door_lock_failure (the program cannot start), motor_failure (the drum does not turn). The firmware first
    tries for as long as its timeout (what the telemetry shows meanwhile is what a brand-independent rule can
    see), then stops the program and shows its code until the fault is repaired."""

    appliance_type = "washer"
    faults: tuple[str, ...] = ("drain_filter_clogged", "water_supply_low_pressure", "door_lock_failure",
                               "motor_failure")
    CANONICAL: ClassVar[dict[str, str]] = {
        "drain_filter_clogged": "drain_timeout", "water_supply_low_pressure": "fill_timeout",
        "door_lock_failure": "door_lock", "motor_failure": "motor"}
    STOPS_IN_PHASE: ClassVar[dict[str, int]] = {
        "drain_filter_clogged": 5, "water_supply_low_pressure": 1, "door_lock_failure": 1, "motor_failure": 2}
    # how long the firmware tries before it gives up (s): drain and fill timeouts of a few minutes, door lock
    # retries, a motor that will not turn
    # a fault shows only when a program reaches the phase it stops, and only while no other fault has halted
    # the program (a door that will not lock hides a low water pressure)
    SHOWN_BY_USE: ClassVar[frozenset[str]] = frozenset(faults)
    TRIES_FOR: ClassVar[dict[str, float]] = {
        "drain_filter_clogged": 600.0, "water_supply_low_pressure": 480.0, "door_lock_failure": 180.0,
        "motor_failure": 120.0}

    def __init__(self, seed: int, schedules: list[FaultSchedule] | FaultSchedule | None = None,
                 brand: str = "LG", continuous: bool = False) -> None:
        super().__init__(seed, schedules)
        self.brand = brand if brand in BRAND_CODES else "LG"
        self.continuous = continuous  # the demo's washers run program after program
        self.offset = self.rng.uniform(0, PROGRAM_SECONDS)
        self.starts = sorted(self.rng.uniform(7.0, 21.0) for _ in range(self.rng.choice([1, 1, 2])))
        self.stopped_with: str | None = None  # the fault the program halted on, its code shown until repaired
        self.trying: tuple[str, float] | None = None  # the fault the firmware is struggling with, since when

    def use(self, usage: float) -> None:
        """Heavy use: more programs a day, never overlapping."""
        self.usage = usage
        programs = max(1, round(len(self.starts) * usage))
        self.starts = [7.0 + i * (14.0 / programs) + self.rng.uniform(0, 0.5) for i in range(programs)]

    def repair(self) -> None:
        super().repair()
        self.stopped_with = self.trying = None

    def _program_position(self, ts: float) -> float | None:
        if self.continuous:
            return (ts + self.offset) % (PROGRAM_SECONDS + 1800.0)
        day_start = ts - day_fraction(ts) * 86400.0
        for hour in self.starts:
            position = ts - (day_start + hour * 3600.0)
            if 0 <= position < PROGRAM_SECONDS:
                return position
        return None

    def _step(self, position: float | None) -> tuple[int, float, float, float, float]:
        if position is None or position >= PROGRAM_SECONDS:
            return (0, 0, 0.0, 0.0, 0.0)
        for step in PROGRAM:
            if position < step[1]:
                return step
            position -= step[1]
        return (0, 0, 0.0, 0.0, 0.0)

    def sample(self, ts: float) -> dict[str, float]:
        self.step(ts, 2.0, 60.0)
        shown = self.stopped_with or (self.trying[0] if self.trying else None)
        if shown is not None and self.level(shown, ts) <= 0.5:  # repaired by the technician
            self.stopped_with = self.trying = None
        phase, _, level, rpm, current = self._step(self._program_position(ts))
        if self.stopped_with is None and self.trying is None and phase:
            for fault, stop_phase in self.STOPS_IN_PHASE.items():
                if self.level(fault, ts) > 0.5 and phase == stop_phase:
                    self.trying = (fault, ts)
                    self._show(fault, ts)
                    break
        noise = self.rng.gauss
        if self.trying is not None:
            fault, since = self.trying
            if ts - since < self.TRIES_FOR[fault]:
                return self._trying(fault, (ts - since) / self.TRIES_FOR[fault])
            self.stopped_with, self.trying = fault, None
        if self.stopped_with is not None:  # halted, showing its code; water as the fault left it
            water = {"drain_filter_clogged": 55.0, "water_supply_low_pressure": 8.0,
                     "motor_failure": 60.0}.get(self.stopped_with, 0.0)
            return {"operational_state": 3.0, "phase": 0.0, "water_level": round(max(0.0, water + noise(0, 1.0)), 1),
                    "water_temperature": 25.0, "motor_current": 0.0, "drum_speed": 0.0,
                    "vibration": round(abs(noise(0.01, 0.005)), 3), "door_locked": 0.0}
        running = phase != 0
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

    def _trying(self, fault: str, progress: float) -> dict[str, float]:
        """The program still running while the fault keeps it from finishing its phase."""
        noise = self.rng.gauss
        phase, level, current, locked = {
            "drain_filter_clogged": (5, 55.0 - 3.0 * progress, 0.3, 1.0),  # the pump runs, the water stays
            "water_supply_low_pressure": (1, 8.0 * progress, 0.4, 1.0),  # a trickle
            "door_lock_failure": (1, 0.0, 0.0, 0.0),  # the lock does not engage, so it does not fill
            "motor_failure": (2, 60.0, 0.05, 1.0),  # water in, the drum does not turn
        }[fault]
        return {"operational_state": 1.0, "phase": float(phase),
                "water_level": round(max(0.0, level + noise(0, 1.0)), 1),
                "water_temperature": round(40.0 + noise(0, 0.3), 1),
                "motor_current": round(max(0.0, current + noise(0, 0.05)), 2), "drum_speed": 0.0,
                "vibration": round(abs(0.05 + noise(0, 0.02)), 3), "door_locked": locked}

    def codes(self, ts: float) -> list[str]:
        if self.stopped_with is None:
            return []
        return [BRAND_CODES[self.brand][self.CANONICAL[self.stopped_with]]]
