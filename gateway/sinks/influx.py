"""InfluxDB sink: raw telemetry, incidents and service steps, in batches, through the InfluxDB v2 write API.

Ingest only appends a sample to a bounded buffer (one deque append); a task formats line protocol and writes
batches with influxdb-client (the optional extra `influx`) on a worker thread. When the server is away, batches
wait and are retried with backoff; when the buffer is full, the oldest samples are dropped and counted, so a long
outage costs the oldest telemetry, never ingest speed. Incidents and steps are read from the gateway database by
id, so they are never lost to a full buffer and are written again after a restart (the same point overwrites
itself in InfluxDB). Tags: device, type, brand, model, site.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import orjson

from gateway.config import ConfigError, InfluxConfig
from gateway.ingest.registry import DeviceRegistry
from gateway.store.db import Database, StorageError

log = logging.getLogger("gateway.influx")

Sample = tuple[str, float, dict[str, float]]
_TAG_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})
_MAX_BACKOFF_SECONDS = 30.0


def require_client() -> None:
    """influxdb-client is an optional extra (most homes have no InfluxDB): say how to get it, at start-up."""
    try:
        import influxdb_client  # noqa: F401
    except ImportError:
        raise ConfigError("influx.url is set but the InfluxDB client is not installed: pip install "
                          "'appliance-gateway[influx]'") from None


class InfluxSink:
    def __init__(self, config: InfluxConfig, registry: DeviceRegistry, db: Database, site: str) -> None:
        require_client()
        self.config = config
        self.registry = registry
        self.db = db
        self.site = site
        self._buffer: deque[Sample] = deque()
        self._wake = asyncio.Event()
        self._last_incident = 0
        self._last_step = 0
        self.points_written = 0
        self.write_failures = 0
        self.dropped_overflow = 0
        self._down = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def add_sample(self, device_id: str, ts: float, metrics: dict[str, float]) -> None:
        """Called by ingest for every stored sample: O(1), never blocks."""
        if len(self._buffer) >= self.config.max_buffered_samples:
            self._buffer.popleft()
            self.dropped_overflow += 1
            if self.dropped_overflow == 1 or self.dropped_overflow % 10_000 == 0:
                log.error("InfluxDB buffer full (%d samples): dropped %d oldest sample(s) so far",
                          self.config.max_buffered_samples, self.dropped_overflow)
        self._buffer.append((device_id, ts, metrics))
        if len(self._buffer) >= self.config.batch_size:
            self._wake.set()

    async def run(self) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        client = InfluxDBClient(url=self.config.url, token=self.config.token, org=self.config.org,
                                timeout=int(self.config.timeout_seconds * 1000))
        writer = client.write_api(write_options=SYNCHRONOUS)
        backoff = 1.0
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.config.flush_seconds)
                self._wake.clear()
                while True:
                    lines, taken, cursor = self._next_batch()
                    if not lines:
                        break
                    try:
                        await asyncio.to_thread(writer.write, bucket=self.config.bucket, org=self.config.org,
                                                record=lines, write_precision="ms")  # type: ignore[arg-type]
                    except Exception as exc:  # the client raises urllib3, HTTP and API errors alike
                        self.write_failures += 1
                        self._put_back(taken)
                        if not self._down:
                            log.warning("InfluxDB at %s not writable (%s); buffering up to %d samples",
                                        self.config.url, str(exc).splitlines()[0][:200],
                                        self.config.max_buffered_samples)
                        self._down = True
                        await asyncio.sleep(backoff)
                        backoff = min(_MAX_BACKOFF_SECONDS, backoff * 2)
                        break
                    self._last_incident, self._last_step = cursor
                    self.points_written += len(lines)
                    backoff = 1.0
                    if self._down:
                        log.info("InfluxDB writable again; %d samples still buffered", len(self._buffer))
                        self._down = False
        finally:
            client.close()  # type: ignore[no-untyped-call]

    def _next_batch(self) -> tuple[list[str], list[Sample], tuple[int, int]]:
        """Up to batch_size lines: new incidents and steps first, then buffered samples."""
        lines: list[str] = []
        cursor = (self._last_incident, self._last_step)
        try:
            incidents, steps = self.db.records_since(self._last_incident, self._last_step, self.config.batch_size)
        except StorageError as exc:
            log.error("cannot read incidents and steps for InfluxDB: %s", exc)
            incidents, steps = [], []
        for incident in incidents:
            lines.append(self._line("incident", incident["device_id"], incident["detected_ts"],
                                    {"rule": incident["rule_id"], "category": incident["category"]},
                                    {"onset_ts": incident["onset_ts"], "ticket_id": incident["ticket_id"]}))
            cursor = (incident["incident_id"], cursor[1])
        for step in steps:
            lines.append(self._line("service_step", step["device_id"], step["at"],
                                    {"step": step["step"], "actor": step["actor"]},
                                    {"ticket_id": step["ticket_id"], "detail": orjson.dumps(step["detail"]).decode()}))
            cursor = (cursor[0], step["step_id"])
        taken: list[Sample] = []
        while self._buffer and len(lines) < self.config.batch_size:
            sample = self._buffer.popleft()
            taken.append(sample)
            lines.append(self._line("telemetry", sample[0], sample[1], {}, sample[2]))
        return lines, taken, cursor

    def _put_back(self, taken: list[Sample]) -> None:
        room = self.config.max_buffered_samples - len(self._buffer)
        keep = taken[-room:] if room > 0 else []
        self.dropped_overflow += len(taken) - len(keep)
        self._buffer.extendleft(reversed(keep))

    def _line(self, measurement: str, device_id: str, ts: float, extra_tags: dict[str, str],
              fields: dict[str, Any]) -> str:
        device = self.registry.get(device_id)
        meta = device.meta if device else None
        tags = {"device": device_id, "site": self.site, "type": meta.appliance_type if meta else "",
                "brand": meta.brand if meta else "", "model": meta.model if meta else "", **extra_tags}
        tag_text = ",".join(f"{k}={str(v).translate(_TAG_ESCAPES)}" for k, v in sorted(tags.items()) if v != "")
        field_text = ",".join(f"{k.translate(_TAG_ESCAPES)}={_field(v)}" for k, v in fields.items())
        return f"{measurement},{tag_text} {field_text} {int(ts * 1000)}"

    def counters(self) -> dict[str, int]:
        return {"points_written": self.points_written, "write_failures": self.write_failures,
                "dropped_overflow": self.dropped_overflow, "buffered": len(self._buffer)}


def _field(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
