"""The MQTT topic scheme `{prefix}/{device_id}/{kind}` as pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class TopicKind(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"
    STATUS = "status"
    META = "meta"


@dataclass(frozen=True, slots=True)
class ApplianceTopic:
    device_id: str
    kind: TopicKind


_KINDS = {k.value: k for k in TopicKind}


_PARSED: dict[tuple[str, str], ApplianceTopic | None] = {}
_PARSED_KEPT = 100_000  # topics remembered (each appliance has four); a flood of made-up ones starts it over


def parse_topic(topic: str, prefix: str = "appliances") -> ApplianceTopic | None:
    """Split an appliance topic; None for anything outside the scheme (the caller counts it). An appliance
    sends on the same few topics all day, so each is worked out once."""
    key = (topic, prefix)
    if key in _PARSED:
        return _PARSED[key]
    if len(_PARSED) >= _PARSED_KEPT:
        _PARSED.clear()
    parsed = _PARSED[key] = _parse_topic(topic, prefix)
    return parsed


def _parse_topic(topic: str, prefix: str) -> ApplianceTopic | None:
    if not topic.startswith(prefix + "/"):  # the prefix may have several levels (p/0/appliances)
        return None
    parts = topic[len(prefix) + 1:].split("/")
    if len(parts) != 2:
        return None
    device_id, kind = parts[0], _KINDS.get(parts[1])
    if kind is None or not is_valid_device_id(device_id):
        return None
    return ApplianceTopic(device_id, kind)


def appliance_topic(device_id: str, kind: TopicKind, prefix: str = "appliances") -> str:
    return f"{prefix}/{device_id}/{kind.value}"


def subscription(prefix: str = "appliances") -> str:
    """The one filter the gateway subscribes to."""
    return f"{prefix}/+/+"


_DEVICE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def is_valid_device_id(device_id: str) -> bool:
    """ASCII letters, digits and -_.: only, 1-128 characters: safe in topics, file names and URLs."""
    return _DEVICE_ID.fullmatch(device_id) is not None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 filter matching (`+` one level, `#` the rest), for routing and tests."""
    filter_parts = topic_filter.split("/")
    topic_parts = topic.split("/")
    for i, part in enumerate(filter_parts):
        if part == "#":
            return not topic_parts[0].startswith("$") or i > 0
        if i >= len(topic_parts):
            return False
        if part == "+":
            if i == 0 and topic_parts[0].startswith("$"):
                return False
            continue
        if part != topic_parts[i]:
            return False
    return len(filter_parts) == len(topic_parts)
