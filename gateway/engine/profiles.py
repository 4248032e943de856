"""Appliance profiles: which metrics an appliance type reports, their units and physically valid ranges."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway import yaml_input
from gateway.engine.durations import parse_duration
from gateway.engine.expr import CompiledExpr, ExprError, compile_expr

# A column every type stores beside its profile's metrics: how many values of a sample were out of valid range
# (the values themselves are dropped at ingest), so data-quality rules can see a sensor reporting nonsense.
OUT_OF_RANGE_METRIC = "dq_out_of_range"


class ProfileError(Exception):
    """A profile file is broken; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    unit: str
    low: float
    high: float
    description: str
    uart_id: int | None = None  # the metric's id in the open UART dialect (docs/uart-protocol.md)
    flatline_after: float | None = None  # seconds without any change that mean a stuck sensor
    max_step: float | None = None  # largest plausible change per reporting interval (more over longer gaps)
    sporadic: bool = False  # reported only when something happens (a vendor code): never expected to repeat
    zh: str = ""  # the metric's name in Chinese, for the pages
    states: tuple[tuple[float, str], ...] = ()  # an enum's values and their names (0 off, 3 cool ...)


@dataclass(frozen=True, slots=True)
class DerivedSpec:
    """A metric computed from others (e.g. superheat from suction pressure and temperature)."""

    name: str
    expr: CompiledExpr
    unit: str
    description: str
    zh: str = ""


@dataclass(frozen=True, slots=True)
class ParameterSpec:
    """A per-device constant a rule reads by name (a set point, a design limit), from the appliance's meta or,
    where the meta does not give it, the profile's default: never sent as a fake metric."""

    name: str
    unit: str
    default: float
    low: float
    high: float
    description: str


@dataclass(frozen=True)
class Profile:
    appliance: str
    interval_seconds: float
    metrics: tuple[MetricSpec, ...]
    derived: tuple[DerivedSpec, ...] = ()
    offline_after_intervals: int = 10
    always_on: bool = False  # fridges and water heaters are never switched off: being offline is a problem
    max_gap_seconds: float | None = None  # a longer gap between samples is not observed time (None: silence limit)
    parameters: tuple[ParameterSpec, ...] = ()

    @property
    def silence_limit(self) -> float:
        """Seconds without a sample after which the appliance counts as silent."""
        return self.offline_after_intervals * self.interval_seconds

    @property
    def max_gap(self) -> float:
        """The longest gap between two samples that durations count as observed time."""
        return self.silence_limit if self.max_gap_seconds is None else self.max_gap_seconds

    @property
    def stored_names(self) -> tuple[str, ...]:
        """The window's columns: the profile's metrics and the data-quality column."""
        return (*self.metric_names, OUT_OF_RANGE_METRIC)

    def units(self) -> dict[str, str]:
        return {**{m.name: m.unit for m in self.metrics}, OUT_OF_RANGE_METRIC: "count"}

    def derived_units(self) -> dict[str, str]:
        return {d.name: d.unit for d in self.derived}

    def parameter_units(self) -> dict[str, str]:
        return {p.name: p.unit for p in self.parameters}

    def parameter(self, name: str) -> ParameterSpec | None:
        return next((p for p in self.parameters if p.name == name), None)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    def metric(self, name: str) -> MetricSpec | None:
        return next((m for m in self.metrics if m.name == name), None)

    def metric_by_uart_id(self) -> dict[int, str]:
        return {m.uart_id: m.name for m in self.metrics if m.uart_id is not None}


def load_profiles(folder: Path, *more: Path) -> dict[str, Profile]:
    """Every `*.yaml` in `folder` (and in each of `more`, folders or files), keyed by appliance type."""
    profiles: dict[str, Profile] = {}
    errors: list[str] = []
    files = sorted(folder.glob("*.yaml"))
    for extra in more:
        if not extra.exists():
            errors.append(f"{extra}: no such profile file or folder")
        files.extend(sorted(extra.glob("*.yaml")) if extra.is_dir() else [extra] if extra.is_file() else [])
    for path in files:
        try:
            profile = parse_profile(yaml_input.load_file(path), str(path))
        except (ProfileError, yaml.YAMLError) as exc:
            errors.append(str(exc) if isinstance(exc, ProfileError) else f"{path}: not valid YAML: {exc}")
            continue
        if profile.appliance in profiles:
            errors.append(f"{path}: appliance '{profile.appliance}' already has a profile")
        profiles[profile.appliance] = profile
    if errors:
        raise ProfileError("\n".join(errors))
    if not profiles:
        raise ProfileError(f"{folder}: no appliance profiles (*.yaml) found")
    return profiles


def parse_profile(doc: Any, source: str) -> Profile:
    if not isinstance(doc, dict):
        raise ProfileError(f"{source}: a profile is a mapping with appliance, interval_seconds and metrics")
    unknown = set(doc) - {"appliance", "interval_seconds", "metrics", "derived", "offline_after_intervals",
                          "always_on", "max_gap", "parameters"}
    if unknown:
        raise ProfileError(f"{source}: unknown key(s) {sorted(unknown)}")
    appliance = doc.get("appliance")
    interval = doc.get("interval_seconds")
    metrics = doc.get("metrics")
    if not isinstance(appliance, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", appliance):
        raise ProfileError(f"{source}: key 'appliance' must be a snake_case type name such as heat_pump (it is "
                           "sent to the platform as the ticket's appliance.type)")
    if not isinstance(interval, int | float) or interval <= 0:
        raise ProfileError(f"{source}: key 'interval_seconds' must be a positive number")
    if not isinstance(metrics, dict) or not metrics:
        raise ProfileError(f"{source}: key 'metrics' must map metric names to specs")
    specs = [_metric(name, spec, source) for name, spec in metrics.items()]
    ids = [m.uart_id for m in specs if m.uart_id is not None]
    if len(ids) != len(set(ids)):
        raise ProfileError(f"{source}: two metrics share a uart_id")
    offline_after = doc.get("offline_after_intervals", 10)
    if not isinstance(offline_after, int) or offline_after < 2:
        raise ProfileError(f"{source}: key 'offline_after_intervals' must be a whole number of at least 2")
    units = {m.name: m.unit for m in specs}
    derived = tuple(_derived(name, spec, units, source) for name, spec in (doc.get("derived") or {}).items())
    always_on = doc.get("always_on", False)
    if not isinstance(always_on, bool):
        raise ProfileError(f"{source}: key 'always_on' must be true or false")
    max_gap = None
    if "max_gap" in doc:
        max_gap = parse_duration(doc["max_gap"])
        if not max_gap:
            raise ProfileError(f"{source}: key 'max_gap' must be a duration like 5m (the longest gap between two "
                               "samples that `for`, stuck and stale durations count as observed)")
    parameters_doc = doc.get("parameters") or {}
    if not isinstance(parameters_doc, dict):
        raise ProfileError(f"{source}: key 'parameters' must map parameter names to specs")
    parameters = tuple(_parameter(name, spec, units, source) for name, spec in parameters_doc.items())
    return Profile(appliance, float(interval), tuple(specs), derived, offline_after, always_on, max_gap, parameters)


def _parameter(name: Any, spec: Any, units: dict[str, str], source: str) -> ParameterSpec:
    where = f"{source}: parameter '{name}'"
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
        raise ProfileError(f"{where}: a parameter name is snake_case")
    if name in units:
        raise ProfileError(f"{where} has the name of a reported metric")
    if not isinstance(spec, dict) or set(spec) - {"unit", "default", "valid", "description"} or "default" not in spec:
        raise ProfileError(f"{where} is a mapping with default, and optionally unit, valid and description")
    default, valid = spec["default"], spec.get("valid", [-1e12, 1e12])
    if (not isinstance(valid, list) or len(valid) != 2 or not all(_is_number(v) for v in valid)
            or valid[0] >= valid[1]):
        raise ProfileError(f"{where}: key 'valid' must be [low, high] with low < high")
    if not _is_number(default) or not valid[0] <= default <= valid[1]:
        raise ProfileError(f"{where}: key 'default' must be a number within {valid}")
    unit = spec.get("unit", "")
    if not isinstance(unit, str):
        raise ProfileError(f"{where}: key 'unit' must be a string")
    return ParameterSpec(name, unit, float(default), float(valid[0]), float(valid[1]),
                         str(spec.get("description", "")))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _derived(name: str, spec: Any, units: dict[str, str], source: str) -> DerivedSpec:
    where = f"{source}: derived metric '{name}'"
    if not isinstance(spec, dict) or set(spec) - {"expr", "unit", "description", "zh"} or "expr" not in spec:
        raise ProfileError(f"{where} is a mapping with expr, and optionally unit, description and zh")
    if name in units:
        raise ProfileError(f"{where} has the name of a reported metric")
    try:
        compiled = compile_expr(str(spec["expr"]), units, kind="number")
    except ExprError as exc:
        raise ProfileError(f"{where}: bad expr: {exc}") from None
    if compiled.windows:
        raise ProfileError(f"{where}: a derived metric is computed from latest values; it cannot read a window")
    return DerivedSpec(name, compiled, str(spec.get("unit", "")), str(spec.get("description", "")),
                       str(spec.get("zh", "")))


def _metric(name: str, spec: Any, source: str) -> MetricSpec:
    where = f"{source}: metric '{name}'"
    if not isinstance(spec, dict):
        raise ProfileError(f"{where} must be a mapping with unit, valid and description")
    unknown = set(spec) - {"unit", "valid", "description", "uart_id", "flatline_after", "max_step", "zh", "states"}
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {sorted(unknown)}")
    valid = spec.get("valid")
    if (not isinstance(valid, list) or len(valid) != 2
            or not all(isinstance(v, int | float) for v in valid) or valid[0] >= valid[1]):
        raise ProfileError(f"{where}: key 'valid' must be [low, high] with low < high")
    unit = spec.get("unit")
    if not isinstance(unit, str) or not unit:
        raise ProfileError(f"{where}: key 'unit' must be a non-empty string")
    uart_id = spec.get("uart_id")
    if uart_id is not None and (not isinstance(uart_id, int) or not 1 <= uart_id <= 255):
        raise ProfileError(f"{where}: key 'uart_id' must be a whole number from 1 to 255")
    flatline = spec.get("flatline_after")
    flatline_seconds = None
    if flatline is not None:
        flatline_seconds = parse_duration(flatline)
        if not flatline_seconds:
            raise ProfileError(f"{where}: key 'flatline_after' must be a duration like 30m")
    max_step = spec.get("max_step")
    if max_step is not None and (not isinstance(max_step, int | float) or max_step <= 0):
        raise ProfileError(f"{where}: key 'max_step' must be a positive number")
    states = spec.get("states", {})
    if not isinstance(states, dict) or not all(isinstance(k, int | float) and not isinstance(k, bool)
                                               and isinstance(v, str) for k, v in states.items()):
        raise ProfileError(f"{where}: key 'states' must map values to names, like {{0: \"off\", 3: \"cool\"}} "
                           "(quote the names: YAML reads a bare off or on as false or true)")
    return MetricSpec(name, unit, float(valid[0]), float(valid[1]), str(spec.get("description", "")), uart_id,
                      flatline_seconds, None if max_step is None else float(max_step), zh=str(spec.get("zh", "")),
                      states=tuple(sorted((float(k), v) for k, v in states.items())))


def derived_by_type(profiles: dict[str, Profile]) -> dict[str, dict[str, CompiledExpr]]:
    return {name: {d.name: d.expr for d in profile.derived} for name, profile in profiles.items()}


def intervals_by_type(profiles: dict[str, Profile]) -> dict[str, float]:
    return {name: profile.interval_seconds for name, profile in profiles.items()}
