"""The appliance page's charts: which span to draw, which limits to draw on it, and in what order.

The default span fits the data (a few minutes of data drawn over an hour were 8 px wide); "incident" spans the
newest incident with half an hour either side. The metrics the open incidents' rules compared come first, each
with the rule's limit drawn, so the telling chart is not the fifteenth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.engine.profiles import Profile
from gateway.store.history import History
from gateway.web.charts import Marker, Threshold, chart_svg
from gateway.web.units import metric_label

RANGES = {"15m": 900.0, "1h": 3600.0, "24h": 86400.0, "30d": 30 * 86400.0}
SPANS = ("fit", "incident", *RANGES)
FIT_LOOKBACK = 86400.0  # "fit" looks this far back for the first data
MIN_SPAN = 300.0
AROUND_INCIDENT = 1800.0
POINTS = 300
LIMIT_OPS = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True)
class Span:
    name: str
    start: float
    end: float


def resolve_span(name: str, now: float, first_data: float | None, incidents: list[dict[str, Any]]) -> Span:
    """The span to draw for `name` (one of SPANS; anything else fits the data)."""
    if name in RANGES:
        return Span(name, now - RANGES[name], now)
    if name == "incident" and incidents:
        newest = max(incidents, key=lambda i: (i["state"] == "firing", i["onset_ts"]))
        end = now if newest["state"] == "firing" else min(now, (newest["resolved_ts"] or now) + AROUND_INCIDENT)
        return Span("incident", newest["onset_ts"] - AROUND_INCIDENT, max(end, newest["onset_ts"] + MIN_SPAN))
    start = now - FIT_LOOKBACK if first_data is None else max(now - FIT_LOOKBACK, first_data - 30.0)
    return Span("fit", min(start, now - MIN_SPAN), now)


def first_data(history: History, device_id: str, profile: Profile, now: float) -> float | None:
    """The time of the device's earliest data within FIT_LOOKBACK: the first of 200 buckets over it, then the
    first of 200 within that bucket (a bucket of the coarse query is 7 minutes wide)."""
    names = [m.name for m in profile.metrics]
    start, end = now - FIT_LOOKBACK, now
    for _ in range(2):
        series = history.query(device_id, names, start, end, 200)
        firsts = [t for s in series.values() if s["ts"] and (t := s["ts"][0]) is not None]
        if not firsts:
            return None
        start, end = min(firsts), min(firsts) + (end - start) / 200
    return start


def rule_limits(payloads: list[dict[str, Any]]) -> dict[str, list[Threshold]]:
    """Per metric, the limits the open incidents' rules compared it with (from their tickets' evidence)."""
    limits: dict[str, list[Threshold]] = {}
    for payload in payloads:
        findings = payload.get("findings_detail") or [{"rule": payload["evidence"]["rule"]["id"],
                                                       "evidence": payload["evidence"]}]
        for finding in findings:
            for observed in (finding.get("evidence") or {}).get("observed", []):
                if observed.get("threshold") is None or observed.get("op") not in LIMIT_OPS:
                    continue  # `compressor_on == 1` is a state the rule needs, not a limit to break
                limit = Threshold(float(observed["threshold"]), str(observed.get("op")), str(finding.get("rule")))
                found = limits.setdefault(str(observed.get("quantity")), [])
                if limit not in found:
                    found.append(limit)
    return limits


def breaks(value: float | None, limits: list[Threshold]) -> Threshold | None:
    """The first limit `value` breaks now, if any."""
    if value is None:
        return None
    for limit in limits:
        if {"<": value < limit.value, "<=": value <= limit.value, ">": value > limit.value,
                ">=": value >= limit.value, "==": value == limit.value, "!=": value != limit.value}.get(limit.op):
            return limit
    return None


def ordered_metrics(profile: Profile, limits: dict[str, list[Threshold]]) -> list[str]:
    """The metrics an open incident's rule compared first, then the rest in the profile's order."""
    names = [m.name for m in profile.metrics]
    return [n for n in names if n in limits] + [n for n in names if n not in limits]


def device_charts(history: History, profile: Profile, device_id: str, span: Span,
                  marks: tuple[list[dict[str, Any]], list[dict[str, Any]]],
                  limits: dict[str, list[Threshold]]) -> str:
    """Every metric with data in the span, in `ordered_metrics` order, with the device's incidents and steps."""
    series = history.query(device_id, [m.name for m in profile.metrics], span.start, span.end, POINTS)
    incidents, steps = marks
    markers = [Marker(i["onset_ts"], "incident", f"{i['rule_id'].replace('_', ' ')} began") for i in incidents] + \
              [Marker(s["at"], "step", s["step"].replace("_", " ")) for s in steps
               if s["step"] not in ("detected", "diagnosed")]
    specs = {m.name: m for m in profile.metrics}
    charts = [chart_svg(metric_label(profile, name), specs[name].unit, series[name], span.start, span.end,
                        (specs[name].low, specs[name].high), markers, limits.get(name, []), name,
                        specs[name].zh, dict(specs[name].states))
              for name in ordered_metrics(profile, limits) if series[name]["ts"]]
    return "".join(charts) or "<p>No data in this span.</p>"
