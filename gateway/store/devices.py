"""Devices as the registry saves and restores them."""

from __future__ import annotations

from gateway.model import Device, DeviceMeta
from gateway.store.connection import Connection


class DeviceRows(Connection):
    def save_devices(self, devices: list[Device]) -> None:
        rows = [
            (d.device_id, d.meta.appliance_type if d.meta else "", d.meta.brand if d.meta else "",
             d.meta.model if d.meta else "", d.meta.serial if d.meta else "", d.meta.firmware if d.meta else "",
             None if d.online is None else int(d.online), d.last_seen)
            for d in devices
        ]
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
                "appliance_type=excluded.appliance_type, brand=excluded.brand, model=excluded.model, "
                "serial=excluded.serial, firmware=excluded.firmware, online=excluded.online, "
                "last_seen=excluded.last_seen", rows)

    def load_devices(self) -> list[Device]:
        rows = self._conn.execute("SELECT * FROM devices ORDER BY device_id").fetchall()
        return [
            Device(r[0], DeviceMeta(r[1], r[2], r[3], r[4], r[5]) if r[1] else None,
                   None if r[6] is None else bool(r[6]), r[7])
            for r in rows
        ]
