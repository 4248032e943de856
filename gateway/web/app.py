"""The web console (aiohttp): pages for appliances, one appliance, tickets and the gateway; the JSON API under
/api/ that the pages use (docs/web-api.yaml, also served at /api/openapi.yaml); live updates by server-sent
events; Prometheus metrics at /metrics. Access control and the access log are in `access`."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import orjson
from aiohttp import web

from gateway.clock import Clock, SystemClock
from gateway.config import SHIPPED_ROOT
from gateway.engine.profiles import Profile
from gateway.ingest.registry import DeviceRegistry
from gateway.service.timeline import STEP_TITLES, ServiceDesk
from gateway.store.db import Database
from gateway.store.history import History
from gateway.store.readers import Readers
from gateway.store.window import WindowStore
from gateway.web import pages
from gateway.web.access import ACCESS_KEY, ROLE_KEY, Access, access_control, security_headers
from gateway.web.charts import Threshold
from gateway.web.device_charts import (
    RANGES,
    breaks,
    device_charts,
    first_data,
    ordered_metrics,
    resolve_span,
    rule_limits,
)
from gateway.web.errors import json_errors
from gateway.web.metrics import prometheus_text
from gateway.web.service_routes import add_service_routes
from gateway.web.units import both_names

StatusSource = Callable[[], dict[str, Any]]
T = TypeVar("T")
STREAM_SECONDS = 2.0
HISTORY_POINTS = 300


@dataclass
class WebContext:
    """What the console reads; it never writes telemetry."""

    registry: DeviceRegistry
    db: Database
    status: StatusSource
    access: Access
    profiles: dict[str, Profile]
    store: WindowStore
    history: History | None = None
    desk: ServiceDesk | None = None
    webhook_secret: str = ""
    seal_key: bytes | None = None
    readers: Readers | None = None  # read-only connections off the event loop; None: queries use `db`
    clock: Clock = field(default_factory=SystemClock)  # the gateway's: "now" on the pages is the gateway's now

    async def query(self, fn: Callable[[Database], T]) -> T:
        """A read-only query, on a worker thread with its own connection where the context has readers."""
        if self.readers is None:
            return fn(self.db)
        return await self.readers.run(fn)

    async def off_loop(self, fn: Callable[[], T]) -> T:
        """Work that reads SQLite or copies arrays (charts, history), on a worker thread."""
        return await asyncio.to_thread(fn) if self.readers is not None else fn()


def create_app(context: WebContext) -> web.Application:
    app = web.Application(middlewares=[json_errors, access_control])
    app.on_response_prepare.append(security_headers)
    app[ACCESS_KEY] = context.access
    if context.desk is not None:
        add_service_routes(app, context.db, context.desk, context.webhook_secret, context.access, context.seal_key,
                           context.history, context.profiles)
    rates = RateMeter(context.status)
    routes = web.RouteTableDef()

    @routes.get("/")
    async def index(request: web.Request) -> web.Response:
        filters = {k: request.query.get(k, "") for k in ("type", "state", "q")}
        offset, limit = page_of(request, PAGE_DEVICES)
        open_tickets = await context.query(lambda db: db.tickets(OPEN_TICKETS_SHOWN, 0, "open"))
        counts = await context.query(lambda db: db.open_counts())
        matching = _devices(context, filters, counts)
        matching.sort(key=lambda d: d["open_incidents"] == 0)  # faulty appliances first (the sort is stable)
        faulty = [d for d, (incidents, _) in sorted(counts.items()) if incidents]
        return _html(pages.devices_page(matching[offset:offset + limit], open_tickets, context.status(), filters,
                                        sorted(context.profiles), pages.Page(offset, limit, len(matching)),
                                        faulty, context.clock.now()))

    @routes.get("/tickets")
    async def tickets_page(request: web.Request) -> web.Response:
        state = request.query.get("state", "open")
        if state not in ("", "open", *STEP_TITLES):
            raise web.HTTPBadRequest(text=f"state is one of open, {', '.join(STEP_TITLES)} (or empty for all)")
        offset, limit = page_of(request, PAGE_TICKETS)
        found, total, states = await context.query(
            lambda db: (db.tickets(limit, offset, state), db.ticket_count(state), db.ticket_states()))
        return _html(pages.tickets_page(found, states, state, pages.Page(offset, limit, total), context.clock.now()))

    @routes.get("/api/devices")
    async def devices(request: web.Request) -> web.Response:
        offset, limit = page_of(request, PAGE_DEVICES)
        counts = await context.query(lambda db: db.open_counts())
        matching = _devices(context, {k: request.query.get(k, "") for k in ("type", "state", "q")}, counts)
        return web.json_response(matching[offset:offset + limit], headers={"X-Total-Count": str(len(matching))})

    @routes.get("/api/devices/{device_id}")
    async def device(request: web.Request) -> web.Response:
        found = _device(context, request.match_info["device_id"])
        since = context.clock.now() - 30 * 86400
        incidents, steps = await context.query(lambda db: db.device_marks(found["device_id"], since))
        return web.json_response({**found, "latest": _latest(context, found["device_id"]), "incidents": incidents,
                                  "steps": steps})

    @routes.get("/api/devices/{device_id}/history")
    async def history(request: web.Request) -> web.Response:
        found = _device(context, request.match_info["device_id"])
        try:
            end = float(request.query.get("to", context.clock.now()))
            start = float(request.query.get("from", end - 3600))
            points = int(request.query.get("points", HISTORY_POINTS))
        except ValueError:
            raise web.HTTPBadRequest(text="from and to are unix seconds, points a whole number") from None
        if not (math.isfinite(start) and math.isfinite(end) and start < end) or not 1 <= points <= 5000:
            raise web.HTTPBadRequest(text="need from < to and 1 <= points <= 5000")
        profile = context.profiles.get(found["type"] or "")
        names = request.query.get("metrics", "")
        metrics = names.split(",") if names else [m.name for m in profile.metrics] if profile else []
        if context.history is None:
            raise web.HTTPServiceUnavailable(text="history is turned off (history.enabled = false)")
        history = context.history
        series = await context.off_loop(lambda: history.query(found["device_id"], metrics, start, end, points))
        return web.json_response({"device_id": found["device_id"], "from": start, "to": end, "series": series})

    async def charts_of(found: dict[str, Any], span_name: str) -> tuple[str, str, list[dict[str, Any]],
                                                                         dict[str, list[Threshold]]]:
        """(charts, the span drawn, the device's incidents, the open incidents' limits per metric)."""
        now = context.clock.now()
        device_id = found["device_id"]
        profile = context.profiles.get(found["type"] or "")
        history = context.history
        marks = await context.query(lambda db: db.device_marks(device_id, now - 30 * 86400))
        incidents = marks[0]  # a chart draws the marks within its span
        open_tickets = {i["ticket_id"] for i in incidents if i["state"] == "firing" and i["ticket_id"]}
        payloads = await context.query(lambda db: [p for t in sorted(open_tickets)
                                                   if (p := db.ticket_payload(t)) is not None])
        limits = rule_limits(payloads)
        if profile is None or history is None:
            return "<p>No charts: unknown appliance type or history turned off.</p>", span_name, incidents, limits
        first = await context.off_loop(lambda: first_data(history, device_id, profile, now)) \
            if span_name not in RANGES else None
        span = resolve_span(span_name, now, first, incidents)
        charts = await context.off_loop(lambda: device_charts(history, profile, device_id, span, marks, limits))
        return charts, span.name, incidents, limits

    @routes.get("/devices/{device_id}")
    async def device_page(request: web.Request) -> web.Response:
        found = _device(context, request.match_info["device_id"])
        charts, span, incidents, limits = await charts_of(found, request.query.get("range", "fit"))
        base = f"/devices/{found['device_id']}"
        return _html(pages.device_page(found, _latest(context, found["device_id"], limits), charts, span,
                                       incidents, base, context.clock.now()))

    @routes.get("/devices/{device_id}/charts")
    async def device_charts_part(request: web.Request) -> web.Response:
        found = _device(context, request.match_info["device_id"])
        charts, _, _, _ = await charts_of(found, request.query.get("range", "fit"))
        return _html(charts)

    @routes.get("/gateway")
    async def gateway_page(request: web.Request) -> web.Response:
        return _html(pages.gateway_page(context.status(), rates.sample()))

    @routes.get("/api/tickets")
    async def tickets(request: web.Request) -> web.Response:
        offset, limit = page_of(request, PAGE_TICKETS)
        return web.json_response(await context.query(lambda db: db.tickets(limit, offset)))

    @routes.get("/api/status")
    async def gateway_status(request: web.Request) -> web.Response:
        return web.json_response({**context.status(), "rates": rates.sample()})

    @routes.get("/api/stream")
    async def stream(request: web.Request) -> web.StreamResponse:
        """Server-sent events: `status` every STREAM_SECONDS (a technician gets only the clock)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        admin = request[ROLE_KEY].name == "admin"
        with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
            while True:
                data: dict[str, Any] = {"time": context.clock.now()}
                if admin:
                    status = context.status()
                    data.update({k: v for k, v in status.items() if isinstance(v, int | float | bool)})
                    data.update(rates.sample())
                    data["outbox_queued"] = status.get("outbox", {}).get("queued", 0)
                await response.write(b"event: status\ndata: " + orjson.dumps(data) + b"\n\n")
                await asyncio.sleep(STREAM_SECONDS)
        return response

    @routes.get("/metrics")
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=prometheus_text(context.status()), content_type="text/plain", charset="utf-8")

    @routes.get("/api/openapi.yaml")
    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=(SHIPPED_ROOT / "docs" / "web-api.yaml").read_text(encoding="utf-8"),
                            content_type="application/yaml")

    app.add_routes(routes)
    return app


class RateMeter:
    """Messages and samples per second between two looks at the status counters."""

    def __init__(self, status: StatusSource) -> None:
        self.status = status
        self._last: tuple[float, int, int] | None = None
        self._rates = {"messages_per_second": 0.0, "samples_per_second": 0.0}

    def sample(self) -> dict[str, float]:
        now, status = time.monotonic(), self.status()
        messages, samples = int(status.get("messages", 0)), int(status.get("samples", 0))
        if self._last is not None and now - self._last[0] >= 1.0:
            span = now - self._last[0]
            self._rates = {"messages_per_second": round((messages - self._last[1]) / span, 1),
                           "samples_per_second": round((samples - self._last[2]) / span, 1)}
        if self._last is None or now - self._last[0] >= 1.0:
            self._last = (now, messages, samples)
        return dict(self._rates)


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", charset="utf-8")


PAGE_DEVICES = 200  # rows of a list page (and of the API without ?limit): 20,000 appliances made / 8.6 MB
PAGE_TICKETS = 100
OPEN_TICKETS_SHOWN = 20  # on the appliance list; /tickets has them all
MAX_PAGE = 1000
MAX_OFFSET = 10**9  # SQLite takes 64-bit integers only: a 23-digit offset was an OverflowError


def page_of(request: web.Request, default: int) -> tuple[int, int]:
    """(offset, limit) from ?offset=&limit=; 400 for anything but whole numbers in range."""
    try:
        offset = int(request.query.get("offset", 0))
        limit = int(request.query.get("limit", default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"offset and limit are whole numbers (limit 1-{MAX_PAGE})") from None
    if not 0 <= offset <= MAX_OFFSET or not 1 <= limit <= MAX_PAGE:
        raise web.HTTPBadRequest(text=f"need 0 <= offset <= {MAX_OFFSET:,} and 1 <= limit <= {MAX_PAGE}")
    return offset, limit


def _devices(context: WebContext, filters: dict[str, str],
             counts: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    out = []
    for d in sorted(context.registry.devices.values(), key=lambda d: d.device_id):
        meta = d.meta
        incidents, tickets = counts.get(d.device_id, (0, 0))
        row = {"device_id": d.device_id, "type": meta.appliance_type if meta else None,
               "brand": meta.brand if meta else None, "model": meta.model if meta else None,
               "online": d.online, "last_seen": d.last_seen, "open_incidents": incidents, "open_tickets": tickets}
        if filters.get("type") and row["type"] != filters["type"]:
            continue
        state = filters.get("state")
        if (state == "online" and not d.online) or (state == "offline" and d.online) or \
                (state == "faulty" and not incidents):
            continue
        text = filters.get("q", "").lower()
        if text and not any(text in str(row[k] or "").lower() for k in ("device_id", "brand", "model")):
            continue
        out.append(row)
    return out


def _device(context: WebContext, device_id: str) -> dict[str, Any]:
    device = context.registry.get(device_id)
    if device is None:
        raise web.HTTPNotFound(text=f"no appliance {device_id!r} has reported to this gateway")
    meta = device.meta
    return {"device_id": device_id, "type": meta.appliance_type if meta else None,
            "brand": meta.brand if meta else None, "model": meta.model if meta else None,
            "serial": meta.serial if meta else None, "firmware": meta.firmware if meta else None,
            "online": device.online, "last_seen": device.last_seen}


def _latest(context: WebContext, device_id: str,
            limits: dict[str, list[Threshold]] | None = None) -> list[dict[str, Any]]:
    """The latest value of every metric, the ones an open incident's rule compared first, each marked where it
    breaks that rule's limit or lies outside the sensor's valid range."""
    window = context.store.window_of(device_id)
    profile = context.profiles.get(window.appliance) if window else None
    if window is None or profile is None:
        return []
    row = window.rows[device_id]
    limits = limits or {}
    specs = {m.name: m for m in profile.metrics}
    out = []
    for name in ordered_metrics(profile, limits):
        spec = specs[name]
        column = window.metric_index[spec.name]
        value, ts = float(window.latest[row, column]), float(window.latest_metric_ts[row, column])
        known = not np.isnan(value)
        broken = breaks(value if known else None, limits.get(name, []))
        out.append({"metric": spec.name, "label": both_names(profile, name), "value": value if known else None,
                    "states": {f"{k:g}": v for k, v in spec.states},
                    "unit": spec.unit, "low": spec.low, "high": spec.high, "ts": ts if known else None,
                    "in_range": not known or spec.low <= value <= spec.high,
                    "breaks": None if broken is None else {"op": broken.op, "limit": broken.value,
                                                           "rule": broken.rule}})
    return out
