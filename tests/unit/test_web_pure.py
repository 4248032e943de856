"""Pure parts of the web console: technician links and their scope, charts, Prometheus text."""

from __future__ import annotations

import re
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.config import GatewayConfig
from gateway.engine.library import load_library
from gateway.incidents.cases import open_incident
from gateway.latency import FAST_BUCKETS, Histogram
from gateway.model import CasePolicy, NewEpisode
from gateway.store.db import Database
from gateway.web.access import Access, Role, allowed, load_or_create_token
from gateway.web.charts import Marker, Threshold, chart_svg
from gateway.web.device_charts import Span, breaks, ordered_metrics, resolve_span, rule_limits
from gateway.web.metrics import prometheus_text
from gateway.web.ticket_page import evidence_charts

KEY = b"k" * 32


def ticket_on(db: Database, device: str, key: str) -> int:
    opened = open_incident(db, NewEpisode("r", "1", device, "fault", 1.0, 1.0, key), {"rule": "r"},
                           lambda findings, k, _at: {"appliance": {"device_id": device}, "findings_detail": findings},
                           1.0, CasePolicy())
    assert opened is not None
    return opened.ticket_id


def test_technician_links_cannot_be_forged_moved_or_outlive_the_ticket(tmp_path: Path) -> None:
    db = Database(tmp_path / "gw.db")
    ticket = ticket_on(db, "ac-1", "k1")
    access = Access("admin-token-0123456789", KEY, db)
    link = access.technician_link(ticket)
    assert access.technician(link) == Role("technician", ticket, "ac-1")
    ticket_id, expires, mac = link.split(".")
    assert access.technician(f"{int(ticket_id) + 1}.{expires}.{mac}") == "not a technician link of this gateway"
    assert access.technician(f"{ticket_id}.{int(expires) + 86400}.{mac}") == "not a technician link of this gateway"
    assert Access("other-admin-token-000000", b"x" * 32, db).technician(link) == \
        "not a technician link of this gateway"
    assert access.technician(link, now=time.time() + 8 * 86400) == "this technician link has expired"
    assert access.technician("garbage") == "not a technician link"
    db.add_step(ticket, "confirmed", 2.0, "customer", "customer", "e-confirmed", {"rating": 5})
    assert access.technician(link) == "the ticket is closed: the customer confirmed the repair"
    db.close()


def test_a_technician_reaches_only_the_ticket_and_its_appliance() -> None:
    role = Role("technician", 7, "ac-1")
    for path in ("/tickets/7", "/api/tickets/7", "/devices/ac-1", "/devices/ac-1/charts",
                 "/api/devices/ac-1/history", "/api/stream"):
        assert allowed(role, path), path
    for path in ("/tickets/8", "/api/tickets/70", "/devices/ac-2", "/", "/gateway", "/metrics", "/api/status",
                 "/api/tickets", "/api/tickets/7/technician-link", "/devices/ac-1/../ac-2"):
        assert not allowed(role, path), path
    assert allowed(Role("admin"), "/metrics")


def test_the_admin_token_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "var" / "admin.token"
    token = load_or_create_token(path)
    assert len(token) >= 16 and path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_token(path) == token


def test_a_chart_draws_its_points_band_invalid_range_and_named_markers() -> None:
    series = {"ts": [10.0, 20.0, 30.0], "mean": [1.0, None, 3.0], "min": [0.5, None, 2.0], "max": [1.5, None, 4.0]}
    svg = chart_svg("High-side gauge pressure", "kPa", series, 0.0, 40.0, (0.0, 3.5),
                    [Marker(25.0, "incident", "fault began"), Marker(99.0, "step", "outside the range")],
                    metric="discharge_pressure")
    assert 'data-points="2"' in svg and 'aria-label="High-side gauge pressure (kPa)"' in svg
    assert 'data-metric="discharge_pressure"' in svg
    assert len(re.search(r'polyline class="line" points="([^"]*)"', svg).group(1).split()) == 2  # type: ignore[union-attr]
    assert svg.count('class="incident"') == 1 and 'class="step"' not in svg
    assert "<li class='incident'><b>1</b> fault began" in svg, "a marker is named in words, not only in a tooltip"
    assert '<rect class="invalid"' in svg, "above 3.5 is outside the valid range: shaded"
    assert '<polygon class="band"' in svg and 'preserveAspectRatio="none"' not in svg
    empty = chart_svg("x", "", {"ts": [], "mean": [], "min": [], "max": []}, 0.0, 1.0, None, [])
    assert "no data in this range" in empty and 'data-points="0"' in empty


def test_a_chart_draws_the_rules_limit_with_its_value_and_the_breaking_part_in_red() -> None:
    series = {"ts": [0.0, 10.0, 20.0], "mean": [3500.0, 3900.0, 4029.0], "min": [3500.0, 3900.0, 4029.0],
              "max": [3500.0, 3900.0, 4029.0]}
    svg = chart_svg("High-side gauge pressure", "kPa", series, 0.0, 20.0, (0.0, 6000.0), [],
                    [Threshold(3800.0, ">", "condenser_airflow_loss")], "discharge_pressure")
    assert '<line class="threshold"' in svg and "limit &gt; 3,800 kPa" in svg
    assert 'class="line breaking" clip-path="url(#beyond-' in svg
    low = chart_svg("Coil", "degC", {"ts": [0.0, 1.0], "mean": [5.0, 6.0], "min": [5.0, 6.0], "max": [5.0, 6.0]},
                    0.0, 1.0, None, [], [Threshold(-1.0, "<")], "coil")
    assert "limit &lt; -1 °C" in low, "the limit is drawn even where the values are far from it"


def test_a_boolean_is_a_state_timeline_not_a_line() -> None:
    series = {"ts": [0.0, 10.0, 20.0, 30.0], "mean": [0.0, 1.0, 1.0, 0.0], "min": [0.0, 1.0, 1.0, 0.0],
              "max": [0.0, 1.0, 1.0, 0.0]}
    svg = chart_svg("Compressor running", "bool", series, 0.0, 40.0, (0.0, 1.0), [], [], "compressor_on")
    assert 'data-kind="state"' in svg and 'class="line"' not in svg
    assert svg.count('<rect class="state') == 3 and ">on</text>" in svg


def test_the_default_span_fits_the_data_and_around_the_incident_spans_it() -> None:
    now = 100_000.0
    assert resolve_span("fit", now, now - 240, []) == Span("fit", now - 300, now), "4 min of data: 5 min drawn"
    assert resolve_span("fit", now, now - 7200, []).start == now - 7230
    assert resolve_span("1h", now, None, []) == Span("1h", now - 3600, now)
    incident = {"onset_ts": now - 5000, "state": "resolved", "resolved_ts": now - 4000}
    assert resolve_span("incident", now, None, [incident]) == Span("incident", now - 6800, now - 2200)
    assert resolve_span("incident", now, now - 60, []).name == "fit", "no incident: fit the data"


def test_a_value_breaking_an_open_incidents_limit_is_found_and_those_metrics_come_first() -> None:
    payload = {"evidence": {"rule": {"id": "fan"}, "observed": [
        {"quantity": "outdoor_fan_speed", "op": "<", "threshold": 100.0, "value": 0.0}]}}
    limits = rule_limits([payload])
    assert breaks(0.0, limits["outdoor_fan_speed"]) == Threshold(100.0, "<", "fan")
    assert breaks(800.0, limits["outdoor_fan_speed"]) is None
    profile = load_library(GatewayConfig()).profiles["air_conditioner"]
    assert ordered_metrics(profile, limits)[0] == "outdoor_fan_speed"


def test_metrics_parse_as_prometheus_with_exact_values_and_histograms() -> None:
    rule_pass = Histogram("Duration of each rule pass.", FAST_BUCKETS)
    for seconds in (0.0002, 0.0004, 0.003, 7.0):
        rule_pass.observe(seconds)
    status = {"devices": 3, "online": 2, "messages": 12_345_678, "samples": 9, "dropped": {"bad_json": 1},
              "open_incidents": 1, "outbox": {"queued": 1, "delivered": 4}, "rule_pass_ms": 2.5,
              "internal_errors": 0, "mqtt_connected": True, "tickets_delivered": 4,
              "serial_ports": {"ac-uart": {"frames": 5, "resyncs": 2, "watchdog_resets": 1}},
              "latency_seconds": {"rule_pass": rule_pass.snapshot()}}
    families = {f.name: f for f in text_string_to_metric_families(prometheus_text(status))}
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert value[("appliance_gateway_messages_total", ())] == 12_345_678  # exact, not 1.23457e+07
    assert value[("appliance_gateway_dropped_total", (("reason", "bad_json"),))] == 1
    assert value[("appliance_gateway_outbox_entries", (("state", "delivered"),))] == 4
    assert value[("appliance_gateway_tickets_delivered_total", ())] == 4
    assert value[("appliance_gateway_serial_resyncs_total", (("port", "ac-uart"),))] == 2
    assert value[("appliance_gateway_serial_watchdog_resets_total", (("port", "ac-uart"),))] == 1
    assert value[("appliance_gateway_rule_pass_last_seconds", ())] == 0.0025
    assert families["appliance_gateway_rule_pass_seconds"].type == "histogram"
    assert value[("appliance_gateway_rule_pass_seconds_bucket", (("le", "0.0005"),))] == 2
    assert value[("appliance_gateway_rule_pass_seconds_bucket", (("le", "2.5"),))] == 3
    assert value[("appliance_gateway_rule_pass_seconds_bucket", (("le", "+Inf"),))] == 4
    assert value[("appliance_gateway_rule_pass_seconds_count", ())] == 4
    assert abs(value[("appliance_gateway_rule_pass_seconds_sum", ())] - 7.0036) < 1e-9
    [build] = families["appliance_gateway_build_info"].samples
    assert build.value == 1 and build.labels["version"] and build.labels["python"]


def test_the_ticket_charts_the_metric_that_rules_a_cause_out() -> None:
    profile = load_library(GatewayConfig()).profiles["air_conditioner"]
    payload = {"evidence": {"observed": [{"quantity": "discharge_pressure", "op": ">", "threshold": 3800.0,
                                          "value": 4100.0}],
                            "window": {"ts": [0.0, 10.0], "metrics": {"discharge_pressure": [3900.0, 4100.0],
                                                                       "outdoor_fan_speed": [810.0, 805.0]}}},
               "findings": [{"onset_ts": 5.0}],
               "ruled_out": [{"cause": "Outdoor fan motor failed",
                              "because": ["the outdoor fan turns at its normal speed"],
                              "metrics": ["outdoor_fan_speed"]}]}
    charts = evidence_charts(payload, profile)
    assert 'data-metric="discharge_pressure"' in charts and 'data-metric="outdoor_fan_speed"' in charts
    assert "Rules out Outdoor fan motor failed: the outdoor fan turns at its normal speed" in charts
    assert "limit &gt; 3,800 kPa" in charts
