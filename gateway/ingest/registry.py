"""Which appliances exist, what they are, and whether they are online (from their retained status / last will)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from typing import Any

from gateway.model import Device, DeviceMeta
from gateway.protocol.payload import short_repr

log = logging.getLogger("gateway.registry")


class DeviceRegistry:
    def __init__(self, known_types: set[str]) -> None:
        self.known_types = known_types
        self.devices: dict[str, Device] = {}
        self.metric_names: dict[str, dict[str, str]] = {}  # device -> its own metric names -> the profile's
        self._changed: set[str] = set()  # new, or meta or online state changed: saved first
        self._seen: dict[str, None] = {}  # only last_seen moved, in the order they first did (an ordered set)

    def load(self, devices: list[Device]) -> None:
        self.devices = {d.device_id: d for d in devices}

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)

    def _device(self, device_id: str) -> Device:
        device = self.devices.get(device_id)
        if device is None:
            device = self.devices[device_id] = Device(device_id)
        return device

    def set_meta(self, device_id: str, doc: dict[str, Any], max_length: int = 128) -> str | None:
        """Record an appliance's identity; returns an error text if the meta is unusable.

        An appliance's type never changes: its windows, rules and open cases are of that type. A meta that
        says otherwise is refused (a replaced appliance gets a new device id)."""
        appliance_type = doc.get("type")
        if not isinstance(appliance_type, str) or appliance_type not in self.known_types:
            return f"meta 'type' must be one of {sorted(self.known_types)}, got {short_repr(appliance_type)}"
        known = self.appliance_type(device_id)
        if known is not None and appliance_type != known:
            return f"meta 'type' {appliance_type!r}: this appliance is a {known} (a new appliance needs a new id)"
        fields = {k: doc.get(k, "") for k in ("brand", "model", "serial", "firmware")}
        if not all(isinstance(v, str) and len(v) <= max_length for v in fields.values()):
            return f"meta brand, model, serial and firmware must be strings of at most {max_length} characters"
        names = doc.get("metric_names", {})
        if not isinstance(names, dict) or len(names) > max_length or not all(
                isinstance(k, str) and isinstance(v, str) and len(k) <= max_length and len(v) <= max_length
                for k, v in names.items()):
            return (f"meta metric_names must map at most {max_length} of the appliance's own metric names (each "
                    f"at most {max_length} characters) to the profile's names")
        if names:
            self.metric_names[device_id] = dict(names)
        else:
            self.metric_names.pop(device_id, None)
        meta = DeviceMeta(appliance_type, **fields)
        device = self._device(device_id)
        if device.meta != meta:
            device.meta = meta
            self._changed.add(device_id)
            log.info("appliance %s: %s %s %s", device_id, meta.brand, meta.model, meta.appliance_type)
        return None

    def set_online(self, device_id: str, online: bool) -> None:
        device = self._device(device_id)
        if device.online != online:
            device.online = online
            self._changed.add(device_id)
            log.info("appliance %s is %s", device_id, "online" if online else "offline")

    def seen(self, device_id: str, ts: float) -> None:
        device = self._device(device_id)
        if device.last_seen is None or ts > device.last_seen:
            if device.last_seen is None:
                self._changed.add(device_id)
            device.last_seen = ts
            self._seen[device_id] = None

    def appliance_type(self, device_id: str) -> str | None:
        device = self.devices.get(device_id)
        return device.meta.appliance_type if device and device.meta else None

    def take_changed(self, limit: int | None = None) -> list[Device]:
        """Devices changed since the last call, for a batched write to the database: every new one and every
        change of meta or online state, then those that only reported, at most `limit` in all, the longest
        waiting first. Every device reports every few seconds, so without a limit each write held all of them
        (25 ms at 10,000 devices, every 2 s, on the pipeline thread)."""
        ids = sorted(self._changed)
        self._changed.clear()
        for device_id in ids:
            self._seen.pop(device_id, None)
        room = len(self._seen) if limit is None else max(0, limit - len(ids))
        reported = list(itertools.islice(self._seen, room))
        for device_id in reported:
            del self._seen[device_id]
        return [self.devices[d] for d in ids + reported]

    def mark_changed(self, device_ids: Iterable[str]) -> None:
        """Put devices back on the to-save list (after a failed write)."""
        self._changed.update(device_ids)

    def online_count(self) -> int:
        return sum(1 for d in self.devices.values() if d.online)
