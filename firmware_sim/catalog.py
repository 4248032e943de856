"""What the gateway should conclude from each simulated fault: the ticket codes that count as detecting it,
the cause that should rank first, and how a fault of each kind shows itself.

Component faults must open a ticket with one of their codes. Sensor and communication faults are either
expected to open a data-quality ticket (when the gateway can see them) or, where no rule can or should see
them (a slow drift, duplicated messages), only to open no false ticket: their `codes` are empty.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Expectation:
    codes: frozenset[str]  # any of these ticket codes detects the fault; empty: nothing to detect
    top_cause: str = ""  # the first-ranked cause should start with this
    category: str = "fault"


def _e(codes: str, cause: str = "", category: str = "fault") -> Expectation:
    return Expectation(frozenset(codes.split()), cause, category)


COMPONENT_FAULTS: dict[str, dict[str, Expectation]] = {
    "air_conditioner": {
        "condenser_fan_failure": _e("AC-CND-01", "Outdoor fan motor failed"),
        "condenser_fouling": _e("AC-CND-01", "Condenser coil blocked"),
        "refrigerant_leak": _e("AC-REF-01", "Refrigerant leak"),
        "room_sensor_fault": _e("AC-CYC-01", "Thermostat or room sensor"),
        "filter_clogged": _e("AC-ICE-01", "Clogged air filter"),
    },
    "refrigerator": {
        "defrost_heater_failure": _e("FR-DEF-02", "Defrost heater open circuit"),
        "defrost_termination_failure": _e("FR-DEF-01", "Defrost termination thermostat"),
        "compressor_start_failure": _e("FR-CMP-01", "Start relay or overload"),
        "door_seal_leak": _e("FR-WARM-01", "Door seal leaking"),
    },
    "washer": {
        # by vendor code (brands with a table) or by telemetry (rules/washer.yaml, every brand)
        "drain_filter_clogged": _e("WM-DRAIN WM-DRAIN-SLOW", "Drain filter clogged"),
        "water_supply_low_pressure": _e("WM-FILL WM-FILL-SLOW", "Water tap closed or low water pressure"),
        "door_lock_failure": _e("WM-DOOR WM-DOOR-LOCK", "Door lock mechanism failed"),
        "motor_failure": _e("WM-MOTOR WM-MOTOR-STALL", "Motor or its speed sensor"),
    },
    "water_heater": {
        "element_burnout": _e("WH-ELEM-01", "Heating element burnt out"),
        "scale_build_up": _e("WH-MNT-SCALE", "Limescale"),
        "thermostat_stuck_closed": _e("WH-TEMP-01 WH-THERMO-01", "Thermostat stuck closed"),
        "thermostat_failed_open": _e("WH-THERMO-02", "Thermostat failed open"),
    },
    "dishwasher": {
        "inlet_supply_blocked": _e("DW-INFLOW", "Water supply tap closed"),
        "drain_filter_clogged": _e("DW-DRAIN", "Drain filter clogged"),
        "heater_failure": _e("DW-TLOW", "Heater failed"),
        "level_sensor_fault": _e("DW-LEVEL", "Water level sensor"),
    },
}

# maintenance the appliances really need during a run (found from the models' state, not injected)
MAINTENANCE = {"filter_cleaning_due": _e("AC-MNT-FILTER", "Routine maintenance", "maintenance")}

SENSOR_FAULTS = ("stuck", "drift", "noise", "dropout", "out_of_range")
COMM_FAULTS = ("offline", "burst", "duplicates", "out_of_order", "clock_skew")


def sensor_expectation(kind: str, duration: float, flatline_after: float | None, max_step: float | None,
                       stale_limit: float) -> Expectation:
    """A sensor fault is detectable when the matching built-in data-quality rule can see it in its time."""
    if kind == "out_of_range":
        return _e("DQ-RANGE", "Sensor failed", "data_quality")
    if kind == "stuck" and flatline_after is not None and duration > flatline_after + 600:
        return _e("DQ-STUCK", "Sensor or its converter stuck", "data_quality")
    if kind == "noise" and max_step is not None:
        return _e("DQ-JUMP", "Intermittent sensor", "data_quality")
    if kind == "dropout" and duration > stale_limit + 120:
        return _e("DQ-STALE", "Sensor disconnected", "data_quality")
    return Expectation(frozenset())  # drift, short stuck or dropout: it must only not cause a false ticket


def comm_expectation(kind: str, duration: float, silence_limit: float, always_on: bool,
                     announced: bool) -> Expectation:
    if kind == "offline" and not announced and duration > silence_limit + 120:
        return _e("DQ-SILENT", "Wi-Fi or network module", "data_quality")
    if kind == "offline" and announced and always_on and duration > 1800 + 120:
        return _e("DQ-OFFLINE", "Appliance without power", "data_quality")
    return Expectation(frozenset())
