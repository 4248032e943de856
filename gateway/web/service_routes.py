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
from gateway.service.timeline import ServiceDesk, ServiceError, closed
from gateway.store.db import Database, StorageError
from gateway.store.history import History
from gateway.web import pages
from gateway.web.access import ROLE_KEY, TECHNICIAN_COOKIE, Access
from gateway.web.ticket_page import ticket_html

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
        if closed(db.steps(ticket_id)):
            return _error("the ticket is closed (the customer confirmed the repair): a technician has nothing to "
                          "open it for", 409)
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
            desk.confirm(int(request.match_info["ticket_id"]), body.get("rating"), body.get("comment", ""),
                         body.get("without_verification", ""))
        except ServiceError as exc:
            return _error(str(exc), exc.status)
        return web.json_response({"confirmed": True})

    @routes.get("/tickets/{ticket_id:\\d{1,18}}")
    async def ticket_page(request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["ticket_id"])
        payload = db.ticket_payload(ticket_id)
        if payload is None:
            raise web.HTTPNotFound(text="no such ticket")
        profile = profiles.get(payload.get("appliance", {}).get("type", ""))
        return web.Response(text=ticket_html(ticket_id, payload, desk.timeline(ticket_id),
                                             FORM_OUTCOMES.get(request.query.get("msg", ""), ""), request[ROLE_KEY],
                                             _seal_check(payload, seal_key), profile),
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
            desk.confirm(ticket_id, rating, str(form.get("comment", "")), str(form.get("without_verification", "")))
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
    "bad_rating": "Choose a rating from 1 to 5. / 请选择 1 到 5 的评分。",
    "not_verified": "The telemetry has not verified the repair yet: wait for it, or confirm without verification "
                    "and say why. / 运行数据尚未确认修复：请等待，或注明原因后在未经确认的情况下确认。",
    "rejected": "That could not be accepted. / 无法受理。",
}


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _seal_check(payload: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    if key is None:
        return {"valid": None, "detail": "this gateway has no sealing key loaded"}
    verdict = verify(payload, key)
    return {"valid": verdict.valid, "detail": verdict.reason}
