"""Stand-in for the after-sales service platform: the upstream API of docs/upstream-api.yaml.

Tickets are stored in its own SQLite file and deduplicated on the Idempotency-Key, so a gateway that
resends (after a timeout, a crash, a restart) gets the same ticket back instead of a second one. It also
walks a ticket through its service steps: `/_sim/tickets/{id}/advance` (or `appliance-gateway
platform-advance`) plays the dispatcher, the technician and the customer; each step is kept for polling
(GET /v1/tickets/{id}) and pushed to the gateway by a signed webhook when one is configured.
`/_sim/faults` makes it fail on purpose (errors, slowness, dropped connections); `/_sim/stats` says what
it received.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from gateway.service import signing
from gateway.service.timeline import PLATFORM_STEPS, visit_code_digest

SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL,
    fault_code TEXT NOT NULL,
    status TEXT NOT NULL,
    received_at REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    seq INTEGER PRIMARY KEY,
    ticket_id TEXT NOT NULL REFERENCES tickets(ticket_id),
    event_id TEXT NOT NULL UNIQUE,
    origin TEXT NOT NULL,
    step TEXT NOT NULL,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    detail BLOB NOT NULL
);
"""


@dataclass
class FaultPlan:
    """Failures to inject on POSTs: the next N answer `status`; a share answer 500 at random; every
    answer waits `delay_seconds`; the next N accepted tickets are stored and then the connection is cut; the
    next `slow_next` accepted tickets answer after `slow_seconds` (one slow request among quick ones)."""

    fail_next: int = 0
    status: int = 500
    random_500: float = 0.0
    delay_seconds: float = 0.0
    drop_after_accept: int = 0
    slow_next: int = 0
    slow_seconds: float = 0.0


class PlatformStore:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)

    def create(self, key: str, body: dict[str, Any], now: float) -> tuple[dict[str, Any], bool]:
        """Store a ticket once per key; returns (ticket summary, created)."""
        existing = self._conn.execute("SELECT ticket_id FROM tickets WHERE idempotency_key=?", (key,)).fetchone()
        if existing:
            return self.get(existing[0]) or {}, False
        count = self._conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
        ticket_id = f"SVC-{count + 1:06d}"
        self._conn.execute(
            "INSERT INTO tickets VALUES (?, ?, ?, ?, 'open', ?, ?)",
            (ticket_id, key, body["appliance"]["device_id"], body["fault"]["code"], now, orjson.dumps(body)))
        return self.get(ticket_id) or {}, True

    def get(self, ticket_id: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM tickets WHERE ticket_id=?", (ticket_id,)).fetchone()
        return _ticket(row, with_body=True) if row else None

    def list_tickets(self) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT * FROM tickets ORDER BY received_at").fetchall()
        return [_ticket(r, with_body=False) for r in rows]

    def add_step(self, ticket_id: str, event: dict[str, Any], origin: str) -> bool:
        """Keep a step once per event id; the ticket's status is its newest step."""
        cursor = self._conn.execute(
            "INSERT INTO steps (ticket_id, event_id, origin, step, at, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(event_id) DO NOTHING", (ticket_id, event["event_id"], origin, event["step"],
                                                 float(event["at"]), event["actor"], orjson.dumps(event["detail"])))
        if cursor.rowcount:
            self._conn.execute("UPDATE tickets SET status=? WHERE ticket_id=?", (event["step"], ticket_id))
        return cursor.rowcount > 0

    def steps(self, ticket_id: str) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT event_id, origin, step, at, actor, detail FROM steps WHERE ticket_id=? "
                                  "ORDER BY seq", (ticket_id,)).fetchall()
        return [{"event_id": r[0], "origin": r[1], "step": r[2], "at": r[3], "actor": r[4],
                 "detail": orjson.loads(r[5])} for r in rows]

    def close(self) -> None:
        self._conn.close()


def _ticket(row: tuple[Any, ...], with_body: bool) -> dict[str, Any]:
    ticket = {"ticket_id": row[0], "idempotency_key": row[1], "device_id": row[2], "fault_code": row[3],
              "status": row[4], "received_at": row[5]}
    if with_body:
        ticket["ticket"] = orjson.loads(row[6])
    return ticket


def _technician(n: int) -> dict[str, str]:
    employee_id = f"T-{1000 + n}"
    return {"name": ("Wang Fang", "Li Wei", "Zhang Min", "Chen Jie")[n % 4], "employee_id": employee_id,
            "photo_sha256": hashlib.sha256(f"badge photo of {employee_id}".encode()).hexdigest()}


def validate_ticket(body: Any) -> str | None:
    """The minimum a ticket must carry to be dispatchable; None if it has it."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    appliance, fault = body.get("appliance"), body.get("fault")
    if not isinstance(appliance, dict) or not isinstance(appliance.get("device_id"), str):
        return "appliance.device_id is required"
    if not isinstance(fault, dict) or not isinstance(fault.get("code"), str):
        return "fault.code is required"
    if not isinstance(body.get("probable_causes"), list) or not body["probable_causes"]:
        return "probable_causes must be a non-empty list"
    if not isinstance(body.get("evidence"), dict):
        return "evidence is required"
    return None


class PlatformServer:
    def __init__(self, db_path: str | Path, host: str = "127.0.0.1", port: int = 0, token: str = "",
                 webhook_url: str = "", webhook_secret: str = "", seed: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """`clock`: the time the platform stamps its steps with (the demo's simulated clock, which the gateway and
        the appliances keep too, so that one service timeline is in one order); signatures keep the wall clock."""
        self.store = PlatformStore(db_path)
        self.clock = clock
        self.host, self.port, self.token = host, port, token
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret
        self.faults = FaultPlan()
        self.rng = random.Random(seed)
        self.posts = 0
        self.duplicates = 0
        self.dropped_answers = 0
        self.webhooks_sent = 0
        self.webhook_failures = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.add_routes([
            web.post("/v1/tickets", self._create),
            web.get("/v1/tickets", self._list),
            web.get("/v1/tickets/{ticket_id}", self._get),
            web.post("/v1/tickets/{ticket_id}/steps", self._gateway_step),
            web.post("/_sim/tickets/{ticket_id}/advance", self._advance),
            web.post("/_sim/faults", self._set_faults),
            web.get("/_sim/stats", self._stats),
        ])
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.store.close()

    def fail_next(self, count: int, status: int = 500) -> None:
        self.faults.fail_next, self.faults.status = count, status

    def _authorized(self, request: web.Request) -> bool:
        return not self.token or request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _injected_failure(self) -> web.Response | None:
        """An injected error answer (after the configured delay), or None to go on."""
        failure = None
        if self.faults.fail_next > 0:
            self.faults.fail_next -= 1
            failure = web.json_response({"error": "injected failure"}, status=self.faults.status)
        elif self.faults.random_500 and self.rng.random() < self.faults.random_500:
            failure = web.json_response({"error": "injected random failure"}, status=500)
        if failure is not None and self.faults.delay_seconds:
            await asyncio.sleep(self.faults.delay_seconds)
        return failure

    async def _create(self, request: web.Request) -> web.StreamResponse:
        self.posts += 1
        if not self._authorized(request):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        failure = await self._injected_failure()
        if failure is not None:
            return failure
        key = request.headers.get("Idempotency-Key", "")
        if not key:
            return web.json_response({"error": "Idempotency-Key header is required"}, status=400)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return web.json_response({"error": f"body is not JSON: {exc}"}, status=400)
        except ConnectionResetError:  # the gateway went away mid-request (killed): nothing was stored
            raise asyncio.CancelledError from None
        problem = validate_ticket(body)
        if problem:
            return web.json_response({"error": problem}, status=422)
        ticket, created = self.store.create(key, body, self.clock())
        if not created:
            self.duplicates += 1
        if self.faults.delay_seconds:  # a slow platform: the ticket is stored, the answer takes its time
            await asyncio.sleep(self.faults.delay_seconds)
        if self.faults.slow_next > 0:
            self.faults.slow_next -= 1
            await asyncio.sleep(self.faults.slow_seconds)
        if self.faults.drop_after_accept > 0:  # stored, but the answer never reaches the gateway
            self.faults.drop_after_accept -= 1
            self.dropped_answers += 1
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        summary = {k: v for k, v in ticket.items() if k != "ticket"}
        return web.json_response(summary, status=201 if created else 200)

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.list_tickets())

    async def _get(self, request: web.Request) -> web.Response:
        ticket = self.store.get(request.match_info["ticket_id"])
        if ticket is None:
            return web.json_response({"error": "no such ticket"}, status=404)
        return web.json_response({**ticket, "steps": self.store.steps(ticket["ticket_id"])})

    async def _gateway_step(self, request: web.Request) -> web.Response:
        """A step the gateway reports (technician verified, repair verified, reopened, confirmed)."""
        if not self._authorized(request):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        failure = await self._injected_failure()
        if failure is not None:
            return failure
        ticket_id = request.match_info["ticket_id"]
        if self.store.get(ticket_id) is None:
            return web.json_response({"error": "no such ticket"}, status=404)
        try:
            event = orjson.loads(await request.read())
            if not all(isinstance(event.get(k), str) for k in ("event_id", "step", "actor")):
                raise ValueError("event_id, step and actor are required")
            created = self.store.add_step(ticket_id, {**event, "detail": event.get("detail", {})}, "gateway")
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": f"bad step: {exc}"}, status=400)
        if self.faults.delay_seconds:
            await asyncio.sleep(self.faults.delay_seconds)
        return web.json_response({"ticket_id": ticket_id, "event_id": event["event_id"]},
                                 status=201 if created else 200)

    async def advance(self, ticket_id: str, step: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
        """Play the platform side of one step; returns the event (and, on assignment, the visit code)."""
        ticket = self.store.get(ticket_id)
        if ticket is None:
            raise KeyError(ticket_id)
        if step not in PLATFORM_STEPS:
            raise ValueError(f"step must be one of {list(PLATFORM_STEPS)}")
        detail = dict(detail or {})
        answer: dict[str, Any] = {}
        count = len(self.store.steps(ticket_id))
        if step == "technician_assigned":
            code = detail.pop("visit_code", None) or f"{secrets.randbelow(10**6):06d}"
            detail.setdefault("technician", _technician(count))
            detail["visit_code_sha256"] = visit_code_digest(ticket_id, code)
            answer["visit_code"] = code
        elif step == "repaired":
            quoted = (ticket["ticket"].get("price") or {}).get("items", [])
            detail.setdefault("items", [{"id": i["id"], "price": sum(i["band"]) / 2} for i in quoted])
        elif step == "confirmed":
            detail.setdefault("rating", 5)
        event = {"event_id": f"{ticket_id}-{step}-{count + 1}", "ticket_id": ticket_id, "step": step,
                 "at": self.clock(), "actor": "customer" if step == "confirmed" else "platform", "detail": detail}
        self.store.add_step(ticket_id, event, "platform")
        answer["event"] = event
        answer["webhook"] = await self._push(event)
        return answer

    async def _push(self, event: dict[str, Any]) -> str:
        """Best effort: a webhook that fails is found by the gateway's polling."""
        if not self.webhook_url:
            return "not configured"
        body = orjson.dumps({**event, "origin": "platform"})
        headers = {"Content-Type": "application/json",
                   signing.HEADER: signing.sign(self.webhook_secret, body, time.time())}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session, \
                    session.post(self.webhook_url, data=body, headers=headers) as response:
                result = f"HTTP {response.status}"
                ok = response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            result, ok = f"{type(exc).__name__}", False
        if ok:
            self.webhooks_sent += 1
        else:
            self.webhook_failures += 1
        return result

    async def _advance(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            answer = await self.advance(request.match_info["ticket_id"], str(body.get("step")),
                                        body.get("detail") or {})
        except KeyError:
            return web.json_response({"error": "no such ticket"}, status=404)
        except (ValueError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(answer)

    async def _set_faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.faults = FaultPlan(int(body.get("fail_next", 0)), int(body.get("status", 500)),
                                float(body.get("random_500", 0.0)), float(body.get("delay_seconds", 0.0)),
                                int(body.get("drop_after_accept", 0)))
        return web.json_response(vars(self.faults))

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"posts": self.posts, "duplicates": self.duplicates,
                                  "tickets": len(self.store.list_tickets()), "dropped_answers": self.dropped_answers,
                                  "webhooks_sent": self.webhooks_sent, "webhook_failures": self.webhook_failures})
