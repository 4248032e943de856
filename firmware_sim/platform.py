"""Stand-in for the after-sales service platform: the upstream API of docs/upstream-api.yaml.

Tickets are stored in its own SQLite file and deduplicated on the Idempotency-Key, so a gateway that
resends (after a timeout, a crash, a restart) gets the same ticket back instead of a second one.
`/_sim/*` endpoints let tests and benchmarks make it fail on purpose and read what it received.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

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
"""


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

    def list(self) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT * FROM tickets ORDER BY received_at").fetchall()
        return [_ticket(r, with_body=False) for r in rows]

    def close(self) -> None:
        self._conn.close()


def _ticket(row: tuple[Any, ...], with_body: bool) -> dict[str, Any]:
    ticket = {"ticket_id": row[0], "idempotency_key": row[1], "device_id": row[2], "fault_code": row[3],
              "status": row[4], "received_at": row[5]}
    if with_body:
        ticket["ticket"] = orjson.loads(row[6])
    return ticket


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
    def __init__(self, db_path: str | Path, host: str = "127.0.0.1", port: int = 0, token: str = "") -> None:
        self.store = PlatformStore(db_path)
        self.host, self.port, self.token = host, port, token
        self.posts = 0
        self.duplicates = 0
        self._fail_next = 0
        self._fail_status = 500
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
            web.post("/_sim/faults", self._faults),
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
        self._fail_next, self._fail_status = count, status

    def _authorized(self, request: web.Request) -> bool:
        return not self.token or request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _create(self, request: web.Request) -> web.Response:
        self.posts += 1
        if not self._authorized(request):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        if self._fail_next > 0:
            self._fail_next -= 1
            return web.json_response({"error": "injected failure"}, status=self._fail_status)
        key = request.headers.get("Idempotency-Key", "")
        if not key:
            return web.json_response({"error": "Idempotency-Key header is required"}, status=400)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return web.json_response({"error": f"body is not JSON: {exc}"}, status=400)
        problem = validate_ticket(body)
        if problem:
            return web.json_response({"error": problem}, status=422)
        ticket, created = self.store.create(key, body, time.time())
        if not created:
            self.duplicates += 1
        summary = {k: v for k, v in ticket.items() if k != "ticket"}
        return web.json_response(summary, status=201 if created else 200)

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.list())

    async def _get(self, request: web.Request) -> web.Response:
        ticket = self.store.get(request.match_info["ticket_id"])
        if ticket is None:
            return web.json_response({"error": "no such ticket"}, status=404)
        return web.json_response(ticket)

    async def _faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.fail_next(int(body.get("fail_next", 0)), int(body.get("status", 500)))
        return web.json_response({"fail_next": self._fail_next, "status": self._fail_status})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"posts": self.posts, "duplicates": self.duplicates,
                                  "tickets": len(self.store.list())})
