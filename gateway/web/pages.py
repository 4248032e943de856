"""HTML of the console's pages. Plain HTML and CSS that work on a phone; a few lines of script subscribe to the
server-sent events for live numbers and charts. Pure functions of the data the routes gather."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from gateway.web.charts import CHART_CSS

esc = html.escape

CSS = """
body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:0;color:#222}
header{background:#263238;color:#fff;padding:.5rem 1rem;display:flex;gap:1rem;flex-wrap:wrap;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}main{padding:1rem;max-width:60rem}
table{border-collapse:collapse;width:100%;margin-bottom:1.5rem}.scroll{overflow-x:auto}
td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.on{color:#2e7d32}.off{color:#c62828}.warn{color:#c62828}.ok{color:#555}.stat{color:#555}
.msg{background:#eef;padding:.5rem}li{margin:.3rem 0}form.filters{display:flex;gap:.5rem;flex-wrap:wrap;margin:.5rem 0}
.ranges a{margin-right:.8rem}.valid-ok{color:#2e7d32}.valid-bad{color:#c62828;font-weight:600}
""" + CHART_CSS

LIVE_SCRIPT = """<script>
(function(){
  if(!window.EventSource){return;}
  var stream=new EventSource('/api/stream');
  stream.addEventListener('status',function(e){
    var s=JSON.parse(e.data);
    document.querySelectorAll('[data-live]').forEach(function(el){
      var v=s[el.getAttribute('data-live')]; if(v!==undefined){el.textContent=v;}
    });
    if(window.refreshLive){window.refreshLive();}
  });
})();
</script>"""


def page(title: str, body: str, live: bool = True, nav: bool = True) -> str:
    links = ('<a href="/">Appliances</a><a href="/gateway">Gateway</a>' if nav else "")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{esc(title)}</title><style>{CSS}</style>'
            f'</head><body><header><span>Appliance gateway</span>{links}</header><main>{body}</main>'
            f'{LIVE_SCRIPT if live else ""}</body></html>')


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "never"
    seconds = max(0, int((now or time.time()) - ts))
    if seconds < 120:
        return f"{seconds} s ago"
    return f"{seconds // 60} min ago" if seconds < 7200 else f"{seconds // 3600} h ago"


@dataclass(frozen=True)
class Page:
    """Which rows of a longer list a page shows."""

    offset: int
    limit: int
    total: int

    def links(self, query: dict[str, str]) -> str:
        """The "Showing 201-400 of 20,000" line, with links to the pages before and after, the filters kept."""
        if self.total <= self.limit and self.offset == 0:
            return ""
        shown = f"{self.offset + 1:,}-{min(self.total, self.offset + self.limit):,} of {self.total:,}"

        def link(offset: int, text: str) -> str:
            params = urlencode({**{k: v for k, v in query.items() if v}, "offset": offset, "limit": self.limit})
            return f"<a href='?{esc(params)}'>{text}</a>"

        before = link(max(0, self.offset - self.limit), "previous") if self.offset > 0 else ""
        after = link(self.offset + self.limit, "next") if self.offset + self.limit < self.total else ""
        return f"<p class='pages'>Showing {shown} {before} {after}</p>"


def devices_page(devices: list[dict[str, Any]], tickets: list[dict[str, Any]], status: dict[str, Any],
                 filters: dict[str, str], types: list[str], paging: Page | None = None) -> str:
    rows = "".join(
        f"<tr data-device='{esc(d['device_id'])}'><td><a href='/devices/{esc(d['device_id'])}'>{esc(d['device_id'])}"
        f"</a></td><td>{esc(d['type'] or '?')}</td><td>{esc((d['brand'] or '') + ' ' + (d['model'] or ''))}</td>"
        f"<td class='{_state_class(d['online'])}'>{_state(d['online'])}</td>"
        f"<td>{ago(d['last_seen'])}</td><td>{d['open_incidents']}</td><td>{d['open_tickets']}</td></tr>"
        for d in devices) or "<tr><td colspan=7>No appliance matches.</td></tr>"
    ticket_rows = "".join(
        f"<tr><td><a href='/tickets/{t['ticket_id']}'>{t['ticket_id']}</a></td>"
        f"<td>{esc(t['payload']['appliance']['device_id'])}</td><td>{esc(t['payload']['fault']['code'])}</td>"
        f"<td>{esc(t['payload']['fault']['title']['en'])}<br>{esc(t['payload']['fault']['title']['zh'])}</td>"
        f"<td>{esc(t['payload']['fault']['severity'])}</td><td>{esc(t['payload']['probable_causes'][0]['cause'])}"
        f"</td><td>{esc(t['delivery'])}</td></tr>"
        for t in tickets) or "<tr><td colspan=7>No open tickets.</td></tr>"
    type_options = "".join(f"<option{' selected' if filters.get('type') == t else ''}>{esc(t)}</option>"
                           for t in types)
    state_options = "".join(f"<option{' selected' if filters.get('state') == s else ''}>{s}</option>"
                            for s in ("online", "offline", "faulty"))
    body = f"""<h1>Appliances</h1>
<p class="stat"><span data-live="devices">{status.get('devices', 0)}</span> appliances,
<span data-live="online">{status.get('online', 0)}</span> online, <span data-live="messages">{status.get('messages', 0)}
</span> messages, <span data-live="open_incidents">{status.get('open_incidents', 0)}</span> open incidents,
<span data-live="tickets_delivered">{status.get('tickets_delivered', 0)}</span> tickets delivered,
<span data-live="dropped_total">{status.get('dropped_total', 0)}</span> inputs dropped</p>
<form class="filters" method="get"><select name="type"><option value="">all types</option>{type_options}</select>
<select name="state"><option value="">any state</option>{state_options}</select>
<input name="q" value="{esc(filters.get('q', ''))}" placeholder="id, brand or model"><button>Filter</button></form>
<div class="scroll"><table id="devices"><tr><th>Appliance</th><th>Type</th><th>Brand / model</th><th>State</th>
<th>Last seen</th><th>Open incidents</th><th>Open tickets</th></tr>{rows}</table></div>
{paging.links(filters) if paging else ""}
<h2>Open tickets</h2><div class="scroll"><table id="tickets"><tr><th>#</th><th>Appliance</th><th>Code</th>
<th>Fault</th><th>Severity</th><th>Most likely cause</th><th>Delivery</th></tr>{ticket_rows}</table></div>"""
    return page("Appliances", body)


RANGES = {"1h": 3600.0, "24h": 86400.0, "30d": 30 * 86400.0}


def device_page(device: dict[str, Any], latest: list[dict[str, Any]], charts: str, range_name: str,
                incidents: list[dict[str, Any]], base: str) -> str:
    latest_rows = "".join(
        f"<tr><td>{esc(m['metric'])}</td><td class='{'valid-ok' if m['in_range'] else 'valid-bad'}'>"
        f"{_value(m['value'])}</td><td>{esc(m['unit'])}</td><td>{m['low']:g} to {m['high']:g}</td>"
        f"<td>{ago(m['ts'])}</td></tr>"
        for m in latest)
    incident_rows = "".join(
        f"<li>{esc(i['rule_id'])}: since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(i['onset_ts']))}"
        f" ({esc(i['state'])}) <a href='/tickets/{i['ticket_id']}'>ticket {i['ticket_id']}</a></li>"
        for i in incidents) or "<li>none</li>"
    ranges = "".join(f"<a href='{base}?range={name}'{' aria-current=page' if name == range_name else ''}>"
                     f"{'<b>' + name + '</b>' if name == range_name else name}</a>" for name in RANGES)
    body = f"""<h1>{esc(device['device_id'])}</h1>
<p>{esc(device['type'] or '?')} · {esc(device['brand'] or '')} {esc(device['model'] or '')} · serial
{esc(device['serial'] or '?')} · firmware {esc(device['firmware'] or '?')} ·
<span class="{_state_class(device['online'])}">{_state(device['online'])}</span>, last seen
{ago(device['last_seen'])}</p>
<h2>Incidents</h2><ul id="incidents">{incident_rows}</ul>
<h2>Charts</h2><p class="ranges">{ranges}</p>
<div id="charts" data-src="{base}/charts?range={range_name}">{charts}</div>
<p class="stat">Shaded green: the metric's valid range. Red line: an incident's onset. Dashed purple: a service
step.</p>
<h2>Latest values</h2><div class="scroll"><table id="latest"><tr><th>Metric</th><th>Value</th><th>Unit</th>
<th>Valid range</th><th>Updated</th></tr>{latest_rows}</table></div>
<script>
var lastRefresh=Date.now();
window.refreshLive=function(){{
  var now=Date.now(); if(now-lastRefresh<10000){{return;}} lastRefresh=now;
  var box=document.getElementById('charts');
  fetch(box.getAttribute('data-src'),{{credentials:'same-origin'}}).then(function(r){{return r.ok?r.text():null;}})
    .then(function(t){{if(t){{box.innerHTML=t;}}}});
}};
</script>"""
    return page(device["device_id"], body)


def _state(online: bool | None) -> str:
    """None: the appliance never sent a status (no last will configured), so nobody knows."""
    return "online" if online else "offline" if online is False else "state unknown"


def _state_class(online: bool | None) -> str:
    return "on" if online else "off" if online is False else "stat"


def _value(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _partition(partition: dict[str, Any] | None) -> str:
    """The worker's share of a partitioned fleet (docs/scaling.md); nothing for a gateway that hears everything."""
    if not partition:
        return ""
    return (f"<tr><th>Partition</th><td id=\"partition\">worker {partition['partition']} of {partition['partitions']}"
            f": the appliances on {esc(str(partition['subscription']))}</td></tr>")


def _auth_refused(refusal: str) -> str:
    if not refusal:
        return ""
    return (f"<br><strong>The service platform refuses this gateway's credentials ({esc(refusal)})</strong>: "
            "check <code>upstream.token</code>. Tickets wait and are retried; none is dropped.")


def _broker_link(broker: dict[str, Any]) -> str:
    lag = f"telemetry arrives {broker.get('lag_seconds', 0):.1f} s after it was sent"
    dropped = broker.get("broker_dropped")
    drops = "" if dropped is None else f"; the broker reports {dropped} dropped"
    if broker.get("state") == "behind":
        return (f"<strong>FALLING BEHIND</strong>: {lag}{drops}. Messages are lost or late; point the gateway at "
                "a faster broker (broker.url) or reduce the load.")
    return f"keeping up: {lag}{drops}"


def gateway_page(status: dict[str, Any], rates: dict[str, float]) -> str:
    drops = "".join(f"<tr><td>{esc(reason)}</td><td>{count}</td></tr>"
                    for reason, count in sorted(status.get("dropped", {}).items())) or \
        "<tr><td colspan=2>nothing dropped</td></tr>"
    keys = ("frames", "bad_checksum", "bad_crc", "resyncs", "timeouts", "reconnects", "watchdog_resets")
    ports = "".join(
        f"<tr><td>{esc(name)}</td><td>{esc(p['url'])}</td><td>{esc(p['dialect'])}</td><td>{esc(p['state'])}</td>"
        + "".join(f"<td>{p.get(k, 0)}</td>" for k in keys) + "</tr>"
        for name, p in sorted(status.get("serial_ports", {}).items())) or \
        f"<tr><td colspan={4 + len(keys)}>no serial ports configured</td></tr>"
    outbox = status.get("outbox", {})
    influx = status.get("influx") or {}
    body = f"""<h1>Gateway</h1>
<table id="rates"><tr><th>Ingest</th><td><span data-live="messages_per_second">{rates.get('messages_per_second', 0):.0f}
</span> messages/s, <span data-live="samples_per_second">{rates.get('samples_per_second', 0):.0f}</span> samples/s
</td></tr><tr><th>Rule pass</th><td><span data-live="rule_pass_ms">{status.get('rule_pass_ms', 0)}</span> ms</td></tr>
<tr><th>Outbox</th><td><span data-live="outbox_queued">{outbox.get('queued', 0)}</span> queued,
{outbox.get('sending', 0)} sending, {outbox.get('delivered', 0)} delivered, {outbox.get('dead', 0)} dead
{_auth_refused(str(status.get('upstream_auth_refused') or ''))}</td></tr>
<tr><th>MQTT</th><td>{'connected' if status.get('mqtt_connected') else 'not connected'}
to {esc(str(status.get('broker_url', '')))}{' (embedded)' if status.get('embedded_broker') else ''}
as {esc(str(status.get('mqtt_client_id', '')))}</td></tr>
{_partition(status.get('partition'))}
<tr><th>Broker link</th><td id="broker-link">{_broker_link(status.get('broker') or {})}</td></tr>
<tr><th>History</th><td>{status.get('history', {}).get('rows_written', 0)} minute rows written, last flush
{status.get('history', {}).get('last_flush_ms', 0)} ms</td></tr>
<tr><th>InfluxDB</th><td>{'off' if not influx else ', '.join(f'{k} {v}' for k, v in influx.items())}</td></tr>
</table>
<h2>Dropped input by reason</h2><table id="drops"><tr><th>Reason</th><th>Count</th></tr>{drops}</table>
<h2>Serial ports</h2><div class="scroll"><table id="serial"><tr><th>Appliance</th><th>Port</th><th>Dialect</th>
<th>State</th>{''.join(f'<th>{k.replace("_", " ")}</th>' for k in keys)}</tr>{ports}</table></div>"""
    return page("Gateway", body)
