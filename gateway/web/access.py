"""Who may see what on the web console, and a log line for every request.

- The owner holds the admin token (web.admin_token, or the token file created on first run): everything.
  It is accepted as `Authorization: Bearer <token>`, or as `?token=<token>`, which also sets a session
  cookie (an HMAC of the token under the gateway key, not the token itself), so a bookmarked link works.
- A technician gets a ticket-scoped link `/t/<link>`: the ticket's page and its appliance's pages and data,
  nothing else, and only while the ticket is open (not confirmed by the customer) and the link is not
  expired. The link is an HMAC with the gateway key over the ticket id and the expiry, so it cannot be
  forged or moved to another ticket.
- No credentials: 401. Credentials that do not reach this page (expired link, closed ticket, another
  appliance, a page only the owner may see): 403.
- Open: the platform webhook (it carries its own signature) and the link landing itself.
- A request that changes something (POST ...) signed in by a cookie must come from a page of this console:
  its Origin (or Referer) names this host and port. A page of another site, or of another port of the same
  host, cannot use the owner's cookie (cross-site request forgery); a Bearer token needs no such check.
- Every answer carries a Content-Security-Policy (no framing, no foreign scripts, forms post only here),
  X-Frame-Options, Referrer-Policy (a technician link never leaks in a Referer) and nosniff. A technician
  link is never written to the log.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from gateway.store.db import Database
from gateway.web.errors import is_api

log = logging.getLogger("gateway.web.access")

SESSION_COOKIE = "gw_session"
TECHNICIAN_COOKIE = "gw_technician"
OPEN_PATHS = ("/api/platform/events", "/t/")
_TECHNICIAN_PATHS = (
    re.compile(r"^/tickets/(?P<ticket>\d+)$"),
    re.compile(r"^/api/tickets/(?P<ticket>\d+)$"),
    re.compile(r"^/devices/(?P<device>[^/]+)(/charts)?$"),
    re.compile(r"^/api/devices/(?P<device>[^/]+)(/history)?$"),
    re.compile(r"^/api/stream$"),
)


# <ticket id>.<expiry, unix seconds>.<32 hex digits of HMAC>; ASCII digits only (int() takes other scripts' too)
_LINK = re.compile(r"(?P<ticket>[0-9]{1,18})\.(?P<expires>[0-9]{1,12})\.(?P<mac>[0-9a-f]{32})")


class AccessError(Exception):
    """The admin token file cannot be read or created."""


@dataclass(frozen=True)
class Role:
    name: str  # admin | technician
    ticket_id: int | None = None
    device_id: str | None = None


def load_or_create_token(path: Path) -> str:
    """The owner's admin token; created (0600) the first time. Workers of one fleet share the file and may start
    at once: the token is written to a file of its own and linked into place, so the file appears whole, and a
    worker that loses the race reads the winner's."""
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f".{path.name}.{os.getpid()}")
            descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(24) + "\n")
            try:
                os.link(draft, path)
            except FileExistsError:
                pass  # another worker was first: its token is the one
            finally:
                draft.unlink()
        token = path.read_text().strip()
        if len(token) < 16:
            raise AccessError(f"{path}: an admin token has at least 16 characters")
        return token
    except OSError as exc:
        raise AccessError(f"cannot read or create the admin token {path}: {exc}") from exc


class Access:
    def __init__(self, admin_token: str, link_key: bytes, db: Database, link_days: float = 7.0) -> None:
        self.admin_token = admin_token
        self.link_key = link_key
        self.db = db
        self.link_days = link_days

    # technician links ------------------------------------------------------------------------------------
    def session_value(self) -> str:
        """The owner's session cookie: stands for the token without being it (a copied cookie store does not
        give away the token that works everywhere, and changing the token ends every session)."""
        return hmac.new(self.link_key, f"owner-session|{self.admin_token}".encode(), hashlib.sha256).hexdigest()

    def technician_link(self, ticket_id: int, now: float | None = None) -> str:
        expires = int((now or time.time()) + self.link_days * 86400)
        return f"{ticket_id}.{expires}.{self._mac(ticket_id, expires)}"

    def _mac(self, ticket_id: int, expires: int) -> str:
        return hmac.new(self.link_key, f"technician|{ticket_id}|{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def technician(self, link: str, now: float | None = None) -> Role | str:
        """The technician's role, or why the link does not (or no longer) work."""
        match = _LINK.fullmatch(link)
        if match is None:
            return "not a technician link"
        ticket_id, expires = int(match["ticket"]), int(match["expires"])
        if not hmac.compare_digest(self._mac(ticket_id, expires), match["mac"]):
            return "not a technician link of this gateway"
        if (now or time.time()) > expires:
            return "this technician link has expired"
        payload = self.db.ticket_payload(ticket_id)
        if payload is None:
            return "no such ticket"
        steps = self.db.steps(ticket_id)
        if steps and steps[-1].step == "confirmed":
            return "the ticket is closed: the customer confirmed the repair"
        return Role("technician", ticket_id, str(payload.get("appliance", {}).get("device_id", "")))

    # requests --------------------------------------------------------------------------------------------
    def role_of(self, request: web.Request) -> Role | str | None:
        """Role, or the reason for a 403, or None (no credentials: 401)."""
        header = request.headers.get("Authorization", "")
        token = (header[7:] if header.startswith("Bearer ") else None) or request.query.get("token")
        if token:
            if hmac.compare_digest(token.encode(), self.admin_token.encode()):
                return Role("admin")
            return "wrong token"
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            if hmac.compare_digest(session.encode(), self.session_value().encode()):
                return Role("admin")
            return "this session has ended (the owner's token changed): sign in again with the token"
        link = request.cookies.get(TECHNICIAN_COOKIE)
        return self.technician(link) if link else None


ACCESS_KEY = web.AppKey("access", Access)
ROLE_KEY = web.RequestKey("role", Role)


def allowed(role: Role, path: str) -> bool:
    if role.name == "admin":
        return True
    for pattern in _TECHNICIAN_PATHS:
        match = pattern.match(path)
        if match is None:
            continue
        groups = match.groupdict()
        if "ticket" in groups and groups["ticket"] is not None:
            return int(groups["ticket"]) == role.ticket_id
        if "device" in groups and groups["device"] is not None:
            return groups["device"] == role.device_id
        return True
    return False


@web.middleware
async def access_control(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    access = request.app[ACCESS_KEY]
    started = time.perf_counter()
    who = "anonymous"
    try:
        if request.path.startswith(OPEN_PATHS):
            response = await handler(request)
        elif request.method not in SAFE_METHODS and not request.headers.get("Authorization") and \
                not same_origin(request):
            who = "cross-site"
            response = _refused(request, 403, "a change must come from a page of this console (Origin "
                                f"{request.headers.get('Origin', 'missing')!r} is not {request.host!r})")
        else:
            role = access.role_of(request)
            if role is None:
                response = _refused(request, 401, "sign in: this page needs the owner's token or a technician link")
            elif isinstance(role, str):
                who = "refused"
                response = _refused(request, 403, role)
            elif not allowed(role, request.path) or (role.name == "technician" and request.method != "GET"):
                who = f"technician:{role.ticket_id}"
                response = _refused(request, 403, "a technician link shows only its ticket and its appliance")
            else:
                who = role.name if role.ticket_id is None else f"technician:{role.ticket_id}"
                request[ROLE_KEY] = role
                response = await handler(request)
                if role.name == "admin" and "token" in request.query:
                    response.set_cookie(SESSION_COOKIE, access.session_value(), httponly=True, samesite="Strict")
    except web.HTTPException as exc:
        log.log(_access_level(exc.status), "%s %s %s -> %d", who, request.method, logged_path(request), exc.status)
        raise
    log.log(_access_level(response.status), "%s %s %s -> %d (%.0f ms)", who, request.method, logged_path(request),
            response.status, (time.perf_counter() - started) * 1000)
    return response


def _access_level(status: int) -> int:
    """The access log is at DEBUG (a console polls every few seconds); refusals and errors at INFO."""
    return logging.INFO if status >= 400 else logging.DEBUG


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same_origin(request: web.Request) -> bool:
    """The request came from a page of this console: its Origin (or, without one, its Referer) is this host and
    port. Browsers send Origin with every POST; a request without either is refused too."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return False
    return urlsplit(source).netloc.lower() == request.host.lower()


def logged_path(request: web.Request) -> str:
    """The path for the access log, without a technician link (it is a credential)."""
    return "/t/<link>" if request.path.startswith("/t/") else request.path


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
                               "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'; object-src 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: on every answer, errors and redirects included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def _refused(request: web.Request, status: int, reason: str) -> web.Response:
    if is_api(request.path):
        return web.json_response({"error": reason}, status=status)
    title = "401 Sign in needed" if status == 401 else "403 Not allowed"
    return web.Response(status=status, content_type="text/html", text=(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
        f"content='width=device-width, initial-scale=1'><title>{title}</title></head><body style='font-family:"
        f"system-ui,sans-serif;margin:1rem'><h1 id='status'>{title}</h1><p id='reason'>{html.escape(reason)}</p>"
        "</body></html>"))
