"""Prometheus text exposition of the gateway's status counters (for operators' scrapers)."""

from __future__ import annotations

from typing import Any

PREFIX = "appliance_gateway"


def prometheus_text(status: dict[str, Any]) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {PREFIX}_{name} {help_text}")
        lines.append(f"# TYPE {PREFIX}_{name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{PREFIX}_{name}{{{label_text}}} {value:g}" if labels else f"{PREFIX}_{name} {value:g}")

    metric("devices", "gauge", "Appliances known to the gateway.", [({}, status["devices"])])
    metric("devices_online", "gauge", "Appliances online.", [({}, status["online"])])
    metric("messages_total", "counter", "MQTT and serial messages handled.", [({}, status["messages"])])
    metric("samples_total", "counter", "Telemetry samples stored.", [({}, status["samples"])])
    metric("dropped_total", "counter", "Input dropped, by reason.",
           [({"reason": r}, c) for r, c in sorted(status["dropped"].items())])
    metric("open_incidents", "gauge", "Incidents firing now.", [({}, status["open_incidents"])])
    metric("outbox_entries", "gauge", "Tickets in the outbox, by state.",
           [({"state": s}, c) for s, c in sorted(status["outbox"].items())])
    metric("rule_pass_seconds", "gauge", "Duration of the last rule pass.", [({}, status["rule_pass_ms"] / 1000)])
    metric("internal_errors_total", "counter", "Messages that hit an internal error.",
           [({}, status["internal_errors"])])
    metric("mqtt_connected", "gauge", "1 while connected to the broker.", [({}, float(status["mqtt_connected"]))])
    broker = status.get("broker") or {}
    if broker:
        metric("broker_link_behind", "gauge", "1 while the MQTT link falls behind (telemetry arrives late).",
               [({}, float(broker.get("state") == "behind"))])
        metric("broker_link_lag_seconds", "gauge", "Median delay from a sample's time to its arrival.",
               [({}, float(broker.get("lag_seconds", 0.0)))])
        if broker.get("broker_dropped") is not None:
            metric("broker_dropped_total", "counter", "Messages the broker reports it dropped ($SYS).",
                   [({}, float(broker["broker_dropped"]))])
    ports = status.get("serial_ports", {})
    for counter in ("frames", "bad_checksum", "bad_crc", "timeouts", "reconnects"):
        metric(f"serial_{counter}_total", "counter", f"Serial {counter.replace('_', ' ')} per port.",
               [({"port": name}, float(p.get(counter, 0))) for name, p in sorted(ports.items())])
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
