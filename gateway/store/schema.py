"""The gateway database's schema, its storage error, and the row types its aggregates return.

An incident, its ticket, the ticket's first steps and its outbox entry are written in one transaction, so
a ticket exists if and only if its incident does, across crashes. A partial unique index allows one open
episode per (rule, device), so a restart can never open a second ticket for the same fault. The outbox
carries two kinds of entry: the ticket itself (one per ticket) and the service steps the gateway reports
to the platform afterwards (technician verified, repair verified by telemetry, reopened, confirmed).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gateway.model import CaseAction, Incident


class StorageError(Exception):
    """The database cannot be opened or written (disk full, corrupt file, permissions)."""


class CaseChanged(Exception):
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


