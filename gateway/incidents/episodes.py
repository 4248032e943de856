"""Turn alert transitions into incidents: one per fault episode, each with exactly one ticket."""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from gateway.clock import Clock
from gateway.diagnosis.evidence import build_evidence, build_finding
from gateway.diagnosis.seal import seal
from gateway.engine.evaluator import AlertTransition, Evaluator, Transition
from gateway.engine.expr import EvalContext
from gateway.engine.rules import Rule
from gateway.incidents.cases import open_incident
from gateway.ingest.registry import DeviceRegistry
from gateway.model import CaseAction, CasePolicy, NewEpisode
from gateway.outbox.mapping import incident_fingerprint, ticket_payload
from gateway.prices import PriceTable
from gateway.store.db import Database, StorageError
from gateway.store.window import WindowStore

log = logging.getLogger("gateway.incidents")

UNWRITTEN_LIMIT = 10_000  # incident records kept in memory while the database cannot take them


class IncidentManager:
    def __init__(self, db: Database, store: WindowStore, registry: DeviceRegistry, site: str, clock: Clock,
                 on_ticket: Callable[[], None] | None = None, prices: PriceTable | None = None,
                 rules: list[Rule] | None = None, group_wait: float = 0.0,
                 context_for: Callable[[str, str], EvalContext | None] | None = None,
                 seal_key: bytes | None = None, derived: dict[str, list[str]] | None = None,
                 reopen_window: float = 0.0, partition: tuple[int, int] | None = None) -> None:
        self.db = db
        self.store = store
        self.registry = registry
        self.site = site
        self.partition = partition
        self.clock = clock
        self.on_ticket = on_ticket
        self.prices = prices
        self.rules = {rule.rule_id: rule for rule in rules or []}
        self.group_wait = group_wait
        self.context_for = context_for
        self.seal_key = seal_key
        self.derived = derived or {}  # appliance -> names of its derived metrics
        self.policy = CasePolicy(reopen_window)  # a fault back this soon after a repair reopens its ticket
        self.open_rules: dict[str, dict[str, Rule]] = {}  # device -> firing incidents' rules
        self.opened = 0
        self.resolved = 0
        self.inhibited = 0
        self.unwritten: deque[Callable[[], None]] = deque(maxlen=UNWRITTEN_LIMIT)  # waiting for the database
        self.unwritten_lost = 0

    def restore(self, evaluator: Evaluator) -> int:
        """Re-arm the episodes still open in the database (after a restart or a crash)."""
        restored = 0
        for incident in self.db.open_incidents():
            if evaluator.restore_firing(incident.rule_id, incident.device_id, incident.onset_ts):
                restored += 1
                rule = self.rules.get(incident.rule_id)
                if rule is not None:
                    self.open_rules.setdefault(incident.device_id, {})[incident.rule_id] = rule
        if restored:
            log.info("resumed %d open incident(s) from the database", restored)
        return restored

    def handle(self, transitions: list[AlertTransition],
               evaluator: Evaluator | None = None) -> list[AlertTransition]:
        """Record transitions; returns the firings to re-arm: the inhibited ones.

        Data-quality transitions go first, so a sensor fault found in the same pass inhibits the component
        faults it would otherwise have caused. What the database cannot take now (a full disk) is kept in
        memory, in order, and written when it can (`write_held`): a fault that begins and ends while the disk is
        full is still recorded, and its ticket sent."""
        inhibited: list[AlertTransition] = []
        # resolutions first (what a cleared suppressor held back needs fresh evidence), then data quality
        order = sorted(transitions, key=lambda t: (t.kind is Transition.FIRING,
                                                   t.rule.diagnosis.category != "data_quality"))
        for transition in order:
            if transition.kind is Transition.FIRING:
                stale = evaluator is not None and evaluator.is_quiet(transition.rule.rule_id,
                                                                     transition.device_id, transition.at_ts)
                if stale or self._inhibited_by(transition):
                    self.inhibited += 1
                    inhibited.append(transition)
                    continue
                self._write(self._open(transition))
            else:
                self._write(self._resolve(transition, evaluator))
        return inhibited

    def _write(self, record: Callable[[], None]) -> None:
        """Write one record now, or keep it behind those already waiting (order matters: an episode is opened
        before it is resolved)."""
        if not self.unwritten:
            try:
                record()
                return
            except StorageError as exc:
                log.error("the database cannot take incidents (%s): they are kept in memory (at most %d) and "
                          "written when it can", exc, self.unwritten.maxlen)
        if len(self.unwritten) == self.unwritten.maxlen:
            self.unwritten_lost += 1
            if self.unwritten_lost == 1:
                log.error("more than %d incident records wait for the database: the oldest are lost from now on",
                          self.unwritten.maxlen)
        self.unwritten.append(record)

    def write_held(self) -> int:
        """Write what waits, in order, until the first that still fails; the number written."""
        written = 0
        while self.unwritten:
            try:
                self.unwritten[0]()
            except StorageError:
                return written
            self.unwritten.popleft()
            written += 1
        if written:
            log.warning("the database takes incidents again: %d record(s) kept in memory are written", written)
        return written

    def record(self, transitions: list[AlertTransition], evaluator: Evaluator) -> list[AlertTransition]:
        """Handle transitions and re-arm in the evaluator those to retry (inhibited, or not stored); returns them."""
        held = self.handle(transitions, evaluator) if transitions else []
        for retry in held:
            evaluator.rearm(retry.rule.rule_id, retry.device_id)
        return held

    def _inhibited_by(self, transition: AlertTransition) -> str | None:
        """The open incident that suppresses this one: a data-quality problem, or a root cause naming it."""
        rule = transition.rule
        for other in self.open_rules.get(transition.device_id, {}).values():
            if rule.diagnosis.category != "data_quality" and other.diagnosis.category == "data_quality":
                return other.rule_id
            if rule.rule_id in other.inhibits:
                return other.rule_id
        return None

    def _open(self, transition: AlertTransition) -> Callable[[], None]:
        """The evidence and finding are taken now (from the window as it is at the transition); the returned
        write puts the episode and its ticket into the database."""
        rule, device_id = transition.rule, transition.device_id
        fingerprint = incident_fingerprint(self.site, device_id, rule.rule_id, transition.onset_ts)
        evidence = build_evidence(transition, self.store.snapshot(device_id))
        evidence["derived"] = self._derived_values(rule, device_id)
        evidence["data_quality_flags"] = sorted(r.rule_id for r in self.open_rules.get(device_id, {}).values()
                                                if r.diagnosis.category == "data_quality")
        finding = build_finding(transition, evidence, self._ruled_out(rule, device_id))
        now = self.clock.now()

        def build_ticket(findings: list[dict[str, Any]], key: str, opened_at: float) -> dict[str, Any]:
            ticket = ticket_payload(site=self.site, device_id=device_id, appliance_type=rule.appliance,
                                    device=self.registry.get(device_id), findings=self._root_causes(findings),
                                    fingerprint=key, opened_at=opened_at, prices=self.prices,
                                    partition=self.partition)
            return seal(ticket, self.seal_key) if self.seal_key else ticket

        episode = NewEpisode(rule.rule_id, rule.version, device_id, rule.diagnosis.category, transition.onset_ts,
                             transition.at_ts, fingerprint)
        self.open_rules.setdefault(device_id, {})[rule.rule_id] = rule

        def write() -> None:
            opened = open_incident(self.db, episode, finding, build_ticket, now, self.policy, self.group_wait)
            if opened is None:
                return  # the episode is already open (restored state lost?); its ticket exists
            self.opened += 1
            observed = ", ".join(f"{o.quantity}={o.value:g} {o.op} {o.threshold:g}" for o in transition.observations)
            log.warning("incident %d on %s: %s [%s] (%s); ticket %d (%s)", opened.incident.incident_id, device_id,
                        rule.diagnosis.title_en, rule.diagnosis.code, observed, opened.ticket_id,
                        opened.action.value.replace("_", " "))
            if self.on_ticket is not None and opened.action in (CaseAction.NEW_TICKET, CaseAction.REOPENED):
                self.on_ticket()
        return write

    def _root_causes(self, findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A root cause that joins a ticket not yet sent takes it over: the symptoms it inhibits leave the
        diagnosis (their incidents stay, on the same ticket)."""
        inhibited = {name for f in findings if (r := self.rules.get(f.get("rule", ""))) for name in r.inhibits}
        kept = [f for f in findings if f.get("rule") not in inhibited]
        return kept or findings

    def _derived_values(self, rule: Rule, device_id: str) -> dict[str, float | None]:
        """The profile's derived metrics (superheat, subcooling ...) at the moment the rule fired."""
        context = self.context_for(rule.appliance, device_id) if self.context_for else None
        if context is None or not self.derived.get(rule.appliance):
            return {}
        values = {}
        for name in self.derived[rule.appliance]:
            value = float(np.asarray(context.column(name)).reshape(-1)[0])
            values[name] = None if math.isnan(value) else round(value, 3)
        return values

    def _ruled_out(self, rule: Rule, device_id: str) -> list[tuple[str, str, list[str]]]:
        """Causes whose `unless` evidence holds on this appliance right now: (cause, because, the metrics read)."""
        if not rule.exclusions or self.context_for is None:
            return []
        context = self.context_for(rule.appliance, device_id)
        if context is None:
            return []
        return [(e.cause, e.because, sorted(e.expr.metrics)) for e in rule.exclusions
                if bool(np.asarray(e.expr.holds(context)).all())]

    def suppressed_by(self, rule: Rule) -> list[Rule]:
        """The rules this one holds back on its appliance: every component rule for a data-quality problem,
        the listed symptoms for a root cause."""
        if rule.diagnosis.category == "data_quality":
            return [r for r in self.rules.values() if r.appliance == rule.appliance
                    and r.diagnosis.category != "data_quality"]
        return [self.rules[name] for name in rule.inhibits if name in self.rules]

    def _resolve(self, transition: AlertTransition, evaluator: Evaluator | None = None) -> Callable[[], None]:
        if evaluator is not None:  # what it held back must show itself again on fresh evidence
            for held in self.suppressed_by(transition.rule):
                evaluator.require_fresh_evidence(held.rule_id, transition.device_id, transition.at_ts)
        self.open_rules.get(transition.device_id, {}).pop(transition.rule.rule_id, None)

        def write() -> None:
            if self.db.resolve_incident(transition.rule.rule_id, transition.device_id, transition.at_ts):
                self.resolved += 1
                log.info("incident of %s on %s resolved", transition.rule.rule_id, transition.device_id)
        return write
