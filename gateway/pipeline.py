"""The one pipeline: raw message -> ingest validation -> window -> rule evaluation -> incidents -> cases -> outbox.

Synchronous and clock-injected, so every driver runs exactly the same code: the live gateway (on its pipeline
thread, fed by the MQTT and serial links), `appliance-gateway replay`, the scorer and the rule tests. A driver
only decides where messages come from and when the clock moves:

    pipeline.feed(topic, payload)   one raw message, as it came off MQTT (serial links make the same topics)
    pipeline.feed_all(messages)     a batch of them, their samples written to the window store type by type
    pipeline.stage(topic, payload)  one message whose samples join the next pass's batch (replay moves the clock)
    pipeline.evaluate()             a rule pass over whatever arrived since the last one
    pipeline.tick(now)              the time-driven rules (silence, last will) at the gateway clock's `now`

Each sample of a device is evaluated exactly once, in order (ingest evaluates before a device's second unevaluated
sample), and long-window rules are due on each device's own sample time, so how a driver batches messages
changes the cost, never the transitions. Not thread-safe: one thread drives a pipeline.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.clock import Clock
from gateway.config import GatewayConfig
from gateway.engine.evaluator import AlertTransition, Evaluator
from gateway.engine.library import Library, build_window_store, window_layouts
from gateway.engine.profiles import derived_by_type, intervals_by_type
from gateway.engine.rules import Rule
from gateway.incidents.episodes import IncidentManager
from gateway.ingest.drops import DropCounter
from gateway.ingest.registry import DeviceRegistry
from gateway.ingest.router import Ingest
from gateway.protocol.payload import PayloadLimits
from gateway.store.db import Database

log = logging.getLogger("gateway.pipeline")


@dataclass(frozen=True)
class PipelineSettings:
    site: str = "home"
    topic_prefix: str = "appliances"
    limits: PayloadLimits = field(default_factory=PayloadLimits)
    min_slots: int = 64  # samples kept per device at least; more where a rule's window or evidence needs them
    initial_devices: int = 64
    group_wait: float = 0.0  # a new ticket waits this long (gateway clock) for other rules of the same appliance
    reopen_window: float = 0.0
    partition: tuple[int, int] | None = None  # (this worker's partition, how many): named on its tickets


class Pipeline:
    def __init__(self, library: Library, db: Database, clock: Clock, settings: PipelineSettings | None = None,
                 seal_key: bytes | None = None, registry: DeviceRegistry | None = None,
                 on_ticket: Callable[[], None] | None = None,
                 on_sample: Callable[[str, float, dict[str, float]], None] | None = None,
                 rules: list[Rule] | None = None) -> None:
        """`rules`: evaluate only these (a rule test of one appliance type); default, the whole library.
        `on_ticket` is called when a ticket becomes due for delivery, `on_sample` with every stored sample."""
        settings = settings or PipelineSettings()
        self.settings = settings
        self.library = library
        self.profiles = library.profiles
        self.rules = library.rules if rules is None else rules
        self.clock = clock
        self.db = db
        self.registry = registry or DeviceRegistry(set(self.profiles))
        if registry is None:
            self.registry.load(db.load_devices())
        self.store = build_window_store(self.profiles, window_layouts(self.profiles, self.rules, settings.min_slots),
                                        settings.initial_devices)
        self.evaluator = Evaluator(self.rules, self.store, derived_by_type(self.profiles),
                                   intervals_by_type(self.profiles))
        self.drops = DropCounter()
        self.incidents = IncidentManager(db, self.store, self.registry, settings.site, clock, on_ticket=on_ticket,
                                         prices=library.prices, rules=self.rules, group_wait=settings.group_wait,
                                         context_for=self.evaluator.device_context, seal_key=seal_key,
                                         derived={n: [d.name for d in p.derived] for n, p in self.profiles.items()},
                                         reopen_window=settings.reopen_window, partition=settings.partition)
        self.ingest = Ingest(self.profiles, self.registry, self.store, self.drops, settings.limits, clock,
                             settings.topic_prefix, flush_rules=self.evaluate, vendor_codes=library.vendor_codes,
                             on_sample=on_sample)
        # told of every pass with transitions: (transitions, those held back by inhibition or a storage error)
        self.observers: list[Callable[[list[AlertTransition], list[AlertTransition]], None]] = []
        self.internal_errors = 0
        self.clock_steps = 0

    def restore(self) -> int:
        """Re-arm the episodes still open in the database (after a restart or a crash)."""
        return self.incidents.restore(self.evaluator)

    def feed(self, topic: str, payload: bytes) -> None:
        """One raw message, its samples in the window store on return."""
        self.stage(topic, payload)
        self.write_pending()

    def feed_all(self, messages: Iterable[tuple[str, bytes]]) -> None:
        """Messages in order; their samples go into the window store together, type by type."""
        self.stage_all(messages)
        self.write_pending()

    def stage_all(self, messages: Iterable[tuple[str, bytes]]) -> None:
        for topic, payload in messages:
            self.stage(topic, payload)

    def stage(self, topic: str, payload: bytes) -> None:
        """One raw message whose samples may stay pending until the next rule pass or tick (which write them
        first): batch ingest for a driver that moves the clock between messages (replay). Whatever is wrong with
        it is counted and dropped with a reason inside ingest; an exception that still escapes is a bug, logged
        and counted, and never stops the pipeline."""
        try:
            self.ingest.stage(topic, payload)
        except Exception:
            self.internal_errors += 1
            log.exception("internal error while handling a message on %s; message dropped", topic[:120])

    def write_pending(self) -> None:
        """The staged samples into the window store (the next rule pass or tick does it too)."""
        try:
            self.ingest.write_pending()
        except Exception:
            self.internal_errors += 1
            log.exception("internal error while storing a batch of samples; they are lost")

    def evaluate(self) -> list[AlertTransition]:
        """One rule pass over whatever arrived since the last one; its transitions become incidents."""
        self.write_pending()
        return self._record(self.evaluator.evaluate())

    def clock_stepped(self, seconds: float, now: float) -> None:
        """The gateway clock stepped (`seconds`, negative: back). Its time since an appliance's last sample then
        says nothing about the appliance: silence counts from now, as after a broker outage (a step forward of
        2 h had flagged every appliance silent and held back a real fault)."""
        self.clock_steps += 1
        if math.isfinite(self.evaluator.hearing_since):
            self.evaluator.hearing_since = now
        log.warning("the gateway clock stepped %s by %.0f s; every appliance's silence counts from now",
                    "forward" if seconds > 0 else "back", abs(seconds))

    def tick(self, now: float) -> list[AlertTransition]:
        """Time-driven rules at the gateway clock's `now` (once a second live); first, what the database could
        not take before (a full disk) is written if it can be now."""
        self.incidents.write_held()
        self.write_pending()
        self.ingest.expire_waiting(now)
        spells = self.evaluator.deaf_spells
        transitions = self.evaluator.evaluate_timer(now)
        if self.evaluator.deaf_spells != spells:
            log.warning("%d appliances fell quiet at once although the broker link is up: the gateway treats it "
                        "as its own deafness and counts no appliance silent until a message arrives",
                        self.evaluator.deaf)
        return self._record(transitions)

    def _record(self, transitions: list[AlertTransition]) -> list[AlertTransition]:
        if transitions:
            held = self.incidents.record(transitions, self.evaluator)
            for observer in self.observers:
                observer(transitions, held)
        return transitions


def settings_from_config(config: GatewayConfig) -> PipelineSettings:
    return PipelineSettings(
        site=config.site, topic_prefix=config.broker.topic_prefix,
        limits=PayloadLimits(config.ingest.max_payload_bytes, config.ingest.max_past_seconds,
                             config.ingest.max_future_seconds, max_devices=config.ingest.max_devices,
                             max_devices_per_type=config.ingest.max_devices_per_type,
                             max_meta_length=config.ingest.max_meta_length),
        min_slots=config.window.slots, initial_devices=config.window.initial_devices,
        group_wait=config.upstream.group_wait_seconds, reopen_window=config.service.reopen_window_seconds,
        partition=(config.cluster.partition, config.cluster.partitions) if config.partitioned else None)
