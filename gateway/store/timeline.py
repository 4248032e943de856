"""A ticket's service steps (unique on their event id) and its visit code."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from gateway.store.connection import Connection
from gateway.store.schema import Step


class TimelineRows(Connection):
    def _add_step(self, conn: sqlite3.Connection, ticket_id: int, step: str, at: float, actor: str, source: str,
                  event_id: str, detail: dict[str, Any], notify: bool = False, now: float | None = None) -> bool:
        """Record a step once per event id; `notify` also queues it for the platform. False if already known."""
        cursor = conn.execute("INSERT INTO ticket_steps (ticket_id, step, at, actor, source, event_id, detail) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING",
                              (ticket_id, step, at, actor, source, event_id, orjson.dumps(detail)))
        if cursor.rowcount == 0:
            return False
        if notify:
            body = {"event_id": event_id, "step": step, "at": at, "actor": actor, "detail": detail}
            conn.execute("INSERT INTO outbox (ticket_id, kind, body, idempotency_key, state, next_attempt_at) "
                         "VALUES (?, 'step', ?, ?, 'queued', ?)",
                         (ticket_id, orjson.dumps(body), event_id, at if now is None else now))
        return True

    def add_step(self, ticket_id: int, step: str, at: float, actor: str, source: str, event_id: str,
                 detail: dict[str, Any], notify: bool = False, now: float | None = None) -> bool:
        with self._transaction() as conn:
            return self._add_step(conn, ticket_id, step, at, actor, source, event_id, detail, notify, now)

    def steps(self, ticket_id: int) -> list[Step]:
        rows = self._conn.execute("SELECT step_id, ticket_id, step, at, actor, source, event_id, detail "
                                  "FROM ticket_steps WHERE ticket_id=? ORDER BY step_id", (ticket_id,)).fetchall()
        return [Step(r[0], r[1], r[2], r[3], r[4], r[5], r[6], orjson.loads(r[7])) for r in rows]

    def has_event(self, event_id: str) -> bool:
        return self._conn.execute("SELECT 1 FROM ticket_steps WHERE event_id=?", (event_id,)).fetchone() is not None

    def tickets_to_follow(self, delivered_since: float = 0.0) -> list[tuple[int, str]]:
        """Delivered tickets the platform may still report steps on: (ticket id, platform ticket id) of every
        ticket delivered since `delivered_since` whose newest step is not the customer's confirmation."""
        rows = self._conn.execute(
            "SELECT d.ticket_id, d.platform_ticket_id FROM delivery d WHERE d.state='delivered' AND "
            "d.platform_ticket_id != '' AND d.delivered_at >= ? AND COALESCE((SELECT s.step FROM ticket_steps s "
            "WHERE s.ticket_id=d.ticket_id ORDER BY s.step_id DESC LIMIT 1), '') != 'confirmed' "
            "ORDER BY d.ticket_id", (delivered_since,)).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def awaiting_verification(self) -> list[dict[str, Any]]:
        """Tickets whose newest repair the telemetry has not verified yet and whose fault has not returned since
        (a confirmation on the platform before it does not end the wait), with what verification needs to decide."""
        rows = self._conn.execute(
            "SELECT t.ticket_id, t.device_id, s.at, s.event_id, "
            "(SELECT COUNT(*) FROM incidents i WHERE i.ticket_id=t.ticket_id AND i.state='firing'), "
            "(SELECT MAX(resolved_ts) FROM incidents i WHERE i.ticket_id=t.ticket_id), "
            "(SELECT json_group_array(DISTINCT rule_id) FROM incidents i WHERE i.ticket_id=t.ticket_id) "
            "FROM tickets t JOIN ticket_steps s ON s.ticket_id=t.ticket_id "
            "WHERE s.step_id=(SELECT MAX(step_id) FROM ticket_steps x WHERE x.ticket_id=t.ticket_id "
            "AND x.step='repaired') AND NOT EXISTS (SELECT 1 FROM ticket_steps y WHERE y.ticket_id=t.ticket_id "
            "AND y.step_id>s.step_id AND y.step IN ('verified_by_telemetry', 'reopened'))").fetchall()
        return [{"ticket_id": r[0], "device_id": r[1], "repaired_at": r[2], "repair_event": r[3], "firing": r[4],
                 "last_resolved": r[5], "rules": orjson.loads(r[6])} for r in rows]

    def save_visit_code(self, ticket_id: int, digest: str, technician: dict[str, Any]) -> None:
        """A new assignment replaces the previous code (and its failed attempts)."""
        with self._transaction() as conn:
            conn.execute("INSERT INTO visit_codes (ticket_id, digest, technician) VALUES (?, ?, ?) "
                         "ON CONFLICT(ticket_id) DO UPDATE SET digest=excluded.digest, "
                         "technician=excluded.technician, failed_attempts=0, used_at=NULL",
                         (ticket_id, digest, orjson.dumps(technician)))

    def visit_code(self, ticket_id: int) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT digest, technician, failed_attempts, used_at FROM visit_codes "
                                 "WHERE ticket_id=?", (ticket_id,)).fetchone()
        if row is None:
            return None
        return {"digest": row[0], "technician": orjson.loads(row[1]), "failed_attempts": row[2], "used_at": row[3]}

    def visit_code_failed(self, ticket_id: int) -> int:
        with self._transaction() as conn:
            conn.execute("UPDATE visit_codes SET failed_attempts=failed_attempts+1 WHERE ticket_id=?", (ticket_id,))
            row = conn.execute("SELECT failed_attempts FROM visit_codes WHERE ticket_id=?", (ticket_id,)).fetchone()
            return int(row[0]) if row else 0

    def visit_code_used(self, ticket_id: int, step: str, at: float, actor: str, event_id: str,
                        detail: dict[str, Any]) -> bool:
        """Spend the code and record the step in one transaction; False if it was already spent."""
        with self._transaction() as conn:
            spent = conn.execute("UPDATE visit_codes SET used_at=? WHERE ticket_id=? AND used_at IS NULL",
                                 (at, ticket_id)).rowcount
            if not spent:
                return False
            return self._add_step(conn, ticket_id, step, at, actor, "customer", event_id, detail, notify=True)
