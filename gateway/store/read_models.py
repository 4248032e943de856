"""Queries for the web console, the InfluxDB sink and the scorer; they never write."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.store.connection import Connection


class ReadModels(Connection):
    def records_since(self, incident_id: int, step_id: int,
                      limit: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Incidents and service steps newer than the given ids, oldest first (for outside stores)."""
        incidents = self._conn.execute(
            "SELECT incident_id, rule_id, device_id, category, ticket_id, onset_ts, detected_ts FROM incidents "
            "WHERE incident_id > ? ORDER BY incident_id LIMIT ?", (incident_id, limit)).fetchall()
        steps = self._conn.execute(
            "SELECT s.step_id, s.ticket_id, t.device_id, s.step, s.at, s.actor, s.detail FROM ticket_steps s "
            "JOIN tickets t USING (ticket_id) WHERE s.step_id > ? ORDER BY s.step_id LIMIT ?",
            (step_id, limit)).fetchall()
        keys = ("incident_id", "rule_id", "device_id", "category", "ticket_id", "onset_ts", "detected_ts")
        return ([dict(zip(keys, r, strict=True)) for r in incidents],
                [{"step_id": r[0], "ticket_id": r[1], "device_id": r[2], "step": r[3], "at": r[4], "actor": r[5],
                  "detail": orjson.loads(r[6])} for r in steps])

    def device_marks(self, device_id: str, since: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """A device's incidents and service steps since `since`, for the time axis of its charts."""
        incidents = self._conn.execute(
            "SELECT incident_id, rule_id, onset_ts, detected_ts, state, resolved_ts, ticket_id FROM incidents "
            "WHERE device_id=? AND (resolved_ts IS NULL OR resolved_ts >= ?) ORDER BY incident_id",
            (device_id, since)).fetchall()
        steps = self._conn.execute(
            "SELECT s.ticket_id, s.step, s.at, s.actor FROM ticket_steps s JOIN tickets t USING (ticket_id) "
            "WHERE t.device_id=? AND s.at >= ? ORDER BY s.step_id", (device_id, since)).fetchall()
        keys = ("incident_id", "rule_id", "onset_ts", "detected_ts", "state", "resolved_ts", "ticket_id")
        return ([dict(zip(keys, r, strict=True)) for r in incidents],
                [{"ticket_id": r[0], "step": r[1], "at": r[2], "actor": r[3]} for r in steps])

    def open_counts(self) -> dict[str, tuple[int, int]]:
        """Per device: (incidents firing, tickets not yet confirmed by the customer)."""
        rows = self._conn.execute(
            "SELECT t.device_id, (SELECT COUNT(*) FROM incidents i WHERE i.device_id=t.device_id "
            "AND i.state='firing'), COUNT(*) FROM tickets t WHERE COALESCE((SELECT s.step FROM ticket_steps s "
            "WHERE s.ticket_id=t.ticket_id ORDER BY s.step_id DESC LIMIT 1), '') != 'confirmed' "
            "GROUP BY t.device_id").fetchall()
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def incident_rows(self) -> list[dict[str, Any]]:
        """Every incident with its ticket (for scoring a simulated run against its ground truth)."""
        rows = self._conn.execute("SELECT incident_id, rule_id, device_id, ticket_id, onset_ts, detected_ts, state "
                                  "FROM incidents ORDER BY incident_id").fetchall()
        keys = ("incident_id", "rule_id", "device_id", "ticket_id", "onset_ts", "detected_ts", "state")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def tickets(self, limit: int = 100, offset: int = 0, state: str = "") -> list[dict[str, Any]]:
        """Newest tickets with their delivery and service state, for the web pages and the demo summary.
        `state`: only tickets whose newest service step is this one; "open": every ticket the customer has not
        confirmed (a repaired ticket stays open until then, whether or not its incident still fires)."""
        where, params = self._state_filter(state)
        rows = self._conn.execute(
            f"SELECT * FROM (SELECT t.ticket_id, t.payload, o.state, o.attempts, o.platform_ticket_id, o.last_error, "
            "EXISTS (SELECT 1 FROM incidents i WHERE i.ticket_id=t.ticket_id AND i.state='firing'), t.late_findings, "
            f"{_NEWEST_STEP} AS step, {_NEWEST_STEP_AT} FROM tickets t JOIN delivery o USING (ticket_id)) {where} "
            "ORDER BY ticket_id DESC LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()
        return [
            {"ticket_id": r[0], "payload": orjson.loads(r[1]), "delivery": r[2], "attempts": r[3],
             "platform_ticket_id": r[4], "last_error": r[5], "incident_state": "firing" if r[6] else "resolved",
             "service_state": r[8] or "unknown", "service_state_at": r[9], **_late(orjson.loads(r[7]))}
            for r in rows
        ]

    def ticket_count(self, state: str = "") -> int:
        where, params = self._state_filter(state)
        row = self._conn.execute(f"SELECT COUNT(*) FROM (SELECT {_NEWEST_STEP} AS step FROM tickets t) {where}",
                                 params).fetchone()
        return int(row[0])

    def ticket_states(self) -> dict[str, int]:
        """How many tickets are in each service state (their newest step)."""
        rows = self._conn.execute(f"SELECT step, COUNT(*) FROM (SELECT {_NEWEST_STEP} AS step FROM tickets t) "
                                  "GROUP BY step").fetchall()
        return {str(r[0] or "unknown"): int(r[1]) for r in rows}

    @staticmethod
    def _state_filter(state: str) -> tuple[str, tuple[str, ...]]:
        if state == "open":
            return "WHERE COALESCE(step, '') != 'confirmed'", ()
        if state:
            return "WHERE step = ?", (state,)
        return "", ()


_NEWEST_STEP = ("(SELECT s.step FROM ticket_steps s WHERE s.ticket_id=t.ticket_id ORDER BY s.step_id DESC LIMIT 1)")
_NEWEST_STEP_AT = ("(SELECT s.at FROM ticket_steps s WHERE s.ticket_id=t.ticket_id ORDER BY s.step_id DESC LIMIT 1)")


def _late(findings: list[dict[str, Any]]) -> dict[str, Any]:
    """The findings added after a ticket was sent: their rules, and the first cause each step named."""
    return {"late_findings": [f["rule"] for f in findings],
            "late_top_causes": [(f["rule"], f.get("onset_ts"), (f.get("causes") or [{}])[0].get("cause", ""))
                                for f in findings]}
