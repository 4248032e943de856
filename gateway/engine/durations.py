"""Durations as rule files, profiles, rule tests and expressions write them: '90s', '5m', '1h30m', '1.5h',
'250ms', '1d', or plain seconds. The one parser of durations in the gateway."""

from __future__ import annotations

import re
from typing import Any

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = r"\d+(?:\.\d+)?(?:ms|s|m|h|d)"
DURATION_PATTERN = rf"(?:{_PART})+"  # for tokenizers that find durations inside larger text
_WHOLE = re.compile(rf"^{DURATION_PATTERN}$")
_PARTS = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: Any) -> float | None:
    """Seconds from '90s', '5m', '1h30m', '1.5h', '250ms', '1d' or a plain non-negative number; None otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if value >= 0 and value == value and value != float("inf") else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not _WHOLE.match(text):
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PARTS.findall(text))
