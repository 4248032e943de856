"""Durations as rule and profile files write them: '90s', '5m', '1h30m', '250ms', or plain seconds."""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")


def parse_duration(value: Any) -> float | None:
    """'90s', '5m', '1h30m', '250ms' or a plain number of seconds; None when it is none of those."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if value >= 0 else None
    if not isinstance(value, str) or not value:
        return None
    match = _DURATION.match(value.strip())
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds, millis = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000
