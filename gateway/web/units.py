"""Units and metric names as people write them on a page (°C, kPa, rpm), never the profile's identifiers."""

from __future__ import annotations

from gateway.engine.profiles import Profile

UNIT_TEXT = {"degC": "°C", "degF": "°F", "percent": "%", "lpm": "L/min", "h": "h", "bool": "", "enum": ""}
STATE_UNITS = frozenset({"bool", "enum"})  # drawn as a state timeline, not a line


def unit_text(unit: str | None) -> str:
    """`degC` -> `°C`; units without a written form stay as they are (kPa, rpm, A)."""
    return UNIT_TEXT.get(unit or "", unit or "")


def with_unit(value: float | None, unit: str | None) -> str:
    """A value as a page shows it: `4,029 kPa`, `-1.2 °C`, `on`/`off` for a boolean."""
    if value is None or value != value:
        return "no value"
    if unit == "bool":
        return "on" if value else "off"
    number = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    written = unit_text(unit)
    return f"{number} {written}" if written else number


def metric_unit(profile: Profile | None, name: str) -> str:
    """The unit of a metric or derived value of `profile` ("" where the name is an expression)."""
    if profile is None:
        return ""
    for spec in profile.metrics:
        if spec.name == name:
            return spec.unit
    for derived in profile.derived:
        if derived.name == name:
            return derived.unit
    return ""


def metric_zh(profile: Profile | None, name: str) -> str:
    """A metric's (or derived value's) Chinese name from its profile, "" where it has none."""
    for spec in (profile.metrics if profile else ()):
        if spec.name == name:
            return spec.zh
    for derived in (profile.derived if profile else ()):
        if derived.name == name:
            return derived.zh
    return ""


def both_names(profile: Profile | None, name: str) -> str:
    """`High-side gauge pressure / 高压侧压力`: the English and, where the profile has it, the Chinese name."""
    zh = metric_zh(profile, name)
    return f"{metric_label(profile, name)} / {zh}" if zh else metric_label(profile, name)


def state_names(profile: Profile | None, name: str) -> dict[float, str]:
    """An enum metric's value names from its profile ({0: "off", 3: "cool"}), empty where it has none."""
    for spec in (profile.metrics if profile else ()):
        if spec.name == name:
            return dict(spec.states)
    return {}


def metric_label(profile: Profile | None, name: str) -> str:
    """A metric's name in words from its profile (`Indoor evaporator coil (T2 sensor)`), else the name with
    spaces for underscores."""
    if profile is not None:
        for spec in profile.metrics:
            if spec.name == name and spec.description:
                return spec.description
        for derived in profile.derived:
            if derived.name == name and derived.description:
                return derived.description
    return name.replace("_", " ")
