"""Service-timeline routes: the platform's signed webhook, the ticket page, visit-code entry and confirmation,
and the technician's ticket-scoped link.

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

from gateway.diagnosis.seal import verify
from gateway.engine.profiles import Profile
from gateway.service import signing
from gateway.service.timeline import ServiceDesk, ServiceError
from gateway.store.db import Database, StorageError
from gateway.store.history import History
from gateway.web import pages
from gateway.web.access import ROLE_KEY, TECHNICIAN_COOKIE, Access, Role
from gateway.web.charts import Marker, chart_svg

log = logging.getLogger("gateway.web")
MAX_WEBHOOK_BYTES = 64 * 1024


def add_service_routes(app: web.Application, db: Database, desk: ServiceDesk, webhook_secret: str,
                       access: Access, seal_key: bytes | None, history: History | None,
                       profiles: dict[str, Profile]) -> None:
    routes = web.RouteTableDef()

    @routes.get("/t/{link}")
    async def technician_landing(request: web.Request) -> web.Response:
        """A technician's link: remember it in a cookie and show the ticket."""
        role = access.technician(request.match_info["link"])
        if isinstance(role, str):
            return web.Response(status=403, content_type="text/html", text=pages.page(
                "403 Not allowed", f"<h1 id='status'>403 Not allowed</h1><p id='reason'>{html.escape(role)}</p>",
                live=False, nav=False))
        response = web.HTTPSeeOther(f"/tickets/{role.ticket_id}")
        response.set_cookie(TECHNICIAN_COOKIE, request.match_info["link"], httponly=True, samesite="Lax",
                            path="/")
        raise response

    @routes.get("/api/tickets/{ticket_id:\\d{1,18}}/technician-link")
    async def technician_link(request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["ticket_id"])
        if request[ROLE_KEY].name != "admin":
            return _error("only the owner hands out technician links", 403)
        if db.ticket_payload(ticket_id) is None:
            return _error("no such ticket", 404)
        link = access.technician_link(ticket_id)
        return web.json_response({"path": f"/t/{link}", "valid_days": access.link_days})

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

    @routes.get("/api/tickets/{ticket_id:\\d{1,18}}")
    async def ticket(request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["ticket_id"])
        payload = db.ticket_payload(ticket_id)
        if payload is None:
            return _error("no such ticket", 404)
        return web.json_response({"ticket": payload, "timeline": desk.timeline(ticket_id),
                                  "seal": _seal_check(payload, seal_key)})

    @routes.post("/api/tickets/{ticket_id:\\d{1,18}}/visit-code")
    async def visit_code(request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            technician = desk.enter_visit_code(int(request.match_info["ticket_id"]), str(body.get("code", "")))
        except ServiceError as exc:
            return _error(str(exc), exc.status)
        return web.json_response({"verified": True, "technician": technician})

    @routes.post("/api/tickets/{ticket_id:\\d{1,18}}/confirm")
    async def confirm(request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            desk.confirm(int(request.match_info["ticket_id"]), body.get("rating"), body.get("comment", ""))
        except ServiceError as exc:
            return _error(str(exc), exc.status)
        return web.json_response({"confirmed": True})

    @routes.get("/tickets/{ticket_id:\\d{1,18}}")
    async def ticket_page(request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["ticket_id"])
        payload = db.ticket_payload(ticket_id)
        if payload is None:
            raise web.HTTPNotFound(text="no such ticket")
        chart = _evidence_charts(payload, profiles)
        return web.Response(text=_ticket_html(ticket_id, payload, desk.timeline(ticket_id),
                                              FORM_OUTCOMES.get(request.query.get("msg", ""), ""), request[ROLE_KEY],
                                              _seal_check(payload, seal_key), chart),
                            content_type="text/html", charset="utf-8")

    @routes.post("/tickets/{ticket_id:\\d{1,18}}/visit-code")
    async def visit_code_form(request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["ticket_id"])
        form = await request.post()
        try:
            desk.enter_visit_code(ticket_id, str(form.get("code", "")))
            outcome = "verified"  # the technician's name and number are on the page, from the timeline
        except ServiceError as exc:
            outcome = exc.code
        raise web.HTTPSeeOther(f"/tickets/{ticket_id}?msg={quote(outcome)}")

    @routes.post("/tickets/{ticket_id:\\d{1,18}}/confirm")
    async def confirm_form(request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["ticket_id"])
        form = await request.post()
        try:
            rating = int(str(form.get("rating", "0")))
            desk.confirm(ticket_id, rating, str(form.get("comment", "")))
            outcome = "confirmed"
        except ServiceError as exc:
            outcome = exc.code
        except ValueError:
            outcome = "bad_rating"
        raise web.HTTPSeeOther(f"/tickets/{ticket_id}?msg={quote(outcome)}")

    app.add_routes(routes)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


# What a form's redirect may ask the ticket page to say: a fixed text per code. A crafted link can pick one of
# these, never put its own words in the page (a "message" asking for a payment to some account).
FORM_OUTCOMES = {
    "verified": "The technician is verified: the name and employee number below are the platform's assignment. "
                "/ 技师已核验：以下姓名与工号与平台派单一致。",
    "confirmed": "Thank you: the repair is confirmed. / 谢谢：维修已确认。",
    "no_technician": "No technician has been assigned to this ticket yet. / 此工单尚未指派技师。",
    "code_used": "This visit code was already used; the technician is verified. / 此上门码已使用，技师已核验。",
    "code_locked": "Too many wrong codes: ask the platform to assign the visit again. "
                   "/ 错误次数过多：请平台重新派单。",
    "code_wrong": "Wrong visit code: the attempts are limited. / 上门码错误：尝试次数有限。",
    "no_repair": "Nothing to confirm yet: the ticket has no repair. / 尚无可确认的维修。",
    "already_confirmed": "This repair was already confirmed. / 此维修已确认。",
    "bad_rating": "The rating must be a whole number from 1 to 5. / 评分须为 1 到 5 的整数。",
    "rejected": "That could not be accepted. / 无法受理。",
}


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _seal_check(payload: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    if key is None:
        return {"valid": None, "detail": "this gateway has no sealing key loaded"}
    verdict = verify(payload, key)
    return {"valid": verdict.valid, "detail": verdict.reason}


def _evidence_charts(payload: dict[str, Any], profiles: dict[str, Profile]) -> str:
    """The evidence window of the ticket, one chart per metric the rule compared."""
    evidence = payload.get("evidence") or {}
    window = evidence.get("window") or {}
    ts = window.get("ts") or []
    if not ts:
        return ""
    profile = profiles.get(payload.get("appliance", {}).get("type", ""))
    specs = {m.name: m for m in profile.metrics} if profile else {}
    onset = min((f["onset_ts"] for f in payload.get("findings", [])), default=ts[0])
    charts = []
    for observed in evidence.get("observed", []):
        name = observed.get("quantity")
        values = (window.get("metrics") or {}).get(name)
        if not values or name not in specs:
            continue
        series = {"ts": ts, "mean": values, "min": values, "max": values}
        spec = specs[name]
        charts.append(chart_svg(name, spec.unit, series, ts[0], ts[-1], (spec.low, spec.high),
                                [Marker(onset, "incident", "fault onset")]))
    return "".join(charts)


def _ticket_html(ticket_id: int, payload: dict[str, Any], timeline: dict[str, Any], message: str, role: Role,
                 seal: dict[str, Any], evidence_charts: str) -> str:
    esc = html.escape
    fault = payload["fault"]
    owner = role.name == "admin"
    explanation = fault.get("explanation") or {}
    causes = "".join(f"<li>{esc(c['cause'])} ({float(c.get('likelihood', 0)):.0%}): "
                     f"{esc(str(c.get('reason', '')))}</li>" for c in payload.get("probable_causes", []))
    price = payload.get("price") or {}
    items = "".join(f"<li>{esc(i['title']['en'])} / {esc(i['title']['zh'])}: {i['band'][0]:g}-{i['band'][1]:g} "
                    f"{esc(price.get('currency', ''))}</li>" for i in price.get("items", []))
    total = price.get("total_band")
    steps = "".join(
        f"<li data-step='{esc(s['step'])}'><b>{esc(s['title']['en'])}</b> / {esc(s['title']['zh'])}<br><small>"
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(s['at']))} by {esc(s['actor'])} ({esc(s['source'])})"
        f"</small>{_step_extra(s)}</li>" for s in timeline["steps"])
    flags = "".join(f"<li class='{'ok' if f['explained'] else 'warn'}'>{esc(f['problem'])}</li>"
                    for f in timeline["charge_flags"])
    technician = timeline.get("technician")
    who = ""
    if technician:
        verified = (timeline["visit_code"] or {}).get("verified")
        who = (f"<h2>Technician</h2><p id='technician'>{esc(technician['name'])}, employee "
               f"{esc(technician['employee_id'])}, badge photo sha256 <code>{esc(technician['photo_sha256'])}</code>"
               f" · <b>{'verified on site' if verified else 'not yet verified on site'}</b></p>")
    visit = ""
    if owner and technician and not (timeline["visit_code"] or {}).get("verified"):
        visit = (f"<form method='post' action='/tickets/{ticket_id}/visit-code'><label>Visit code shown by "
                 f"{esc(technician['name'])}: <input name='code' inputmode='numeric' autocomplete='one-time-code' "
                 "required></label> <button>Verify</button></form>")
    confirm = ""
    if owner and any(s["step"] == "repaired" for s in timeline["steps"]) and timeline["state"] != "confirmed":
        confirm = (f"<form method='post' action='/tickets/{ticket_id}/confirm'><label>Rating <select name='rating'>"
                   + "".join(f"<option>{n}</option>" for n in (5, 4, 3, 2, 1))
                   + "</select></label> <input name='comment' placeholder='comment'> <button>Confirm repair</button>"
                   "</form>")
    link = (f"<p><button type='button' id='make-link' onclick=\"fetch('/api/tickets/{ticket_id}/technician-link',"
            "{credentials:'same-origin'}).then(r=>r.json()).then(j=>{document.getElementById('link').textContent="
            "location.origin+j.path;})\">Make a technician link</button> <code id='link'></code></p>"
            if owner else "")
    seal_text = {True: "valid: this is the ticket as the gateway sealed it",
                 False: f"TAMPERED: {seal['detail']}", None: seal["detail"]}[seal["valid"]]
    body = f"""<h1 id="title">{esc(fault['title']['en'])}<br>{esc(fault['title']['zh'])}</h1>
{f"<p class='msg' id='message'>{esc(message)}</p>" if message else ""}
<p>{esc(payload['appliance']['brand'])} {esc(payload['appliance']['model'])}
(<a href="/devices/{esc(payload['appliance']['device_id'])}">{esc(payload['appliance']['device_id'])}</a>),
code {esc(fault['code'])}, severity {esc(fault['severity'])}. State: <b id="state">{esc(timeline['state'])}</b></p>
<p id="explanation">{esc(explanation.get('en', ''))}<br>{esc(explanation.get('zh', ''))}</p>
<p id="seal" class="{'valid-ok' if seal['valid'] else 'valid-bad'}">Seal: {esc(seal_text)}</p>
<h2>Probable causes</h2><ol id="causes">{causes}</ol>
<h2>Standard price</h2><ul id="price">{items}</ul>
{f"<p id='total'>Total {total[0]:g}-{total[1]:g} {esc(price.get('currency', ''))}</p>" if total else ""}
{f"<h2>Charges that differ from the diagnosis</h2><ul id='flags'>{flags}</ul>" if flags else ""}
<h2>Evidence</h2><div id="evidence">{evidence_charts or "<p>no telemetry window in this ticket</p>"}</div>
{who}{visit}{confirm}{link}
<h2>Service timeline</h2><ol id="timeline">{steps}</ol>"""
    return pages.page(f"Ticket {ticket_id}", body, live=False, nav=owner)


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
