"""Refrigerant physics the rules need: saturation temperature from gauge pressure.

A Clausius-Clapeyron fit ln P = a - b / T per refrigerant, through its saturation table at 0 and 50 degC
(R32: 0.81 and 3.14 MPa absolute; R410A: 0.80 and 3.06 MPa); within about 1 K from -10 to 60 degC.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ATMOSPHERE_KPA = 101.3
_FITS = {"r32": (8.524, 2385.0), "r410a": (8.447, 2368.3)}


def saturation_temperature(refrigerant: str) -> Callable[[FloatArray], FloatArray]:
    """degC at a gauge pressure in kPa, for one refrigerant."""
    a, b = _FITS[refrigerant]

    def tsat(gauge_kpa: FloatArray) -> FloatArray:
        absolute_mpa = (gauge_kpa + ATMOSPHERE_KPA) / 1000.0
        with np.errstate(invalid="ignore", divide="ignore"):
            result: FloatArray = b / (a - np.log(absolute_mpa)) - 273.15
        return result

    return tsat


def refrigerants() -> tuple[str, ...]:
    return tuple(_FITS)
