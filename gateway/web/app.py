"""aiohttp application: `/` lists devices and open tickets; `/api/*` serves the same facts as JSON."""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.ingest.registry import DeviceRegistry
from gateway.service.timeline import ServiceDesk
from gateway.store.db import Database
from gateway.web.service_routes import add_service_routes

StatusSource = Callable[[], dict[str, Any]]


def create_app(registry: DeviceRegistry, db: Database, status: StatusSource, desk: ServiceDesk | None = None,
               webhook_secret: str = "") -> web.Application:
    app = web.Application()
    if desk is not None:
        add_service_routes(app, db, desk, webhook_secret)
    routes = web.RouteTableDef()

    @routes.get("/")
    async def index(request: web.Request) -> web.Response:
        return web.Response(text=_index_html(_devices(registry), _open_tickets(db), status()),
                            content_type="text/html")

    @routes.get("/api/devices")
    async def devices(request: web.Request) -> web.Response:
        return web.json_response(_devices(registry))

    @routes.get("/api/tickets")
    async def tickets(request: web.Request) -> web.Response:
        return web.json_response(db.tickets())

    @routes.get("/api/status")
    async def gateway_status(request: web.Request) -> web.Response:
        return web.json_response(status())

    app.add_routes(routes)
    return app


def _devices(registry: DeviceRegistry) -> list[dict[str, Any]]:
    return [
        {"device_id": d.device_id, "type": d.meta.appliance_type if d.meta else None,
         "brand": d.meta.brand if d.meta else None, "model": d.meta.model if d.meta else None,
         "online": d.online, "last_seen": d.last_seen}
        for d in sorted(registry.devices.values(), key=lambda d: d.device_id)
    ]


def _open_tickets(db: Database) -> list[dict[str, Any]]:
    return [t for t in db.tickets() if t["incident_state"] == "firing"]


def _ago(ts: float | None) -> str:
    if ts is None:
        return "never"
    seconds = max(0, int(time.time() - ts))
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def _index_html(devices: list[dict[str, Any]], tickets: list[dict[str, Any]], status: dict[str, Any]) -> str:
    esc = html.escape
    device_rows = "".join(
        f"<tr><td>{esc(d['device_id'])}</td><td>{esc(d['type'] or '?')}</td>"
        f"<td>{esc((d['brand'] or '') + ' ' + (d['model'] or ''))}</td>"
        f"<td class='{'on' if d['online'] else 'off'}'>{'online' if d['online'] else 'offline'}</td>"
        f"<td>{_ago(d['last_seen'])}</td></tr>"
        for d in devices
    ) or "<tr><td colspan=5>No appliances have reported yet.</td></tr>"
    ticket_rows = "".join(
        f"<tr><td><a href='/tickets/{t['ticket_id']}'>{t['ticket_id']}</a></td>"
        f"<td>{esc(t['payload']['appliance']['device_id'])}</td>"
        f"<td>{esc(t['payload']['fault']['code'])}</td><td>{esc(t['payload']['fault']['title']['en'])}<br>"
        f"{esc(t['payload']['fault']['title']['zh'])}</td><td>{esc(t['payload']['fault']['severity'])}</td>"
        f"<td>{esc(t['payload']['probable_causes'][0]['cause'])}</td><td>{esc(t['delivery'])}</td></tr>"
        for t in tickets
    ) or "<tr><td colspan=7>No open tickets.</td></tr>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5"><title>Appliance gateway</title>
<style>body{{font-family:system-ui,sans-serif;margin:1rem;}}
table{{border-collapse:collapse;width:100%;margin-bottom:2rem}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left}} .on{{color:#070}} .off{{color:#a00}}
.stat{{color:#555}} .scroll{{overflow-x:auto}} td{{vertical-align:top}}</style></head><body>
<h1>Appliance gateway</h1>
<p class="stat">{_count(status.get('devices', 0), 'appliance')}, {_count(status.get('messages', 0), 'message')},
{_count(status.get('open_incidents', 0), 'open incident')},
{_count(status.get('tickets_delivered', 0), 'ticket')} delivered,
{_count(status.get('dropped_total', 0), 'input')} dropped</p>
<h2>Open tickets</h2>
<div class="scroll"><table id="tickets"><tr><th>#</th><th>Appliance</th><th>Code</th><th>Fault</th><th>Severity</th>
<th>Most likely cause</th><th>Delivery</th></tr>{ticket_rows}</table></div>
{_ports_html(status.get('serial_ports', {}))}
<h2>Appliances</h2>
<div class="scroll"><table id="devices"><tr><th>Device</th><th>Type</th><th>Brand / model</th><th>State</th>
<th>Last seen</th></tr>{device_rows}</table></div></body></html>"""


def _ports_html(ports: dict[str, dict[str, Any]]) -> str:
    if not ports:
        return ""
    esc = html.escape
    keys = ("frames", "bad_checksum", "bad_crc", "resyncs", "timeouts", "reconnects", "watchdog_resets")
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{esc(p['url'])}</td><td>{esc(p['dialect'])}</td><td>{esc(p['state'])}</td>"
        + "".join(f"<td>{p.get(k, 0)}</td>" for k in keys) + "</tr>"
        for name, p in sorted(ports.items())
    )
    head = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in keys)
    return (f"<h2>Serial ports</h2><div class='scroll'><table id='serial'><tr><th>Appliance</th><th>Port</th>"
            f"<th>Dialect</th><th>State</th>{head}</tr>{rows}</table></div>")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
