"""Appliance models that produce plausible telemetry from a seeded random generator, one module per type.

Each model is a function of (time, its own state, its rng): `sample(ts)` advances the state to `ts` and
returns the metric values the appliance would report; `codes(ts)` the vendor error codes it shows. Faults
are injected as `FaultSchedule`s (onset, ramp, severity, optional end); `repair()` clears them.
"""

from firmware_sim.models.air_conditioner import AirConditionerModel, r32_saturation_kpa_gauge
from firmware_sim.models.base import ApplianceModel, FaultableModel, FaultSchedule
from firmware_sim.models.dishwasher import DishwasherModel
from firmware_sim.models.refrigerator import RefrigeratorModel
from firmware_sim.models.washer import WasherModel
from firmware_sim.models.water_heater import WaterHeaterModel

MODELS: dict[str, type[FaultableModel]] = {
    "air_conditioner": AirConditionerModel, "refrigerator": RefrigeratorModel, "washer": WasherModel,
    "water_heater": WaterHeaterModel, "dishwasher": DishwasherModel,
}

__all__ = ["MODELS", "AirConditionerModel", "ApplianceModel", "DishwasherModel", "FaultSchedule", "FaultableModel",
           "RefrigeratorModel", "WasherModel", "WaterHeaterModel", "r32_saturation_kpa_gauge"]
