"""Deliver queued tickets (and the service steps reported after them) to the platform, idempotently.

5xx, 408, 429, timeouts and refused connections are retried with jittered exponential backoff (and
Retry-After when given). 401 and 403 say nothing about the ticket: they are a state of the link (a wrong or
expired token), said loudly once and shown in the status, and every ticket waits, retried with the same backoff,
until the platform accepts the gateway again. Any other 4xx means the platform will never accept that ticket,
so it is dead-lettered with the reason and shown, not retried forever. The idempotency key makes every resend
safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from gateway.clock import Clock
from gateway.config import UpstreamConfig
from gateway.latency import SLOW_BUCKETS, Histogram
from gateway.store.db import Database, OutboxEntry, OutboxKind, StorageError

log = logging.getLogger("gateway.outbox")

RETRYABLE_4XX = {408, 425, 429}
AUTH_REFUSED = {401, 403}
WAIT_FOR_ACCEPTANCE_SECONDS = 5.0
STORAGE_RETRY_SECONDS = 5.0
FAILURES_BEFORE_WARNING = 3


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    retry: bool
    detail: str
    platform_ticket_id: str = ""
    retry_after: float | None = None
    auth_refused: bool = False  # 401/403: the gateway's credentials, not this ticket


def backoff_seconds(attempts: int, minimum: float, maximum: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: spread retries so a recovering platform is not hit all at once."""
    ceiling = min(maximum, minimum * (2 ** min(attempts, 30)))
    return rng.uniform(minimum, max(minimum, ceiling))


def classify(status: int, body: dict[str, object] | None, retry_after: str | None) -> Outcome:
    if status in (200, 201):
        ticket_id = str((body or {}).get("ticket_id", ""))
        return Outcome(True, False, f"HTTP {status}", ticket_id)
    wait = _parse_retry_after(retry_after)
    if status >= 500 or status in RETRYABLE_4XX:
        return Outcome(False, True, f"HTTP {status}", retry_after=wait)
    message = str((body or {}).get("error", "")) if body else ""
    detail = f"HTTP {status} {message}".strip()
    if status in AUTH_REFUSED:
        return Outcome(False, True, detail, retry_after=wait, auth_refused=True)
    return Outcome(False, False, detail)


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class OutboxSender:
    def __init__(self, db: Database, config: UpstreamConfig, clock: Clock, rng: random.Random | None = None) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        self.delivered = 0
        self.failed_attempts = 0
        self.dead_lettered = 0
        self.storage_errors = 0
        self.storage_errors_in_a_row = 0
        self.decision_to_delivery = Histogram("From a ticket's opening to the platform's acceptance of it.",
                                              SLOW_BUCKETS)
        self._failures_in_a_row = 0
        self._over_bound = False
        self.auth_refused = ""  # while the platform refuses the gateway's credentials: its answer

    @property
    def longest_wait(self) -> float:
        """More than any delay the gateway gives an entry (retry backoff, Retry-After, group wait, waiting for
        acceptance): an entry due later than this from now was scheduled before the clock stepped back."""
        return max(self.config.retry_max_seconds, self.config.group_wait_seconds, WAIT_FOR_ACCEPTANCE_SECONDS) + 1.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_seconds)
        interrupted = self.db.recover_interrupted_sends()
        if interrupted:
            log.warning("%d ticket(s) were being sent when the gateway stopped; sending them again "
                        "(the platform deduplicates on the idempotency key)", interrupted)
        self._requeue_refused("dead-lettered for an authentication failure before this start")
        in_flight: dict[int, asyncio.Task[None]] = {}
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                while True:
                    try:
                        self._finished(in_flight)
                        self._start_due(session, in_flight)
                        if self.storage_errors_in_a_row:
                            log.warning("outbox storage works again")
                        self.storage_errors_in_a_row = 0
                        await self._wait(in_flight)
                    except StorageError as exc:
                        self.storage_errors += 1
                        self.storage_errors_in_a_row += 1
                        if self.storage_errors_in_a_row == 1:  # once per state change
                            log.error("outbox storage failed (%s); nothing is dropped, retrying every %.0f s",
                                      exc, STORAGE_RETRY_SECONDS)
                        if in_flight:  # let what is being sent finish before the interrupted sends go back
                            await asyncio.wait(in_flight.values())
                            with contextlib.suppress(StorageError):
                                self._finished(in_flight)
                        await asyncio.sleep(STORAGE_RETRY_SECONDS)
                        with contextlib.suppress(StorageError):  # entries whose outcome could not be written
                            self.db.recover_interrupted_sends()
            finally:
                for task in in_flight.values():
                    task.cancel()
                await asyncio.gather(*in_flight.values(), return_exceptions=True)

    def _start_due(self, session: aiohttp.ClientSession, in_flight: dict[int, asyncio.Task[None]]) -> None:
        """Fill every free slot of `max_in_flight` with a due entry: each request runs on its own, so one slow
        request holds one slot, never the others (a gathered batch had waited for its slowest request)."""
        free = self.config.max_in_flight - len(in_flight)
        if free <= 0:
            return
        due = self.db.due_outbox(self.clock.now(), free + len(in_flight), self.longest_wait)
        self._check_bound()
        for entry in [e for e in due if e.outbox_id not in in_flight][:free]:
            in_flight[entry.outbox_id] = asyncio.create_task(self._deliver(session, entry),
                                                             name=f"outbox-{entry.outbox_id}")

    @staticmethod
    def _finished(in_flight: dict[int, asyncio.Task[None]]) -> None:
        """Forget the requests that are done; a storage error (or a bug) in one of them surfaces here."""
        done = [(outbox_id, task) for outbox_id, task in in_flight.items() if task.done()]
        for outbox_id, _ in done:
            del in_flight[outbox_id]
        errors = [error for _, task in done if not task.cancelled() and (error := task.exception()) is not None]
        if errors:
            raise errors[0]

    async def _wait(self, in_flight: dict[int, asyncio.Task[None]]) -> None:
        """Until a request finishes, the sender is woken (a new ticket) or the next entry falls due (at most
        1 s: a clock step costs no more); while every slot is busy, only a request finishing frees one."""
        waiters: set[asyncio.Future[Any]] = set(in_flight.values())
        timeout = None
        if len(in_flight) < self.config.max_in_flight:
            next_due = self.db.next_outbox_due()
            timeout = 1.0 if next_due is None else min(1.0, max(0.0, next_due - self.clock.now()))
            self._wake.clear()
            waiters.add(asyncio.ensure_future(self._wake.wait()))
        done, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending | done:
            if waiter not in in_flight.values():
                waiter.cancel()

    def _check_bound(self) -> None:
        """Tickets are never dropped; a queue past its bound is said loudly, once per crossing."""
        queued = self.db.outbox_counts()["queued"]
        over = queued > self.config.max_queued_tickets
        if over and not self._over_bound:
            log.error("%d tickets are waiting for the service platform (bound %d): none is dropped, but the "
                      "platform is not keeping up or not reachable; check %s", queued,
                      self.config.max_queued_tickets, self.config.url)
        elif not over and self._over_bound:
            log.warning("ticket queue back under its bound (%d waiting)", queued)
        self._over_bound = over

    def _observe_delivery(self, entry: OutboxEntry, now: float) -> None:
        """Decision (the ticket's opened_at) to the platform's acceptance, group wait and retries included."""
        with contextlib.suppress(orjson.JSONDecodeError, TypeError, ValueError):
            opened = float(orjson.loads(entry.payload).get("opened_at"))
            self.decision_to_delivery.observe(max(0.0, now - opened))

    async def _deliver(self, session: aiohttp.ClientSession, entry: OutboxEntry) -> None:
        if entry.kind is OutboxKind.STEP and not entry.platform_ticket_id:
            self.db.postpone(entry.outbox_id, self.clock.now() + WAIT_FOR_ACCEPTANCE_SECONDS,
                             "waiting for the platform to accept the ticket first")
            return
        self.db.mark_sending(entry.outbox_id)
        outcome = await self._post(session, entry)
        now = self.clock.now()
        if outcome.delivered:
            self.db.mark_delivered(entry, outcome.platform_ticket_id or entry.platform_ticket_id, now)
            self.delivered += 1
            if entry.kind is OutboxKind.TICKET:
                self._observe_delivery(entry, now)
            self._set_upstream(True, "")
            self._set_auth("")
            what = "ticket" if entry.kind is OutboxKind.TICKET else f"step entry {entry.outbox_id} of ticket"
            log.info("%s %d delivered as %s", what, entry.ticket_id, outcome.platform_ticket_id or "(no id)")
        elif outcome.retry:
            self.failed_attempts += 1
            delay = backoff_seconds(entry.attempts, self.config.retry_min_seconds, self.config.retry_max_seconds,
                                    self.rng)
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, self.config.retry_max_seconds))
            self.db.schedule_retry(entry.outbox_id, now + delay, outcome.detail)
            if outcome.auth_refused:
                self._set_auth(outcome.detail)
            else:
                self._set_upstream(False, outcome.detail)
        else:
            self.dead_lettered += 1
            self.db.dead_letter(entry.outbox_id, outcome.detail)
            log.error("ticket %d rejected by the platform and dead-lettered: %s", entry.ticket_id, outcome.detail)

    async def _post(self, session: aiohttp.ClientSession, entry: OutboxEntry) -> Outcome:
        headers = {"Content-Type": "application/json", "Idempotency-Key": entry.idempotency_key}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        url = self.config.url.rstrip("/") + "/v1/tickets"
        if entry.kind is OutboxKind.STEP:
            url += f"/{entry.platform_ticket_id}/steps"
        try:
            async with session.post(url, data=entry.payload, headers=headers) as response:
                try:
                    body = await response.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    body = None
                return classify(response.status, body if isinstance(body, dict) else None,
                                response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Outcome(False, True, f"{type(exc).__name__}: {exc}"[:200])

    def _set_auth(self, refusal: str) -> None:
        """Log the platform refusing the gateway's credentials once, and accepting them again once; then send
        again at once what an older version dead-lettered for a refusal."""
        if refusal and not self.auth_refused:
            queued = self.db.outbox_counts()["queued"]
            log.error("the service platform refuses the gateway's credentials (%s): check upstream.token (and "
                      "the platform's side). %d ticket(s) wait; none is dropped, each is retried until the "
                      "platform accepts again", refusal, queued)
        elif not refusal and self.auth_refused:
            log.warning("the service platform accepts the gateway's credentials again")
            self._requeue_refused("dead-lettered for an authentication failure")
        self.auth_refused = refusal

    def _requeue_refused(self, why: str) -> None:
        count = self.db.requeue_refused(self.clock.now(), tuple(f"HTTP {s}" for s in sorted(AUTH_REFUSED)))
        if count:
            log.warning("%d outbox entr%s %s: queued again", count, "y" if count == 1 else "ies", why)

    def _set_upstream(self, ok: bool, detail: str) -> None:
        """Log the platform going away and coming back once each; a single failed answer among good
        ones (a flaky platform) is retried quietly."""
        if ok:
            if self._failures_in_a_row >= FAILURES_BEFORE_WARNING:
                log.info("service platform reachable again at %s", self.config.url)
            self._failures_in_a_row = 0
            return
        self._failures_in_a_row += 1
        if self._failures_in_a_row == FAILURES_BEFORE_WARNING:
            log.warning("service platform not accepting tickets (%s); retrying with backoff", detail)
