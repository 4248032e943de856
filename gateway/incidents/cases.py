"""Which ticket a new finding goes on: the case policy, a pure function, and the one place that applies it.

A case is one ticket of an appliance for one category of fault. `decide` looks at the appliance's recent
cases and says whether the finding opens a new ticket, joins a ticket not yet sent, is a late finding beside a
ticket already delivered, or reopens a ticket whose repair did not hold. The store applies the decision in one
transaction and refuses it if the case changed meanwhile (the sender took the ticket); then the decision is
made again on what the store holds now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.model import Case, CaseAction, CasePolicy, Decision, NewEpisode
from gateway.store.db import Database, OpenedIncident


def decide(cases: list[Case], now: float, policy: CasePolicy) -> Decision:
    """The newest case that is still open (an episode firing), recent and not yet repaired (an intermittent fault
    came back before anyone came), or repaired within the reopen window (the repair did not hold). A ticket the
    platform refused for good (dead-lettered) is no case any more: a new finding never joins it."""
    since = now - policy.reopen_window
    open_cases = [c for c in cases if c.delivery != "dead"  # the platform refused it: a finding there is lost
                  and (c.firing
                  or (c.created_at > since and c.repaired_at is None and not c.confirmed)
                  or (c.repaired_at is not None and c.repaired_at >= since))]
    if not open_cases:
        return Decision(CaseAction.NEW_TICKET)
    case = max(open_cases, key=lambda c: c.ticket_id)
    rebuild = case.delivery == "queued"
    if not case.firing and case.repaired_at is not None:
        action = CaseAction.REOPENED
    else:
        action = CaseAction.JOINED if rebuild else CaseAction.LATE_FINDING
    return Decision(action, case.ticket_id, rebuild, case.delivery)


BuildTicket = Callable[[list[dict[str, Any]], str, float], dict[str, Any]]  # (findings, key, opened_at) -> payload
ATTEMPTS = 3


def open_incident(db: Database, episode: NewEpisode, finding: dict[str, Any], build_ticket: BuildTicket,
                  now: float, policy: CasePolicy, group_wait: float = 0.0) -> OpenedIncident | None:
    """Record a firing episode on its case. The ticket is built outside the store's transaction; the store
    applies the decision only if the case is as it was decided on, else the decision is made again.
    Returns None if this (rule, device) episode is already open."""
    for _ in range(ATTEMPTS):
        if db.episode_open(episode.rule_id, episode.device_id):
            return None
        decision = decide(db.cases(episode.device_id, episode.category), now, policy)
        payload = None
        if decision.ticket_id is None:
            payload = build_ticket([finding], episode.fingerprint, now)
        elif decision.rebuild:
            current = db.ticket_payload(decision.ticket_id) or {}
            payload = build_ticket([*current.get("findings_detail", []), finding],
                                   str(current.get("idempotency_key", episode.fingerprint)),
                                   float(current.get("opened_at", now)))
        opened = db.apply_case(decision, episode, finding, payload, now, group_wait)
        if opened is not None:
            return opened
    raise RuntimeError(f"the case of {episode.device_id} kept changing while a finding was recorded")
