"""Composition root: builds every room from the config and runs them as named tasks in one TaskGroup.

Start order: database -> profiles and rules (fail fast on a broken file) -> open incidents restored ->
embedded broker -> web -> MQTT link -> ingest, sender, persistence. Stop is the reverse.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import replace
from typing import Any

from aiohttp import web

from gateway.clock import Clock, SystemClock
from gateway.config import GatewayConfig, resolve_path
from gateway.diagnosis.seal import load_or_create_key
from gateway.engine.evaluator import Evaluator
from gateway.engine.library import build_window_store, load_library
from gateway.engine.profiles import Profile, derived_by_type, intervals_by_type
from gateway.engine.rules import Rule
from gateway.incidents.episodes import IncidentManager
from gateway.ingest.drops import DropCounter
from gateway.ingest.pipeline import Ingest
from gateway.ingest.registry import DeviceRegistry
from gateway.ingest.uart import adapter_for
from gateway.outbox.sender import OutboxSender
from gateway.protocol.payload import DropReason, PayloadLimits
from gateway.service.follow import PlatformFollower
from gateway.service.timeline import ServiceDesk
from gateway.sinks.influx import InfluxSink
from gateway.store.db import Database, OutboxKind, StorageError
from gateway.store.history import History
from gateway.transport.broker import EmbeddedBroker
from gateway.transport.handoff import MessageHandoff
from gateway.transport.mqtt import MqttLink
from gateway.transport.serial import SerialLink
from gateway.web.access import Access, load_or_create_token
from gateway.web.app import WebContext, create_app

log = logging.getLogger("gateway")

PERSIST_INTERVAL_SECONDS = 2.0
HISTORY_FLUSH_SECONDS = 10.0
TIMER_SECONDS = 1.0
# A rule pass costs about a millisecond with the full library whatever its size (tens of rules, each a few
# numpy calls); under load, gather for up to 10 ms (the batch age the architecture allows) so the pass is paid
# per batch rather than per message. An idle gateway evaluates each message at once.
MIN_PASS_INTERVAL_SECONDS = 0.010


class Gateway:
    def __init__(self, config: GatewayConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        library = load_library(config)
        self.profiles, self.prices, self.rules = library.profiles, library.prices, library.rules
        self.vendor_codes = library.vendor_codes
        self.db = Database(resolve_path(config, config.storage.database))
        self.registry = DeviceRegistry(set(self.profiles))
        self.registry.load(self.db.load_devices())
        self.store = build_window_store(self.profiles, window_slots(self.profiles, self.rules, config.window.slots),
                                        config.window.initial_devices)
        self.evaluator = Evaluator(self.rules, self.store, derived_by_type(self.profiles),
                                   intervals_by_type(self.profiles))
        self.drops = DropCounter()
        self.sender = OutboxSender(self.db, config.upstream, self.clock)
        self.seal_key = load_or_create_key(resolve_path(config, config.storage.key_file))
        self.incidents = IncidentManager(self.db, self.store, self.registry, config.site, self.clock,
                                         on_ticket=self.sender.wake, prices=self.prices, rules=self.rules,
                                         group_wait=config.upstream.group_wait_seconds,
                                         context_for=self.evaluator.device_context,
                                         seal_key=self.seal_key,
                                         derived={n: [d.name for d in p.derived] for n, p in self.profiles.items()},
                                         reopen_window=config.service.reopen_window_seconds)
        self.service = ServiceDesk(self.db, self.clock, config.service, self._last_seen)
        self.follower = PlatformFollower(self.service, config.upstream, config.service)
        self.incidents.restore(self.evaluator)
        limits = PayloadLimits(config.ingest.max_payload_bytes, config.ingest.max_past_seconds,
                               config.ingest.max_future_seconds)
        history_path = (resolve_path(config, config.history.database) if config.history.database
                        else resolve_path(config, config.storage.database).with_name("history.db"))
        self.history = (History(history_path, self.store,
                                intervals_by_type(self.profiles), config.history.days)
                        if config.history.enabled else None)
        self.influx = InfluxSink(config.influx, self.registry, self.db, config.site) if config.influx.url else None
        self.ingest = Ingest(self.profiles, self.registry, self.store, self.drops, limits, self.clock,
                             config.broker.topic_prefix, flush_rules=self.evaluate, vendor_codes=self.vendor_codes,
                             on_sample=self.influx.add_sample if self.influx else None)
        self.history_flush_ms = 0.0
        self.broker: EmbeddedBroker | None = None
        self.link: MqttLink | None = None
        self.serial_links: list[SerialLink] = []
        self.web_port: int | None = None
        self.internal_errors = 0
        self._stop = asyncio.Event()

    @property
    def broker_url(self) -> str:
        if self.broker is not None:
            return self.broker.url
        return self.config.broker.url

    def evaluate(self) -> None:
        """One rule pass over whatever arrived since the last one, and its incidents."""
        self.incidents.record(self.evaluator.evaluate(), self.evaluator)


    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        loop = asyncio.get_running_loop()
        broker_config = self.config.broker
        if broker_config.embedded:
            self.broker = EmbeddedBroker(broker_config.embedded_host, broker_config.embedded_port)
            await self.broker.start()
            broker_config = replace(broker_config, embedded_port=self.broker.port)
        runner = await self._start_web()
        handoff = MessageHandoff(loop, broker_config.max_queued_messages, on_overflow=self._count_overflow)
        self.link = MqttLink(broker_config, handoff.put)
        self.link.start()
        self.serial_links = [
            SerialLink(port, adapter_for(port.dialect, self.profiles), handoff.put, broker_config.topic_prefix)
            for port in self.config.serial_ports
        ]
        for serial_link in self.serial_links:
            serial_link.start()
        log.info("gateway running: %d rules over %d appliance types", len(self.rules), len(self.profiles))
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._ingest_loop(handoff), name="ingest")
                tasks.create_task(self.sender.run(), name="outbox-sender")
                tasks.create_task(self._persist_loop(), name="persist-devices")
                tasks.create_task(self._timer_loop(), name="time-driven-rules")
                tasks.create_task(self.follower.run(), name="platform-follower")
                if self.history is not None:
                    tasks.create_task(self._history_loop(self.history), name="history")
                if self.influx is not None:
                    tasks.create_task(self.influx.run(), name="influx-sink")
                if ready is not None:
                    ready.set()
                await self._stop.wait()
                raise _Stopping
        except* _Stopping:
            pass
        finally:
            await asyncio.to_thread(self.link.stop)
            for serial_link in self.serial_links:
                await asyncio.to_thread(serial_link.stop)
            self._persist_devices()
            if self.history is not None:
                self.history.close()
            if runner is not None:
                await runner.cleanup()
            if self.broker is not None:
                await self.broker.stop()
            self.db.close()
            log.info("gateway stopped")

    async def _start_web(self) -> web.AppRunner | None:
        if not self.config.web.enabled:
            return None
        context = WebContext(self.registry, self.db, self.status, Access(self.admin_token(), self.seal_key, self.db,
                                                                         self.config.web.technician_link_days),
                             self.profiles, self.store, self.history, self.service,
                             self.config.service.webhook_secret, self.seal_key)
        runner = web.AppRunner(create_app(context), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.config.web.host, self.config.web.port)
        await site.start()
        self.web_port = int(runner.addresses[0][1]) if runner.addresses else self.config.web.port
        return runner

    async def _ingest_loop(self, handoff: MessageHandoff) -> None:
        last_pass = 0.0
        while True:
            self._handle(await handoff.drain())
            wait = last_pass + MIN_PASS_INTERVAL_SECONDS - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                self._handle(handoff.take_nowait())
            self.evaluate()
            last_pass = time.monotonic()

    def _handle(self, batch: list[tuple[str, bytes]]) -> None:
        for topic, payload in batch:
            try:
                self.ingest.handle(topic, payload)
            except Exception:  # last line of defence: one bad message must never stop ingest
                self.internal_errors += 1
                log.exception("internal error while handling a message on %s; message dropped", topic)

    async def _timer_loop(self) -> None:
        """Time-driven rules (silence, last will) and repair verification, once a second on the gateway clock."""
        while True:
            await asyncio.sleep(TIMER_SECONDS)
            self.incidents.record(self.evaluator.evaluate_timer(self.clock.now()), self.evaluator)
            try:
                if self.service.verify_repairs():
                    self.sender.wake()
            except StorageError as exc:
                log.error("could not check repairs for verification, will retry: %s", exc)

    def admin_token(self) -> str:
        """The owner's web token: configured, or read from (first run: written to) its file."""
        if self.config.web.admin_token:
            return self.config.web.admin_token
        web_config = self.config.web
        path = (resolve_path(self.config, web_config.admin_token_file) if web_config.admin_token_file
                else resolve_path(self.config, self.config.storage.database).with_name("admin.token"))
        return load_or_create_token(path)

    def _last_seen(self, device_id: str) -> float | None:
        device = self.registry.get(device_id)
        return None if device is None or device.online is False else device.last_seen

    async def _history_loop(self, history: History) -> None:
        """Each closed minute into the history (computed in the loop, written on a thread); prune hourly."""
        last_prune = 0.0
        while True:
            await asyncio.sleep(HISTORY_FLUSH_SECONDS)
            started = time.perf_counter()
            try:
                await asyncio.to_thread(history.flush, self.clock.now())
                if self.clock.now() - last_prune > 3600:
                    await asyncio.to_thread(history.prune, self.clock.now())
                    last_prune = self.clock.now()
            except StorageError as exc:
                log.error("history not written, those minutes are missing from the charts: %s", exc)
            self.history_flush_ms = (time.perf_counter() - started) * 1000

    async def _persist_loop(self) -> None:
        while True:
            await asyncio.sleep(PERSIST_INTERVAL_SECONDS)
            self._persist_devices()

    def _persist_devices(self) -> None:
        changed = self.registry.take_changed()
        if not changed:
            return
        try:
            self.db.save_devices(changed)
        except StorageError as exc:
            log.error("could not save %d device(s), will retry: %s", len(changed), exc)
            self.registry.mark_changed(d.device_id for d in changed)

    def _count_overflow(self, count: int) -> None:
        self.drops.drop(None, DropReason.QUEUE_FULL, "ingest queue full; gateway cannot keep up", count)

    def status(self) -> dict[str, Any]:
        outbox = self.db.outbox_counts()
        return {
            "devices": len(self.registry.devices),
            "online": self.registry.online_count(),
            "messages": self.ingest.messages,
            "samples": self.ingest.samples,
            "open_incidents": self.evaluator.firing_count(),
            "incidents_opened": self.incidents.opened,
            "tickets_delivered": outbox["delivered"],
            "outbox": outbox,
            "step_outbox": self.db.outbox_counts(OutboxKind.STEP),
            "platform_events": {"applied": self.service.events_applied, "duplicate": self.service.events_duplicate,
                                "rejected": self.service.events_rejected, "polls": self.follower.polls,
                                "poll_errors": self.follower.poll_errors},
            "dropped_total": self.drops.total,
            "dropped": self.drops.as_dict(),
            "mqtt_connected": bool(self.link and self.link.connected),
            "rule_pass_ms": round(self.evaluator.last_pass_seconds * 1000, 3),
            "internal_errors": self.internal_errors,
            "serial_ports": {link.name: link.snapshot() for link in self.serial_links},
            "history": {"rows_written": self.history.rows_written if self.history else 0,
                        "last_flush_ms": round(self.history_flush_ms, 1)},
            "influx": self.influx.counters() if self.influx else None,
        }


def window_slots(profiles: dict[str, Profile], rules: list[Rule], minimum: int) -> dict[str, int]:
    """Slots per appliance type: the configured minimum, or more when a rule reads a longer window
    (samples at the profile's interval, with a quarter more for jitter and bursts)."""
    slots = {}
    for name, profile in profiles.items():
        longest = max((s for r in rules if r.appliance == name for s in r.expr.windows.values()), default=0.0)
        slots[name] = max(minimum, math.ceil(longest / profile.interval_seconds * 1.25) + 1)
    return slots


async def start(gateway: Gateway) -> asyncio.Task[None]:
    """Run the gateway as a task and return once it serves; if it cannot start, raise why."""
    ready = asyncio.Event()
    task = asyncio.create_task(gateway.run(ready), name="gateway")
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # re-raises the start-up error
    return task


class _Stopping(Exception):
    """Raised inside the TaskGroup to cancel its tasks on a requested stop."""
