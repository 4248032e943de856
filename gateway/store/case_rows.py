"""Incidents and the tickets they are on: a case decision applied in one transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from gateway.model import Case, Decision, Incident, IncidentState, NewEpisode
from gateway.store.schema import CaseChanged, OpenedIncident
from gateway.store.timeline import TimelineRows


class CaseRows(TimelineRows):
    def episode_open(self, rule_id: str, device_id: str) -> bool:
        return self._conn.execute("SELECT 1 FROM incidents WHERE rule_id=? AND device_id=? AND state='firing'",
                                  (rule_id, device_id)).fetchone() is not None

    def cases(self, device_id: str, category: str, limit: int = 20) -> list[Case]:
        """The appliance's newest tickets of one category, as the case policy sees them. A ticket with an episode
        still firing takes every later finding, so no open case is ever older than the newest `limit`."""
        rows = self._conn.execute(
            "SELECT t.ticket_id, t.created_at, o.state, "
            "EXISTS (SELECT 1 FROM incidents i WHERE i.ticket_id=t.ticket_id AND i.state='firing'), "
            "(SELECT MAX(s.at) FROM ticket_steps s WHERE s.ticket_id=t.ticket_id AND s.step='repaired'), "
            "EXISTS (SELECT 1 FROM ticket_steps s WHERE s.ticket_id=t.ticket_id AND s.step='confirmed') "
            "FROM tickets t JOIN delivery o USING (ticket_id) WHERE t.device_id=? AND t.category=? "
            "ORDER BY t.ticket_id DESC LIMIT ?", (device_id, category, limit)).fetchall()
        return [Case(int(r[0]), float(r[1]), str(r[2]), bool(r[3]), None if r[4] is None else float(r[4]),
                     bool(r[5])) for r in rows]

    def apply_case(self, decision: Decision, episode: NewEpisode, finding: dict[str, Any],
                   payload: dict[str, Any] | None, queued_at: float, group_wait: float = 0.0) -> OpenedIncident | None:
        """Open the episode on its case as decided, in one transaction: a new ticket with its first steps and
        outbox entry (first sent after `group_wait`, so that rules firing together join one ticket), a rebuilt
        ticket not yet sent, or a finding kept beside a sealed ticket already sent; and a `reopened` step when
        the decision reopens. None if the case changed since the decision (the caller decides again), or if
        the episode is already open."""
        try:
            with self._transaction() as conn:
                if conn.execute("SELECT 1 FROM incidents WHERE rule_id=? AND device_id=? AND state='firing'",
                                (episode.rule_id, episode.device_id)).fetchone():
                    return None
                if decision.ticket_id is None:
                    if payload is None:
                        raise ValueError("a new ticket needs its payload")
                    cursor = conn.execute("INSERT INTO tickets (device_id, category, payload, created_at) "
                                          "VALUES (?, ?, ?, ?)", (episode.device_id, episode.category,
                                                                  orjson.dumps(payload), queued_at))
                    ticket_id = int(cursor.lastrowid or 0)
                    conn.execute("INSERT INTO outbox (ticket_id, idempotency_key, state, next_attempt_at) "
                                 "VALUES (?, ?, 'queued', ?)", (ticket_id, episode.fingerprint, queued_at + group_wait))
                    self._first_steps(conn, ticket_id, episode, finding, payload, queued_at)
                else:
                    ticket_id = decision.ticket_id
                    state = conn.execute("SELECT state FROM delivery WHERE ticket_id=?", (ticket_id,)).fetchone()
                    if state is None or state[0] != decision.expected_delivery:
                        raise CaseChanged
                    if decision.rebuild:
                        if payload is None:
                            raise ValueError("a rebuilt ticket needs its payload")
                        conn.execute("UPDATE tickets SET payload=? WHERE ticket_id=?",
                                     (orjson.dumps(payload), ticket_id))
                    elif not conn.execute("SELECT 1 FROM incidents WHERE ticket_id=? AND rule_id=? LIMIT 1",
                                          (ticket_id, episode.rule_id)).fetchone():
                        # a fault the sealed ticket (which never changes) does not hold yet: kept beside it, and
                        # the platform must hear of it, as a step through the outbox. The same rule firing
                        # again on the ticket (an intermittent fault, a flapping sensor) is its incident only:
                        # the ticket already names that fault, and a step per flap would flood the platform.
                        conn.execute("UPDATE tickets SET late_findings=json_insert(late_findings, '$[#]', json(?)) "
                                     "WHERE ticket_id=?", (orjson.dumps(finding), ticket_id))
                        if not decision.reopens:
                            self._add_step(conn, ticket_id, "finding_added", queued_at, "gateway", "gateway",
                                           f"{episode.fingerprint}:finding_added",
                                           finding_summary(finding, episode), notify=True)
                    if decision.reopens:
                        detail = {"rule": episode.rule_id, "code": finding.get("code"), "onset_ts": episode.onset_ts,
                                  "observed": finding.get("evidence", {}).get("observed", [])}
                        self._add_step(conn, ticket_id, "reopened", queued_at, "gateway", "gateway",
                                       f"{episode.fingerprint}:reopened", detail, notify=True)
                cursor = conn.execute(
                    "INSERT INTO incidents (fingerprint, rule_id, rule_version, device_id, category, ticket_id, "
                    "onset_ts, detected_ts, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'firing')",
                    (episode.fingerprint, episode.rule_id, episode.rule_version, episode.device_id, episode.category,
                     ticket_id, episode.onset_ts, episode.detected_ts))
                incident_id = int(cursor.lastrowid or 0)
        except CaseChanged:
            return None
        incident = Incident(incident_id, episode.fingerprint, episode.rule_id, episode.device_id, episode.onset_ts,
                            episode.detected_ts, IncidentState.FIRING)
        return OpenedIncident(incident, ticket_id, decision.action)

    def _first_steps(self, conn: sqlite3.Connection, ticket_id: int, episode: NewEpisode,
                     finding: dict[str, Any], payload: dict[str, Any], opened_at: float) -> None:
        key, rule_id = episode.fingerprint, episode.rule_id
        onset_ts, detected_ts = episode.onset_ts, episode.detected_ts
        causes = payload.get("probable_causes") or [{}]
        steps = [
            ("detected", detected_ts, {"rule": rule_id, "onset_ts": onset_ts,
                                       "observed": finding.get("evidence", {}).get("observed", [])}),
            ("diagnosed", detected_ts, {"code": finding.get("code"), "top_cause": causes[0].get("cause"),
                                        "causes": len(causes)}),
            ("ticket_opened", opened_at, {"seal_sha256": (payload.get("seal") or {}).get("sha256"),
                                          "price": payload.get("price")}),
        ]
        for step, at, detail in steps:
            self._add_step(conn, ticket_id, step, at, "gateway", "gateway", f"{key}:{step}", detail)

    def resolve_incident(self, rule_id: str, device_id: str, resolved_ts: float) -> bool:
        with self._transaction() as conn:
            cursor = conn.execute("UPDATE incidents SET state='resolved', resolved_ts=? "
                                  "WHERE rule_id=? AND device_id=? AND state='firing'",
                                  (resolved_ts, rule_id, device_id))
            return cursor.rowcount > 0

    def open_incidents(self) -> list[Incident]:
        rows = self._conn.execute(
            "SELECT incident_id, fingerprint, rule_id, device_id, onset_ts, detected_ts, state, resolved_ts "
            "FROM incidents WHERE state='firing' ORDER BY incident_id").fetchall()
        return [Incident(r[0], r[1], r[2], r[3], r[4], r[5], IncidentState(r[6]), r[7]) for r in rows]

    def ticket_payload(self, ticket_id: int) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT payload FROM tickets WHERE ticket_id=?", (ticket_id,)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def ticket_by_key(self, idempotency_key: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT t.payload FROM tickets t JOIN delivery o USING (ticket_id) "
                                 "WHERE o.idempotency_key=?", (idempotency_key,)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))


def finding_summary(finding: dict[str, Any], episode: NewEpisode) -> dict[str, Any]:
    """What a technician needs of a finding added to a ticket already sent: the rule, its diagnosis, the
    observed values against their limits, the causes it proposes and the service items it adds."""
    return {"rule": episode.rule_id, "code": finding.get("code"), "title": finding.get("title"),
            "severity": finding.get("severity"), "onset_ts": episode.onset_ts, "detected_ts": episode.detected_ts,
            "observed": finding.get("evidence", {}).get("observed", []),
            "causes": [c.get("cause") for c in finding.get("causes", [])],
            "service_items": finding.get("service_items", [])}
