"""Prometheus exposition of the gateway's status (for operators' scrapers), through prometheus_client.

A custom collector reads the status the gateway already keeps (one dict, as /api/status serves it), so there is
one source of truth and no second set of counters: exact counters and gauges (prometheus_client writes
12345678 as 12345678.0, never 1.23457e+07), the three latency histograms of gateway/latency.py, every counter
the gateway page shows (outbox and step outbox, platform events, serial ports including resyncs and watchdog
resets, history, InfluxDB) and `build_info`.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import __version__

PREFIX = "appliance_gateway"
SERIAL_COUNTERS = ("frames", "bad_checksum", "bad_crc", "resyncs", "timeouts", "reconnects", "watchdog_resets")
FamilyT = TypeVar("FamilyT", GaugeMetricFamily, CounterMetricFamily)


class StatusCollector(Collector):
    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status = self.status
        build = GaugeMetricFamily(f"{PREFIX}_build_info", "Version of the gateway and of Python.",
                                  labels=["version", "python"])
        build.add_metric([__version__, platform.python_version()], 1)
        yield build
        yield _gauge("devices", "Appliances known to the gateway.", status["devices"])
        yield _gauge("devices_online", "Appliances online.", status["online"])
        yield _counter("messages", "MQTT and serial messages handled.", status["messages"])
        yield _counter("samples", "Telemetry samples handled (exact).", status["samples"])
        yield _counter("incidents_opened", "Incidents opened since the start.", status.get("incidents_opened", 0))
        yield _counter("tickets_delivered", "Tickets the platform accepted (all time, from the outbox).",
                       status.get("tickets_delivered", 0))
        yield _counter("dropped", "Input dropped, by reason.", None, "reason", status["dropped"])
        yield _gauge("open_incidents", "Incidents firing now.", status["open_incidents"])
        yield _gauge("outbox_entries", "Tickets in the outbox, by state.", None, "state", status["outbox"])
        yield _gauge("step_outbox_entries", "Service steps in the outbox, by state.", None, "state",
                     status.get("step_outbox", {}))
        yield _counter("platform_events", "Platform events and polls, by outcome.", None, "outcome",
                       status.get("platform_events", {}))
        yield _gauge("rule_pass_last_seconds", "Duration of the last rule pass.", status["rule_pass_ms"] / 1000)
        yield _counter("internal_errors", "Messages or passes that hit an internal error.", status["internal_errors"])
        yield _gauge("mqtt_connected", "1 while connected to the broker.", float(status["mqtt_connected"]))
        yield _gauge("pipeline_alive", "1 while the pipeline thread runs.", float(status.get("pipeline_alive", 0)))
        yield _gauge("ingest_queue", "Messages waiting for the pipeline thread.", status.get("ingest_queue", 0))
        broker = status.get("broker") or {}
        if broker:
            yield _gauge("broker_link_behind", "1 while the MQTT link falls behind (telemetry arrives late).",
                         float(broker.get("state") == "behind"))
            yield _gauge("broker_link_lag_seconds", "Median delay from a sample's time to its arrival.",
                         float(broker.get("lag_seconds", 0.0)))
            if broker.get("broker_dropped") is not None:
                yield _counter("broker_dropped", "Messages the broker reports it dropped ($SYS).",
                               float(broker["broker_dropped"]))
        ports = status.get("serial_ports", {})
        for name in SERIAL_COUNTERS:
            yield _counter(f"serial_{name}", f"Serial {name.replace('_', ' ')} per port.", None, "port",
                           {port: p.get(name, 0) for port, p in ports.items()})
        history = status.get("history") or {}
        yield _counter("history_rows_written", "Minute rows written to the history.", history.get("rows_written", 0))
        yield _gauge("history_last_flush_seconds", "Duration of the last history flush.",
                     history.get("last_flush_ms", 0) / 1000)
        influx = status.get("influx")
        if influx:
            for name in ("points_written", "write_failures", "dropped_overflow"):
                yield _counter(f"influx_{name}", f"InfluxDB sink: {name.replace('_', ' ')}.", influx.get(name, 0))
            yield _gauge("influx_buffered", "InfluxDB sink: samples waiting.", influx.get("buffered", 0))
        for name, histogram in (status.get("latency_seconds") or {}).items():
            family = HistogramMetricFamily(f"{PREFIX}_{name}_seconds", histogram["help"])
            family.add_metric([], [(_le(bound), count) for bound, count in histogram["buckets"]],
                              sum_value=histogram["sum"])
            yield family


def _le(bound: float | str) -> str:
    return "+Inf" if bound == "+Inf" else repr(float(bound))


def _family(kind: type[FamilyT], name: str, help_text: str, value: float | None,
            label: str, by_label: dict[str, Any] | None) -> FamilyT:
    """One metric family: a single value, or one sample per key of `by_label` under the label `label`."""
    if by_label is None:
        return kind(f"{PREFIX}_{name}", help_text, value=value)
    family = kind(f"{PREFIX}_{name}", help_text, labels=[label])
    for key, count in sorted(by_label.items()):
        family.add_metric([str(key)], count)
    return family


def _gauge(name: str, help_text: str, value: float | None, label: str = "",
           by_label: dict[str, Any] | None = None) -> GaugeMetricFamily:
    return _family(GaugeMetricFamily, name, help_text, value, label, by_label)


def _counter(name: str, help_text: str, value: float | None, label: str = "",
             by_label: dict[str, Any] | None = None) -> CounterMetricFamily:
    return _family(CounterMetricFamily, name, help_text, value, label, by_label)


def prometheus_text(status: dict[str, Any]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return generate_latest(registry).decode()
