"""Service-timeline routes: the platform's signed webhook, the ticket page, visit-code entry and confirmation.

JSON under /api/ for programs; /tickets/{id} is the page the home owner and technician use (plain HTML
forms, so it works without JavaScript on any phone).
"""

from __future__ import annotations

import html
import logging
import time
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from gateway.service import signing
from gateway.service.timeline import ServiceDesk, ServiceError
from gateway.store.db import Database, StorageError

log = logging.getLogger("gateway.web")
MAX_WEBHOOK_BYTES = 64 * 1024


def add_service_routes(app: web.Application, db: Database, desk: ServiceDesk, webhook_secret: str) -> None:
    routes = web.RouteTableDef()

    @routes.post("/api/platform/events")
    async def platform_event(request: web.Request) -> web.Response:
        if not webhook_secret:
            return _error("webhooks are off here (service.webhook_secret is empty); the gateway polls", 403)
        body = await request.content.read(MAX_WEBHOOK_BYTES + 1)
        if len(body) > MAX_WEBHOOK_BYTES:
            return _error(f"event larger than {MAX_WEBHOOK_BYTES} bytes", 413)
        try:
            signing.verify(webhook_secret, body, request.headers.get(signing.HEADER), time.time())
        except signing.SignatureError as exc:
            log.warning("platform webhook refused: %s", exc)
            return _error(str(exc), 401)
        try:
            recorded = desk.apply_platform_event(orjson.loads(body), "webhook")
        except orjson.JSONDecodeError as exc:
            return _error(f"body is not JSON: {exc}", 400)
        except ServiceError as exc:
            log.warning("platform webhook event rejected: %s", exc)
            return _error(str(exc), exc.status)
        except StorageError as exc:
            return _error(f"gateway storage unavailable, send again later: {exc}", 503)
        return web.json_response({"recorded": recorded})

    @routes.get("/api/tickets/{ticket_id:\\d+}")
    async def ticket(request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["ticket_id"])
        payload = db.ticket_payload(ticket_id)
        if payload is None:
            return _error("no such ticket", 404)
        return web.json_response({"ticket": payload, "timeline": desk.timeline(ticket_id)})

    @routes.post("/api/tickets/{ticket_id:\\d+}/visit-code")
    async def visit_code(request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            technician = desk.enter_visit_code(int(request.match_info["ticket_id"]), str(body.get("code", "")))
        except ServiceError as exc:
            return _error(str(exc), exc.status)
        return web.json_response({"verified": True, "technician": technician})

    @routes.post("/api/tickets/{ticket_id:\\d+}/confirm")
    async def confirm(request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            desk.confirm(int(request.match_info["ticket_id"]), body.get("rating"), body.get("comment", ""))
        except ServiceError as exc:
            return _error(str(exc), exc.status)
        return web.json_response({"confirmed": True})

    @routes.get("/tickets/{ticket_id:\\d+}")
    async def ticket_page(request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["ticket_id"])
        payload = db.ticket_payload(ticket_id)
        if payload is None:
            raise web.HTTPNotFound(text="no such ticket")
        return web.Response(text=_ticket_html(ticket_id, payload, desk.timeline(ticket_id),
                                              request.query.get("msg", "")), content_type="text/html")

    @routes.post("/tickets/{ticket_id:\\d+}/visit-code")
    async def visit_code_form(request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["ticket_id"])
        form = await request.post()
        try:
            technician = desk.enter_visit_code(ticket_id, str(form.get("code", "")))
            message = f"Verified: {technician['name']} ({technician['employee_id']})"
        except ServiceError as exc:
            message = str(exc)
        raise web.HTTPSeeOther(f"/tickets/{ticket_id}?msg={quote(message)}")

    @routes.post("/tickets/{ticket_id:\\d+}/confirm")
    async def confirm_form(request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["ticket_id"])
        form = await request.post()
        try:
            rating = int(str(form.get("rating", "0")))
            desk.confirm(ticket_id, rating, str(form.get("comment", "")))
            message = "Thank you: the repair is confirmed"
        except (ServiceError, ValueError) as exc:
            message = str(exc)
        raise web.HTTPSeeOther(f"/tickets/{ticket_id}?msg={quote(message)}")

    app.add_routes(routes)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _ticket_html(ticket_id: int, payload: dict[str, Any], timeline: dict[str, Any], message: str) -> str:
    esc = html.escape
    fault = payload["fault"]
    causes = "".join(f"<li>{esc(c['cause'])} ({c.get('likelihood', '')}): {esc(str(c.get('reason', '')))}</li>"
                     for c in payload.get("probable_causes", []))
    price = payload.get("price") or {}
    items = "".join(f"<li>{esc(i['title']['en'])} / {esc(i['title']['zh'])}: {i['band'][0]:g}-{i['band'][1]:g} "
                    f"{esc(price.get('currency', ''))}</li>" for i in price.get("items", []))
    steps = "".join(
        f"<li><b>{esc(s['title']['en'])}</b> / {esc(s['title']['zh'])}<br><small>"
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(s['at']))} by {esc(s['actor'])} ({esc(s['source'])})"
        f"</small>{_step_extra(s)}</li>" for s in timeline["steps"])
    flags = "".join(f"<li class='{'ok' if f['explained'] else 'warn'}'>{esc(f['problem'])}</li>"
                    for f in timeline["charge_flags"])
    technician = timeline.get("technician")
    visit = ""
    if technician and not (timeline["visit_code"] or {}).get("verified"):
        visit = (f"<form method='post' action='/tickets/{ticket_id}/visit-code'><label>Visit code from "
                 f"{esc(technician['name'])} ({esc(technician['employee_id'])}): <input name='code' "
                 "inputmode='numeric' autocomplete='one-time-code' required></label> <button>Verify</button></form>")
    confirm = ""
    if any(s["step"] == "repaired" for s in timeline["steps"]) and timeline["state"] != "confirmed":
        confirm = (f"<form method='post' action='/tickets/{ticket_id}/confirm'><label>Rating <select name='rating'>"
                   + "".join(f"<option>{n}</option>" for n in (5, 4, 3, 2, 1))
                   + "</select></label> <input name='comment' placeholder='comment'> <button>Confirm repair</button>"
                   "</form>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ticket {ticket_id}</title><style>body{{font-family:system-ui,sans-serif;margin:1rem;max-width:50rem}}
.warn{{color:#a00}} .ok{{color:#555}} .msg{{background:#eef;padding:.5rem}} li{{margin:.3rem 0}}</style></head><body>
<p><a href="/">All appliances</a></p>
<h1>{esc(fault['title']['en'])}<br>{esc(fault['title']['zh'])}</h1>
{f"<p class='msg' id='message'>{esc(message)}</p>" if message else ""}
<p>{esc(payload['appliance']['brand'])} {esc(payload['appliance']['model'])} ({esc(payload['appliance']['device_id'])}),
code {esc(fault['code'])}, severity {esc(fault['severity'])}. State: <b id="state">{esc(timeline['state'])}</b></p>
<h2>Probable causes</h2><ol id="causes">{causes}</ol>
<h2>Standard price</h2><ul id="price">{items}</ul>
{f"<h2>Charges that differ from the diagnosis</h2><ul id='flags'>{flags}</ul>" if flags else ""}
{visit}{confirm}
<h2>Service timeline</h2><ol id="timeline">{steps}</ol></body></html>"""


def _step_extra(step: dict[str, Any]) -> str:
    esc, detail = html.escape, step["detail"]
    if step["step"] in ("technician_assigned", "technician_verified") and "technician" in detail:
        who = detail["technician"]
        return (f"<br>{esc(who['name'])}, employee {esc(who['employee_id'])}, photo sha256 "
                f"{esc(who['photo_sha256'][:16])}…")
    if step["step"] == "repaired":
        return "<br>" + esc(", ".join(f"{i['id']} {i['price']:g}" for i in detail.get("items", [])))
    if step["step"] == "confirmed":
        return f"<br>rating {detail.get('rating')} {esc(detail.get('comment', ''))}"
    if step["step"] == "accepted":
        return f"<br>as {esc(detail.get('platform_ticket_id', ''))}"
    return ""
