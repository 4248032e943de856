"""The gateway's SQLite file (WAL): devices, incidents, tickets, their service steps, and the outbox.

An incident, its ticket, the ticket's first steps and its outbox entry are written in one transaction, so
a ticket exists if and only if its incident does, across crashes. A partial unique index allows one open
episode per (rule, device), so a restart can never open a second ticket for the same fault. The outbox
carries two kinds of entry: the ticket itself (one per ticket) and the service steps the gateway reports
to the platform afterwards (technician verified, repair verified by telemetry, reopened, confirmed).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from gateway.model import Case, CaseAction, Decision, Device, DeviceMeta, Incident, IncidentState, NewEpisode


class StorageError(Exception):
    """The database cannot be opened or written (disk full, corrupt file, permissions)."""


class _CaseChanged(Exception):
    """The case a decision was made on changed before it could be applied."""


class DeliveryState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # a request is in flight; found here at start-up, it was interrupted and goes again
    DELIVERED = "delivered"
    DEAD = "dead"


class OutboxKind(StrEnum):
    TICKET = "ticket"  # POST /v1/tickets
    STEP = "step"  # POST /v1/tickets/{platform id}/steps, once the ticket was accepted


@dataclass(frozen=True, slots=True)
class OpenedIncident:
    incident: Incident
    ticket_id: int
    action: CaseAction


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    outbox_id: int
    ticket_id: int
    idempotency_key: str
    payload: bytes
    attempts: int
    next_attempt_at: float
    state: DeliveryState
    last_error: str
    platform_ticket_id: str
    kind: OutboxKind = OutboxKind.TICKET


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a ticket's service timeline, with who did it and when."""

    step_id: int
    ticket_id: int
    step: str
    at: float
    actor: str
    source: str  # gateway | webhook | poll | customer
    event_id: str
    detail: dict[str, Any]


SCHEMA_VERSION = 4
SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    appliance_type TEXT NOT NULL DEFAULT '',
    brand TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '',
    serial TEXT NOT NULL DEFAULT '', firmware TEXT NOT NULL DEFAULT '',
    online INTEGER, last_seen REAL
);
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    category TEXT NOT NULL,
    payload BLOB NOT NULL,
    late_findings BLOB NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    incident_id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    rule_id TEXT NOT NULL, rule_version TEXT NOT NULL,
    device_id TEXT NOT NULL,
    category TEXT NOT NULL,
    ticket_id INTEGER NOT NULL REFERENCES tickets(ticket_id),
    onset_ts REAL NOT NULL, detected_ts REAL NOT NULL,
    state TEXT NOT NULL, resolved_ts REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_open_episode ON incidents(rule_id, device_id) WHERE state = 'firing';
CREATE INDEX IF NOT EXISTS incidents_by_ticket ON incidents(ticket_id, state);
CREATE TABLE IF NOT EXISTS outbox (
    outbox_id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(ticket_id),
    kind TEXT NOT NULL DEFAULT 'ticket',
    body BLOB,
    idempotency_key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    platform_ticket_id TEXT NOT NULL DEFAULT '',
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_attempt_at);
CREATE UNIQUE INDEX IF NOT EXISTS one_ticket_delivery ON outbox(ticket_id) WHERE kind = 'ticket';
CREATE VIEW IF NOT EXISTS delivery AS SELECT * FROM outbox WHERE kind = 'ticket';
CREATE TABLE IF NOT EXISTS ticket_steps (
    step_id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(ticket_id),
    step TEXT NOT NULL,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    detail BLOB NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS steps_by_ticket ON ticket_steps(ticket_id, step_id);
CREATE TABLE IF NOT EXISTS visit_codes (
    ticket_id INTEGER PRIMARY KEY REFERENCES tickets(ticket_id),
    digest TEXT NOT NULL,
    technician BLOB NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    used_at REAL
);
"""


class Database:
    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        """`read_only`: a reader for queries off the event loop; it never writes, and never waits for a writer."""
        self.path = Path(path)
        if read_only:
            self._open_reader()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=5000")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            has_tables = self._conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
            if has_tables and version != SCHEMA_VERSION:
                raise StorageError(f"{self.path} was written by another version of the gateway (schema {version}, "
                                   f"this one uses {SCHEMA_VERSION}); move it aside to start a new one")
            self._conn.executescript(SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open the gateway database {self.path}: {exc}") from exc

    def _open_reader(self) -> None:
        try:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the gateway database {self.path}: {exc}") from exc

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            hint = " (is the disk full, read-only or failing?)" if "disk" in str(exc) else ""
            raise StorageError(f"database {self.path}: {exc}{hint}") from exc

    # devices ---------------------------------------------------------------------------------------------
    def save_devices(self, devices: list[Device]) -> None:
        rows = [
            (d.device_id, d.meta.appliance_type if d.meta else "", d.meta.brand if d.meta else "",
             d.meta.model if d.meta else "", d.meta.serial if d.meta else "", d.meta.firmware if d.meta else "",
             None if d.online is None else int(d.online), d.last_seen)
            for d in devices
        ]
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
                "appliance_type=excluded.appliance_type, brand=excluded.brand, model=excluded.model, "
                "serial=excluded.serial, firmware=excluded.firmware, online=excluded.online, "
                "last_seen=excluded.last_seen", rows)

    def load_devices(self) -> list[Device]:
        rows = self._conn.execute("SELECT * FROM devices ORDER BY device_id").fetchall()
        return [
            Device(r[0], DeviceMeta(r[1], r[2], r[3], r[4], r[5]) if r[1] else None,
                   None if r[6] is None else bool(r[6]), r[7])
            for r in rows
        ]

    # incidents and tickets ---------------------------------------------------------------------------------
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
                        raise _CaseChanged
                    if decision.rebuild:
                        if payload is None:
                            raise ValueError("a rebuilt ticket needs its payload")
                        conn.execute("UPDATE tickets SET payload=? WHERE ticket_id=?",
                                     (orjson.dumps(payload), ticket_id))
                    else:  # the sealed ticket that was sent never changes; the finding is kept beside it
                        conn.execute("UPDATE tickets SET late_findings=json_insert(late_findings, '$[#]', json(?)) "
                                     "WHERE ticket_id=?", (orjson.dumps(finding), ticket_id))
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
        except _CaseChanged:
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

    def has_event(self, event_id: str) -> bool:
        return self._conn.execute("SELECT 1 FROM ticket_steps WHERE event_id=?", (event_id,)).fetchone() is not None

    def platform_ticket_id(self, ticket_id: int) -> str | None:
        """The platform's id for a delivered ticket; None before the platform accepted it."""
        row = self._conn.execute("SELECT platform_ticket_id FROM delivery WHERE ticket_id=? AND state='delivered'",
                                 (ticket_id,)).fetchone()
        return str(row[0]) if row and row[0] else None

    def ticket_by_platform_id(self, platform_ticket_id: str) -> int | None:
        row = self._conn.execute("SELECT ticket_id FROM delivery WHERE platform_ticket_id=?",
                                 (platform_ticket_id,)).fetchone()
        return None if row is None else int(row[0])

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
        """Tickets whose newest step is `repaired`, with what telemetry verification needs to decide."""
        rows = self._conn.execute(
            "SELECT t.ticket_id, t.device_id, s.at, s.event_id, "
            "(SELECT COUNT(*) FROM incidents i WHERE i.ticket_id=t.ticket_id AND i.state='firing'), "
            "(SELECT MAX(resolved_ts) FROM incidents i WHERE i.ticket_id=t.ticket_id), "
            "(SELECT json_group_array(DISTINCT rule_id) FROM incidents i WHERE i.ticket_id=t.ticket_id) "
            "FROM tickets t JOIN ticket_steps s ON s.ticket_id=t.ticket_id "
            "WHERE s.step_id=(SELECT MAX(step_id) FROM ticket_steps x WHERE x.ticket_id=t.ticket_id) "
            "AND s.step='repaired'").fetchall()
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

    def tickets(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest tickets with their delivery state, for the web page and the demo summary."""
        rows = self._conn.execute(
            "SELECT t.ticket_id, t.payload, o.state, o.attempts, o.platform_ticket_id, o.last_error, "
            "EXISTS (SELECT 1 FROM incidents i WHERE i.ticket_id=t.ticket_id AND i.state='firing'), t.late_findings "
            "FROM tickets t JOIN delivery o USING (ticket_id) ORDER BY t.ticket_id DESC LIMIT ?", (limit,)).fetchall()
        return [
            {"ticket_id": r[0], "payload": orjson.loads(r[1]), "delivery": r[2], "attempts": r[3],
             "platform_ticket_id": r[4], "last_error": r[5], "incident_state": "firing" if r[6] else "resolved",
             "late_findings": [f["rule"] for f in orjson.loads(r[7])]}
            for r in rows
        ]

    def ticket_by_key(self, idempotency_key: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT t.payload FROM tickets t JOIN delivery o USING (ticket_id) "
                                 "WHERE o.idempotency_key=?", (idempotency_key,)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def ticket_payload(self, ticket_id: int) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT payload FROM tickets WHERE ticket_id=?", (ticket_id,)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    # outbox --------------------------------------------------------------------------------------------------
    def due_outbox(self, now: float, limit: int) -> list[OutboxEntry]:
        """Entries due now. A step entry carries its ticket's platform id (empty until the ticket is accepted)."""
        rows = self._conn.execute(
            "SELECT o.outbox_id, o.ticket_id, o.idempotency_key, COALESCE(o.body, t.payload), o.attempts, "
            "o.next_attempt_at, o.state, o.last_error, d.platform_ticket_id, o.kind FROM outbox o "
            "JOIN tickets t USING (ticket_id) JOIN delivery d USING (ticket_id) "
            "WHERE o.state='queued' AND o.next_attempt_at <= ? ORDER BY o.next_attempt_at LIMIT ?",
            (now, limit)).fetchall()
        return [OutboxEntry(r[0], r[1], r[2], r[3], r[4], r[5], DeliveryState(r[6]), r[7], r[8], OutboxKind(r[9]))
                for r in rows]

    def next_outbox_due(self) -> float | None:
        row = self._conn.execute("SELECT MIN(next_attempt_at) FROM outbox WHERE state='queued'").fetchone()
        return None if row[0] is None else float(row[0])

    def mark_sending(self, outbox_id: int) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE outbox SET state='sending' WHERE outbox_id=?", (outbox_id,))

    def recover_interrupted_sends(self) -> int:
        """Entries left 'sending' by a crash go back to the queue; the idempotency key makes the resend safe."""
        with self._transaction() as conn:
            return conn.execute("UPDATE outbox SET state='queued' WHERE state='sending'").rowcount

    def requeue(self, outbox_id: int, now: float) -> bool:
        """Send again now (after fixing why it was dead-lettered, or to skip a long backoff)."""
        with self._transaction() as conn:
            return conn.execute("UPDATE outbox SET state='queued', next_attempt_at=? WHERE outbox_id=? "
                                "AND state IN ('queued', 'dead')", (now, outbox_id)).rowcount > 0

    def outbox_entries(self, state: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT o.outbox_id, o.ticket_id, t.device_id, t.category, json_extract(t.payload, '$.fault.code'), "
            "o.state, o.attempts, o.next_attempt_at, o.last_error, o.platform_ticket_id, o.delivered_at, "
            "t.created_at, o.idempotency_key, o.kind, json_extract(o.body, '$.step') "
            "FROM outbox o JOIN tickets t USING (ticket_id) "
            "WHERE ? IS NULL OR o.state = ? ORDER BY o.outbox_id DESC LIMIT ?", (state, state, limit)).fetchall()
        keys = ("outbox_id", "ticket_id", "device_id", "category", "fault_code", "state", "attempts",
                "next_attempt_at", "last_error", "platform_ticket_id", "delivered_at", "created_at", "idempotency_key",
                "kind", "step")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def mark_delivered(self, entry: OutboxEntry, platform_ticket_id: str, now: float) -> None:
        """Delivered; a ticket's acceptance is also the `accepted` step of its timeline."""
        with self._transaction() as conn:
            conn.execute("UPDATE outbox SET state='delivered', platform_ticket_id=?, delivered_at=?, "
                         "attempts=attempts+1, last_error='' WHERE outbox_id=?",
                         (platform_ticket_id, now, entry.outbox_id))
            if entry.kind is OutboxKind.TICKET:
                self._add_step(conn, entry.ticket_id, "accepted", now, "platform", "gateway",
                               f"{entry.idempotency_key}:accepted", {"platform_ticket_id": platform_ticket_id})

    def postpone(self, outbox_id: int, next_attempt_at: float, reason: str) -> None:
        """Not an attempt: the entry waits for something else first (a step for its ticket's acceptance)."""
        with self._transaction() as conn:
            conn.execute("UPDATE outbox SET state='queued', next_attempt_at=?, last_error=? WHERE outbox_id=?",
                         (next_attempt_at, reason, outbox_id))

    def schedule_retry(self, outbox_id: int, next_attempt_at: float, error: str) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE outbox SET state='queued', attempts=attempts+1, next_attempt_at=?, last_error=? "
                         "WHERE outbox_id=?", (next_attempt_at, error, outbox_id))

    def dead_letter(self, outbox_id: int, error: str) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE outbox SET state='dead', attempts=attempts+1, last_error=? WHERE outbox_id=?",
                         (error, outbox_id))

    def outbox_counts(self, kind: OutboxKind = OutboxKind.TICKET) -> dict[str, int]:
        rows = self._conn.execute("SELECT state, COUNT(*) FROM outbox WHERE kind=? GROUP BY state",
                                  (kind.value,)).fetchall()
        counts = {s.value: 0 for s in DeliveryState}
        counts.update({r[0]: r[1] for r in rows})
        return counts
