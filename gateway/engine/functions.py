"""The functions rule expressions may call, looked up by name when an expression is compiled.

Domain helpers (refrigerant physics) live in their own modules and are registered here, so the expression
language itself knows nothing of air conditioners.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.engine.refrigerants import refrigerants, saturation_temperature

FloatArray = npt.NDArray[np.float64]
SAME_AS_FIRST_ARGUMENT = "<same as first argument>"


@dataclass(frozen=True)
class Function:
    name: str
    arity: int
    apply: Callable[..., FloatArray]
    unit: str | None = None  # unit of the result; SAME_AS_FIRST_ARGUMENT for abs(), clamp()
    doc: str = ""


def _bit(x: FloatArray, n: FloatArray) -> FloatArray:
    result: FloatArray = np.floor(x / np.power(2.0, n)) % 2
    return result


def _clamp(x: FloatArray, low: FloatArray, high: FloatArray) -> FloatArray:
    result: FloatArray = np.clip(x, low, high)
    return result


FUNCTIONS: dict[str, Function] = {}


def register(function: Function) -> None:
    if function.name in FUNCTIONS:
        raise ValueError(f"function {function.name!r} is registered twice")
    FUNCTIONS[function.name] = function


register(Function("abs", 1, np.abs, SAME_AS_FIRST_ARGUMENT, "absolute value"))
register(Function("bit", 2, _bit, None, "bit n of a bitmap (Matter alarm clusters)"))
register(Function("clamp", 3, _clamp, SAME_AS_FIRST_ARGUMENT, "x limited to [low, high]"))
for _refrigerant in refrigerants():
    register(Function(f"tsat_{_refrigerant}", 1, saturation_temperature(_refrigerant), "degC",
                      f"{_refrigerant.upper()} saturation temperature (degC) at a gauge pressure (kPa)"))
