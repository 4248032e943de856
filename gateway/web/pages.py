"""HTML of the console's pages. Plain HTML and CSS that work on a phone; a few lines of script subscribe to the
server-sent events for live numbers and charts. Pure functions of the data the routes gather."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from gateway.service.timeline import STEP_TITLES
from gateway.web.charts import CHART_CSS, TAP_SCRIPT
from gateway.web.units import unit_text, with_unit

esc = html.escape

CSS = """
body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:0;color:#222}
header{background:#263238;color:#fff;padding:.5rem 1rem;display:flex;gap:1rem;flex-wrap:wrap;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}main{padding:1rem;max-width:60rem}
h1,td{overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;margin-bottom:1.5rem}.scroll{overflow-x:auto}
td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.on{color:#2e7d32}.off{color:#c62828}.warn{color:#c62828}.ok{color:#555}.stat{color:#555}
.msg{background:#eef;padding:.5rem}li{margin:.3rem 0}form.filters{display:flex;gap:.5rem;flex-wrap:wrap;margin:.5rem 0}
.ranges a{margin-right:.8rem}.valid-ok{color:#2e7d32}.valid-bad{color:#c62828;font-weight:600}
.banner{background:#ffebee;border-left:.3rem solid #c62828;padding:.5rem .8rem;margin:.5rem 0}
tr.faulty td:first-child{border-left:.3rem solid #c62828}code{overflow-wrap:anywhere}
@media (max-width:40rem){table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:auto}
table.cards tr:first-child{display:none}table.cards tr{border:1px solid #ddd;border-radius:.4rem;margin:.5rem 0;
padding:.3rem}table.cards td{border:0;padding:.15rem .3rem}
table.cards td[data-label]::before{content:attr(data-label) ": ";color:#555}}
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
    links = ('<a href="/">Appliances</a><a href="/tickets">Tickets</a><a href="/gateway">Gateway</a>' if nav else "")
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


# Keeps "last seen" moving between page loads: each cell carries its epoch, the page the server's clock.
AGO_SCRIPT = """<script>
(function(){
  var table=document.querySelector('[data-now]'); if(!table){return;}
  var skew=parseFloat(table.getAttribute('data-now'))-Date.now()/1000;
  function ago(s){s=Math.max(0,Math.floor(s));return s<120?s+' s ago':s<7200?Math.floor(s/60)+' min ago':
    Math.floor(s/3600)+' h ago';}
  function tick(){var now=Date.now()/1000+skew;
    document.querySelectorAll('[data-seen]').forEach(function(el){el.textContent=ago(now-parseFloat(
      el.getAttribute('data-seen')));});}
  setInterval(tick,5000);
})();
</script>"""


def devices_page(devices: list[dict[str, Any]], tickets: list[dict[str, Any]], status: dict[str, Any],
                 filters: dict[str, str], types: list[str], paging: Page | None = None,
                 faulty: list[str] | None = None, now: float | None = None) -> str:
    """Appliances (faulty ones first, with a banner naming them) and the tickets not yet confirmed; on a phone
    each row is a card, so nothing needs a sideways scroll."""
    rows = "".join(
        f"<tr data-device='{esc(d['device_id'])}'{' class=faulty' if d['open_incidents'] else ''}>"
        f"<td data-label='Appliance'><a href='/devices/{esc(d['device_id'])}'>{esc(d['device_id'])}</a></td>"
        f"<td data-label='Type'>{esc(d['type'] or '?')}</td>"
        f"<td data-label='Brand / model'>{esc((d['brand'] or '') + ' ' + (d['model'] or ''))}</td>"
        f"<td data-label='State' class='{_state_class(d['online'])}'>{_state(d['online'])}</td>"
        f"<td data-label='Last seen'{_seen(d['last_seen'])}>{ago(d['last_seen'], now)}</td>"
        f"<td data-label='Open incidents' class='{'warn' if d['open_incidents'] else ''}'>{d['open_incidents']}</td>"
        f"<td data-label='Open tickets'>{d['open_tickets']}</td></tr>"
        for d in devices) or "<tr><td colspan=7>No appliance matches.</td></tr>"
    ticket_rows = "".join(_ticket_row(t, now) for t in tickets) or "<tr><td colspan=6>No open tickets.</td></tr>"
    banner = ""
    if faulty:
        names = ", ".join(f"<a href='/devices/{esc(d)}'>{esc(d)}</a>" for d in faulty[:10])
        more = f" and {len(faulty) - 10} more" if len(faulty) > 10 else ""
        banner = (f"<p class='banner' id='faulty'><b>{len(faulty)} appliance{'s' if len(faulty) > 1 else ''} "
                  f"with a fault now</b> / {len(faulty)} 台设备有故障: {names}{more}</p>")
    type_options = "".join(f"<option{' selected' if filters.get('type') == t else ''}>{esc(t)}</option>"
                           for t in types)
    state_options = "".join(f"<option{' selected' if filters.get('state') == s else ''}>{s}</option>"
                            for s in ("online", "offline", "faulty"))
    body = f"""<h1>Appliances</h1>{banner}
<p class="stat"><span data-live="devices">{status.get('devices', 0)}</span> appliances,
<span data-live="online">{status.get('online', 0)}</span> online, <span data-live="messages">{status.get('messages', 0)}
</span> messages, <span data-live="open_incidents">{status.get('open_incidents', 0)}</span> open incidents,
<span data-live="tickets_delivered">{status.get('tickets_delivered', 0)}</span> tickets delivered,
<span data-live="dropped_total">{status.get('dropped_total', 0)}</span> inputs dropped</p>
<form class="filters" method="get"><select name="type"><option value="">all types</option>{type_options}</select>
<select name="state"><option value="">any state</option>{state_options}</select>
<input name="q" value="{esc(filters.get('q', ''))}" placeholder="id, brand or model"><button>Filter</button></form>
<div class="scroll"><table id="devices" class="cards" data-now="{now or time.time():.0f}"><tr><th>Appliance</th>
<th>Type</th><th>Brand / model</th><th>State</th><th>Last seen</th><th>Open incidents</th><th>Open tickets</th></tr>
{rows}</table></div>
{paging.links(filters) if paging else ""}
<h2>Open tickets</h2><p class="stat">Every ticket until its customer confirms the repair.
<a href="/tickets">All tickets</a></p>
<div class="scroll">{_ticket_table(ticket_rows)}</div>{AGO_SCRIPT}"""
    return page("Appliances", body)


def tickets_page(tickets: list[dict[str, Any]], states: dict[str, int], state: str, paging: Page,
                 now: float | None = None) -> str:
    """Every ticket, newest first, filtered by its service state ("open": until the customer confirms)."""
    options = [("open", "open (not yet confirmed)", sum(n for s, n in states.items() if s != "confirmed")),
               ("", "all", sum(states.values()))] + \
        [(s, f"{STEP_TITLES[s][0]} / {STEP_TITLES[s][1]}", states[s]) for s in STEP_TITLES if s in states]
    select = "".join(f"<option value='{esc(value)}'{' selected' if value == state else ''}>{esc(text)} ({count})"
                     f"</option>" for value, text, count in options)
    rows = "".join(_ticket_row(t, now) for t in tickets) or "<tr><td colspan=6>No ticket in this state.</td></tr>"
    body = f"""<h1>Tickets / 工单</h1>
<form class="filters" method="get"><label>State <select name="state">{select}</select></label>
<button>Show</button></form>
<div class="scroll">{_ticket_table(rows)}</div>{paging.links({"state": state})}"""
    return page("Tickets", body, live=False)


def state_words(step: str) -> str:
    """A service state as people say it, in English and Chinese (`technician_assigned` is a database word)."""
    en, zh = STEP_TITLES.get(step, (step.replace("_", " "), ""))
    return f"{en} / {zh}" if zh else en


def _ticket_table(rows: str) -> str:
    return (f"<table id='tickets' class='cards'><tr><th>#</th><th>Appliance</th><th>Fault</th><th>State</th>"
            f"<th>Most likely cause</th><th>Delivery</th></tr>{rows}</table>")


def _ticket_row(ticket: dict[str, Any], now: float | None) -> str:
    payload = ticket["payload"]
    fault = payload["fault"]
    causes = payload.get("probable_causes") or [{}]
    when = ticket.get("service_state_at")
    return (f"<tr data-ticket='{ticket['ticket_id']}' data-state='{esc(ticket.get('service_state', ''))}'>"
            f"<td data-label='Ticket'><a href='/tickets/{ticket['ticket_id']}'>{ticket['ticket_id']}</a></td>"
            f"<td data-label='Appliance'>{esc(payload['appliance']['device_id'])}</td>"
            f"<td data-label='Fault'>{esc(fault['title']['en'])} / {esc(fault['title']['zh'])} "
            f"<small>{esc(fault['code'])}, {esc(fault['severity'])}</small></td>"
            f"<td data-label='State'>{esc(state_words(ticket.get('service_state', '')))}"
            f"{f' <small>{ago(when, now)}</small>' if when else ''}</td>"
            f"<td data-label='Most likely cause'>{esc(str(causes[0].get('cause', '')))}</td>"
            f"<td data-label='Delivery'>{esc(ticket['delivery'])}</td></tr>")


def _seen(ts: float | None) -> str:
    return "" if ts is None else f" data-seen='{ts:.0f}'"


SPAN_LABELS = (("fit", "fit the data"), ("15m", "15\u00a0min"), ("1h", "1\u00a0h"), ("24h", "24\u00a0h"),
               ("30d", "30\u00a0d"), ("incident", "around the incident"))


def device_page(device: dict[str, Any], latest: list[dict[str, Any]], charts: str, span: str,
                incidents: list[dict[str, Any]], base: str, now: float | None = None) -> str:
    """One appliance: its incidents, its charts over a span that fits the data (the metrics an open incident's
    rule compared first, with the rule's limit), and its latest values, red where one breaks a rule."""
    latest_rows = "".join(_latest_row(m, now) for m in latest if m["value"] is not None)
    unreported = [m for m in latest if m["value"] is None]
    never = (f"<details id='unreported'><summary>{len(unreported)} metric(s) of the profile this appliance has not "
             f"reported</summary><p>{esc(', '.join(str(m.get('label') or m['metric']) for m in unreported))}</p>"
             "</details>" if unreported else "")
    incident_rows = "".join(
        f"<li class='{'warn' if i['state'] == 'firing' else ''}'>{esc(i['rule_id'].replace('_', ' '))}: since "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(i['onset_ts']))} "
        f"({'firing now' if i['state'] == 'firing' else 'resolved'})"
        + (f" <a href='/tickets/{i['ticket_id']}'>ticket {i['ticket_id']}</a>" if i["ticket_id"] else "") + "</li>"
        for i in incidents) or "<li>none</li>"
    ranges = "".join(f"<a href='{base}?range={name}'{' aria-current=page' if name == span else ''}>"
                     f"{'<b>' + esc(label) + '</b>' if name == span else esc(label)}</a>"
                     for name, label in SPAN_LABELS)
    body = f"""<h1>{esc(device['device_id'])}</h1>
<p>{esc(device['type'] or '?')} · {esc(device['brand'] or '')} {esc(device['model'] or '')} · serial
{esc(device['serial'] or '?')} · firmware {esc(device['firmware'] or '?')} ·
<span class="{_state_class(device['online'])}">{_state(device['online'])}</span>, last seen
{ago(device['last_seen'], now)}</p>
<h2>Incidents</h2><ul id="incidents">{incident_rows}</ul>
<h2>Charts</h2><p class="ranges">{ranges}</p>
<p class="stat">Red dashed line: a rule's limit, and the line in red where it breaks it. Grey: outside the
sensor's valid range. Numbered markers: incidents (red) and service steps (purple), named under each chart. Tap a
chart to read a value.</p>
<div id="charts" class="charts" data-src="{base}/charts?range={esc(span)}">{charts}</div>
<h2>Latest values</h2><table id="latest" class="cards"><tr><th>Metric</th><th>Value</th>
<th>Valid range</th><th>Updated</th></tr>{latest_rows}</table>{never}
<script>
var lastRefresh=Date.now();
window.refreshLive=function(){{
  var now=Date.now(); if(now-lastRefresh<10000){{return;}} lastRefresh=now;
  var box=document.getElementById('charts');
  fetch(box.getAttribute('data-src'),{{credentials:'same-origin'}}).then(function(r){{return r.ok?r.text():null;}})
    .then(function(t){{if(t){{box.innerHTML=t;}}}});
}};
</script>{TAP_SCRIPT}"""
    return page(device["device_id"], body)


def _latest_row(metric: dict[str, Any], now: float | None) -> str:
    unit = metric["unit"]
    broken = metric.get("breaks")
    if broken:
        verdict = (f"<span class='valid-bad'>breaks its rule: {esc(broken['op'])} "
                   f"{esc(with_unit(broken['limit'], unit))}</span>")
    elif not metric["in_range"]:
        verdict = "<span class='valid-bad'>outside the sensor's valid range</span>"
    else:
        verdict = ""
    value_class = "valid-bad" if broken or not metric["in_range"] else ""
    return (f"<tr data-metric='{esc(metric['metric'])}'{' class=faulty' if broken else ''}>"
            f"<td data-label='Metric'>{esc(metric.get('label') or metric['metric'])}</td>"
            f"<td data-label='Value' class='{value_class}'>{esc(_value_text(metric))} {verdict}</td>"
            f"<td data-label='Valid range'>{_number_text(metric['low'])} to {_number_text(metric['high'])} "
            f"{esc(unit_text(unit))}</td><td data-label='Updated'>{ago(metric['ts'], now)}</td></tr>")


def _value_text(metric: dict[str, Any]) -> str:
    """A value in its unit, or an enum's value by its name (`3 cool`)."""
    value, names = metric["value"], metric.get("states") or {}
    if value is not None and f"{value:g}" in names:
        return f"{value:g} {names[f'{value:g}']}"
    return with_unit(value, metric["unit"])


def _number_text(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"


def _state(online: bool | None) -> str:
    """None: the appliance never sent a status (no last will configured), so nobody knows."""
    return "online" if online else "offline" if online is False else "state unknown"


def _state_class(online: bool | None) -> str:
    return "on" if online else "off" if online is False else "stat"


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
        f"<tr><td data-label='Appliance'>{esc(name)}</td><td data-label='Port'>{esc(p['url'])}</td>"
        f"<td data-label='Dialect'>{esc(p['dialect'])}</td><td data-label='State'>{esc(p['state'])}</td>"
        + "".join(f"<td data-label='{k.replace('_', ' ')}'>{p.get(k, 0)}</td>" for k in keys) + "</tr>"
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
<h2>Serial ports</h2><div class="scroll"><table id="serial" class="cards"><tr><th>Appliance</th><th>Port</th>
<th>Dialect</th><th>State</th>{''.join(f'<th>{k.replace("_", " ")}</th>' for k in keys)}</tr>{ports}</table></div>"""
    return page("Gateway", body)
