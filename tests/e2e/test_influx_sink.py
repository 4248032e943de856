"""The InfluxDB sink against a real server speaking the InfluxDB v2 write API: Debian's victoria-metrics.

Points must arrive with their tags, an outage within the buffer bound must lose nothing, and an outage
beyond it must drop only the oldest samples, counted."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim.localnet import LocalServiceError, VictoriaMetricsProcess
from gateway.config import ConfigError, InfluxConfig
from gateway.incidents.cases import open_incident
from gateway.ingest.registry import DeviceRegistry
from gateway.model import CasePolicy, NewEpisode
from gateway.sinks.influx import InfluxSink
from gateway.store.db import Database
from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetricsProcess]:
    server = VictoriaMetricsProcess(tmp_path)
    try:
        server.start()
    except LocalServiceError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


def exported(server: VictoriaMetricsProcess, match: str) -> list[dict[str, object]]:
    """Every series matching, with its values (VictoriaMetrics' export API, JSON lines)."""
    urllib.request.urlopen(f"{server.url}/internal/force_flush", timeout=10).read()
    query = urllib.request.quote(match)
    with urllib.request.urlopen(f"{server.url}/api/v1/export?match[]={query}", timeout=10) as response:
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]


def sink_for(tmp_path: Path, url: str, **changes: object) -> tuple[InfluxSink, Database]:
    registry = DeviceRegistry({"washer"})
    registry.set_meta("wm-1", {"type": "washer", "brand": "Haier", "model": "EG100"})
    db = Database(tmp_path / "gw.db")
    config = InfluxConfig(url=url, org="home", bucket="appliances", batch_size=200, flush_seconds=0.2,
                          **changes)  # type: ignore[arg-type]
    return InfluxSink(config, registry, db, "test-home"), db


def feed(sink: InfluxSink, start: float, count: int) -> None:
    for i in range(count):
        sink.add_sample("wm-1", start + i, {"water_level": float(i), "motor_current": 1.5})


def values_of(server: VictoriaMetricsProcess, metric: str, expected: int) -> list[float]:
    """The metric's values once `expected` of them are searchable (the server indexes writes within
    moments of accepting them), or whatever is there after 15 s."""
    deadline = time.monotonic() + 15
    while True:
        values = sorted(v for s in exported(server, metric) for v in s["values"])  # type: ignore[union-attr]
        if len(values) >= expected or time.monotonic() > deadline:
            return values
        time.sleep(0.2)


async def test_points_arrive_with_their_tags_and_an_outage_loses_nothing(
        tmp_path: Path, victoria: VictoriaMetricsProcess) -> None:
    sink, db = sink_for(tmp_path, victoria.url, max_buffered_samples=10_000)
    task = asyncio.create_task(sink.run())
    start = time.time() - 3600
    try:
        open_incident(db, NewEpisode("drain_timeout", "1", "wm-1", "fault", start, start + 5, "k1"),
                      {"rule": "drain_timeout"},
                      lambda findings, key, _at: {"idempotency_key": key, "findings_detail": findings},
                      start + 5, CasePolicy())
        feed(sink, start, 500)
        await eventually(lambda: sink.points_written >= 500 + 4, 20, "500 samples, 1 incident, 3 steps written")
        assert values_of(victoria, "telemetry_water_level", 500) == [float(i) for i in range(500)]
        [incident] = exported(victoria, "incident_onset_ts")
        assert incident["metric"]["rule"] == "drain_timeout" and incident["values"] == [pytest.approx(start)]
        steps = exported(victoria, "service_step_ticket_id")
        assert sorted(s["metric"]["step"] for s in steps) == ["detected", "diagnosed", "ticket_opened"]
        [series] = exported(victoria, "telemetry_water_level")
        assert series["metric"] == {"__name__": "telemetry_water_level", "device": "wm-1", "type": "washer",
                                    "brand": "Haier", "model": "EG100", "site": "test-home"}

        victoria.stop()  # the server goes away; ingest keeps adding
        feed(sink, start + 500, 300)
        await eventually(lambda: sink.write_failures >= 1, 20, "a write fails while the server is down")
        assert sink.buffered == 300 and sink.dropped_overflow == 0
        await asyncio.to_thread(victoria.start)
        await eventually(lambda: sink.buffered == 0, 60, "the buffered samples are written after the outage")
        expected = sorted([float(i) for i in range(500)] + [float(i) for i in range(300)])
        assert values_of(victoria, "telemetry_water_level", 800) == expected, "every sample of the outage arrived"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        db.close()


async def test_an_outage_beyond_the_bound_drops_the_oldest_samples_and_counts_them(
        tmp_path: Path, victoria: VictoriaMetricsProcess) -> None:
    victoria.stop()
    sink, db = sink_for(tmp_path, victoria.url, max_buffered_samples=100)
    task = asyncio.create_task(sink.run())
    try:
        feed(sink, time.time() - 600, 250)
        assert (sink.buffered, sink.dropped_overflow) == (100, 150)
        await eventually(lambda: sink.write_failures >= 1, 20, "writes fail while the server is down")
        await asyncio.to_thread(victoria.start)
        await eventually(lambda: sink.buffered == 0, 60, "the buffer drains once the server is back")
        assert values_of(victoria, "telemetry_water_level", 100) == [float(i) for i in range(150, 250)], \
            "the newest 100 samples were kept"
        assert sink.counters()["dropped_overflow"] == 150
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        db.close()


def test_without_the_influx_extra_the_gateway_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.sinks.influx import require_client

    monkeypatch.setitem(sys.modules, "influxdb_client", None)  # as if not installed: import raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'appliance-gateway\[influx\]'"):
        require_client()
