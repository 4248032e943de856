"""Appliance profiles: which metrics an appliance type reports, their units and physically valid ranges."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


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


@dataclass(frozen=True)
class Profile:
    appliance: str
    interval_seconds: float
    metrics: tuple[MetricSpec, ...]

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    def metric(self, name: str) -> MetricSpec | None:
        return next((m for m in self.metrics if m.name == name), None)

    def metric_by_uart_id(self) -> dict[int, str]:
        return {m.uart_id: m.name for m in self.metrics if m.uart_id is not None}


def load_profiles(folder: Path) -> dict[str, Profile]:
    """Every `*.yaml` in `folder`, keyed by appliance type."""
    profiles: dict[str, Profile] = {}
    errors: list[str] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            profile = parse_profile(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
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
    unknown = set(doc) - {"appliance", "interval_seconds", "metrics"}
    if unknown:
        raise ProfileError(f"{source}: unknown key(s) {sorted(unknown)}")
    appliance = doc.get("appliance")
    interval = doc.get("interval_seconds")
    metrics = doc.get("metrics")
    if not isinstance(appliance, str) or not appliance:
        raise ProfileError(f"{source}: key 'appliance' must be a non-empty string")
    if not isinstance(interval, int | float) or interval <= 0:
        raise ProfileError(f"{source}: key 'interval_seconds' must be a positive number")
    if not isinstance(metrics, dict) or not metrics:
        raise ProfileError(f"{source}: key 'metrics' must map metric names to specs")
    specs = [_metric(name, spec, source) for name, spec in metrics.items()]
    ids = [m.uart_id for m in specs if m.uart_id is not None]
    if len(ids) != len(set(ids)):
        raise ProfileError(f"{source}: two metrics share a uart_id")
    return Profile(appliance, float(interval), tuple(specs))


def _metric(name: str, spec: Any, source: str) -> MetricSpec:
    where = f"{source}: metric '{name}'"
    if not isinstance(spec, dict):
        raise ProfileError(f"{where} must be a mapping with unit, valid and description")
    unknown = set(spec) - {"unit", "valid", "description", "uart_id"}
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
    return MetricSpec(name, unit, float(valid[0]), float(valid[1]), str(spec.get("description", "")), uart_id)
