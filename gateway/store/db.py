"""The gateway's SQLite file (WAL): devices, incidents, tickets and the outbox that delivers them.

An incident, its ticket and the ticket's outbox entry are written in one transaction, so a ticket
exists if and only if its incident does, across crashes. A partial unique index allows one open
episode per (rule, device), so a restart can never open a second ticket for the same fault.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from gateway.model import Device, DeviceMeta, Incident, IncidentState


class StorageError(Exception):
    """The database cannot be opened or written (disk full, corrupt file, permissions)."""


class DeliveryState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # a request is in flight; found here at start-up, it was interrupted and goes again
    DELIVERED = "delivered"
    DEAD = "dead"


class CaseAction(StrEnum):
    NEW_TICKET = "new_ticket"
    JOINED = "joined"  # added to a ticket not yet sent
    LATE_FINDING = "late_finding"  # recorded with a ticket already delivered


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


SCHEMA_VERSION = 3
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
    ticket_id INTEGER NOT NULL UNIQUE REFERENCES tickets(ticket_id),
    idempotency_key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    platform_ticket_id TEXT NOT NULL DEFAULT '',
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_attempt_at);
"""


class Database:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
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
            raise StorageError(f"database {self.path}: {exc}") from exc

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
    def open_incident(self, rule_id: str, rule_version: str, device_id: str, category: str, onset_ts: float,
                      detected_ts: float, fingerprint: str, finding: dict[str, Any],
                      build_ticket: Callable[[list[dict[str, Any]], str], dict[str, Any]],
                      queued_at: float, group_wait: float = 0.0) -> OpenedIncident | None:
        """Open an episode in one transaction, and put it on its appliance's open case of the same category.

        A new case gets a ticket and an outbox entry, first sent after `group_wait` so that rules firing
        together join one ticket. While the case's ticket waits, a joining finding rebuilds it; after it was
        delivered, the finding is kept with the local ticket only. `onset_ts`/`detected_ts` are the
        appliance's sample times; `queued_at` is the gateway clock, which alone schedules delivery.
        Returns None if this (rule, device) episode is already open."""
        with self._transaction() as conn:
            exists = conn.execute("SELECT 1 FROM incidents WHERE rule_id=? AND device_id=? AND state='firing'",
                                  (rule_id, device_id)).fetchone()
            if exists:
                return None
            case = conn.execute(
                "SELECT t.ticket_id, t.payload, o.state FROM tickets t JOIN outbox o USING (ticket_id) "
                "WHERE t.device_id=? AND t.category=? AND EXISTS (SELECT 1 FROM incidents i "
                "WHERE i.ticket_id=t.ticket_id AND i.state='firing') ORDER BY t.ticket_id DESC LIMIT 1",
                (device_id, category)).fetchone()
            if case is None:
                payload = build_ticket([finding], fingerprint)
                cursor = conn.execute("INSERT INTO tickets (device_id, category, payload, created_at) "
                                      "VALUES (?, ?, ?, ?)", (device_id, category, orjson.dumps(payload), queued_at))
                ticket_id, action = int(cursor.lastrowid or 0), CaseAction.NEW_TICKET
                conn.execute("INSERT INTO outbox (ticket_id, idempotency_key, state, next_attempt_at) "
                             "VALUES (?, ?, 'queued', ?)", (ticket_id, fingerprint, queued_at + group_wait))
            else:
                ticket_id = int(case[0])
                payload = orjson.loads(case[1])
                findings = [*payload["findings_detail"], finding]
                if case[2] == DeliveryState.QUEUED:
                    payload = build_ticket(findings, payload["idempotency_key"])
                    action = CaseAction.JOINED
                    conn.execute("UPDATE tickets SET payload=? WHERE ticket_id=?",
                                 (orjson.dumps(payload), ticket_id))
                else:  # the sealed ticket that was sent never changes; the finding is kept beside it
                    conn.execute("UPDATE tickets SET late_findings=json_insert(late_findings, '$[#]', json(?)) "
                                 "WHERE ticket_id=?", (orjson.dumps(finding), ticket_id))
                    action = CaseAction.LATE_FINDING
            cursor = conn.execute(
                "INSERT INTO incidents (fingerprint, rule_id, rule_version, device_id, category, ticket_id, onset_ts,"
                " detected_ts, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'firing')",
                (fingerprint, rule_id, rule_version, device_id, category, ticket_id, onset_ts, detected_ts))
            incident_id = int(cursor.lastrowid or 0)
        incident = Incident(incident_id, fingerprint, rule_id, device_id, onset_ts, detected_ts, IncidentState.FIRING)
        return OpenedIncident(incident, ticket_id, action)

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
            "FROM tickets t JOIN outbox o USING (ticket_id) ORDER BY t.ticket_id DESC LIMIT ?", (limit,)).fetchall()
        return [
            {"ticket_id": r[0], "payload": orjson.loads(r[1]), "delivery": r[2], "attempts": r[3],
             "platform_ticket_id": r[4], "last_error": r[5], "incident_state": "firing" if r[6] else "resolved",
             "late_findings": [f["rule"] for f in orjson.loads(r[7])]}
            for r in rows
        ]

    def ticket_by_key(self, idempotency_key: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT t.payload FROM tickets t JOIN outbox o USING (ticket_id) "
                                 "WHERE o.idempotency_key=?", (idempotency_key,)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def ticket_payload(self, ticket_id: int) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT payload FROM tickets WHERE ticket_id=?", (ticket_id,)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    # outbox --------------------------------------------------------------------------------------------------
    def due_outbox(self, now: float, limit: int) -> list[OutboxEntry]:
        rows = self._conn.execute(
            "SELECT o.outbox_id, o.ticket_id, o.idempotency_key, t.payload, o.attempts, o.next_attempt_at, "
            "o.state, o.last_error, o.platform_ticket_id FROM outbox o JOIN tickets t USING (ticket_id) "
            "WHERE o.state='queued' AND o.next_attempt_at <= ? ORDER BY o.next_attempt_at LIMIT ?",
            (now, limit)).fetchall()
        return [OutboxEntry(r[0], r[1], r[2], r[3], r[4], r[5], DeliveryState(r[6]), r[7], r[8]) for r in rows]

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
            "t.created_at, o.idempotency_key FROM outbox o JOIN tickets t USING (ticket_id) "
            "WHERE ? IS NULL OR o.state = ? ORDER BY o.outbox_id DESC LIMIT ?", (state, state, limit)).fetchall()
        keys = ("outbox_id", "ticket_id", "device_id", "category", "fault_code", "state", "attempts",
                "next_attempt_at", "last_error", "platform_ticket_id", "delivered_at", "created_at", "idempotency_key")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def mark_delivered(self, outbox_id: int, platform_ticket_id: str, now: float) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE outbox SET state='delivered', platform_ticket_id=?, delivered_at=?, "
                         "attempts=attempts+1, last_error='' WHERE outbox_id=?", (platform_ticket_id, now, outbox_id))

    def schedule_retry(self, outbox_id: int, next_attempt_at: float, error: str) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE outbox SET state='queued', attempts=attempts+1, next_attempt_at=?, last_error=? "
                         "WHERE outbox_id=?", (next_attempt_at, error, outbox_id))

    def dead_letter(self, outbox_id: int, error: str) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE outbox SET state='dead', attempts=attempts+1, last_error=? WHERE outbox_id=?",
                         (error, outbox_id))

    def outbox_counts(self) -> dict[str, int]:
        rows = self._conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        counts = {s.value: 0 for s in DeliveryState}
        counts.update({r[0]: r[1] for r in rows})
        return counts
