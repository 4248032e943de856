"""The durable outbox: ticket and step entries, their delivery state and retry schedule."""

from __future__ import annotations

import math
from typing import Any

from gateway.store.schema import DeliveryState, OutboxEntry, OutboxKind
from gateway.store.timeline import TimelineRows


class OutboxRows(TimelineRows):
    def due_outbox(self, now: float, limit: int, longest_wait: float = math.inf) -> list[OutboxEntry]:
        """Entries due now. A step entry carries its ticket's platform id (empty until the ticket is accepted).

        An entry due further ahead than `longest_wait` (longer than any wait the gateway sets) was scheduled
        before the clock stepped back, and is due now: a clock stepped back 2 h held 8 tickets for 2 h."""
        rows = self._conn.execute(
            "SELECT o.outbox_id, o.ticket_id, o.idempotency_key, COALESCE(o.body, t.payload), o.attempts, "
            "o.next_attempt_at, o.state, o.last_error, d.platform_ticket_id, o.kind FROM outbox o "
            "JOIN tickets t USING (ticket_id) JOIN delivery d USING (ticket_id) "
            "WHERE o.state='queued' AND (o.next_attempt_at <= ? OR o.next_attempt_at > ?) "
            "ORDER BY o.next_attempt_at LIMIT ?",
            (now, now + longest_wait, limit)).fetchall()
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

    def requeue_refused(self, now: float, prefixes: tuple[str, ...]) -> int:
        """Dead entries whose last error starts with one of `prefixes` (an authentication refusal, which says
        nothing about the entry) go back to the queue, due now."""
        with self._transaction() as conn:
            return sum(conn.execute("UPDATE outbox SET state='queued', next_attempt_at=? WHERE state='dead' "
                                    "AND substr(last_error, 1, ?) = ?", (now, len(prefix), prefix)).rowcount
                       for prefix in prefixes)

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

    def platform_ticket_id(self, ticket_id: int) -> str | None:
        """The platform's id for a delivered ticket; None before the platform accepted it."""
        row = self._conn.execute("SELECT platform_ticket_id FROM delivery WHERE ticket_id=? AND state='delivered'",
                                 (ticket_id,)).fetchone()
        return str(row[0]) if row and row[0] else None

    def ticket_by_platform_id(self, platform_ticket_id: str) -> int | None:
        row = self._conn.execute("SELECT ticket_id FROM delivery WHERE platform_ticket_id=?",
                                 (platform_ticket_id,)).fetchone()
        return None if row is None else int(row[0])
