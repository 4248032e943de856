"""Composition root: builds every room from the config and says which thread or process runs what.

- the pipeline thread drives the one Pipeline (ingest, rules, incidents, cases, outbox writes) on its own
  SQLite connection, fed through the handoff by the MQTT link's network thread and the serial link threads;
- the event loop serves the web console and runs delivery, the platform follower, repair verification, the
  history schedule and the InfluxDB sink, each a supervised task on the loop's own SQLite connection; history
  minutes are computed and written on a worker thread with the history's own connections;
- the embedded broker, when no broker is configured, is a child process.

Start order: databases -> profiles and rules (fail fast on a broken file) -> open incidents restored ->
embedded broker -> web -> pipeline thread -> MQTT and serial links -> background tasks. Stop is the reverse.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiohttp import web

from gateway.clock import Clock, SystemClock
from gateway.config import GatewayConfig, resolve_path
from gateway.diagnosis.seal import load_or_create_key
from gateway.engine.checkpoint import Checkpointer
from gateway.engine.checkpoint import restore as restore_checkpoint
from gateway.engine.evaluator import Evaluator
from gateway.engine.library import load_library
from gateway.engine.profiles import intervals_by_type
from gateway.incidents.episodes import IncidentManager
from gateway.ingest.drops import DropCounter
from gateway.ingest.registry import DeviceRegistry
from gateway.ingest.router import Ingest
from gateway.ingest.uart import adapter_for
from gateway.memory import RELEASE_EVERY_SECONDS, release_free_memory
from gateway.outbox.sender import OutboxSender
from gateway.pipeline import Pipeline, settings_from_config
from gateway.pipeline_thread import PipelineThread
from gateway.protocol.topics import subscription
from gateway.service.follow import PlatformFollower
from gateway.service.timeline import ServiceDesk
from gateway.sinks.influx import InfluxSink
from gateway.store.db import Database, OutboxKind, StorageError
from gateway.store.history import History
from gateway.store.readers import Readers
from gateway.store.window import WindowStore
from gateway.transport.broker import EmbeddedBroker
from gateway.transport.handoff import MessageHandoff
from gateway.transport.mqtt import MqttLink, stable_client_id
from gateway.transport.serial import SerialLink
from gateway.web.access import Access, load_or_create_token
from gateway.web.app import WebContext, create_app

log = logging.getLogger("gateway")

HISTORY_FLUSH_SECONDS = 10.0
TIMER_SECONDS = 1.0
# devices saved per write at most (about 2.5 ms); the rest at the next write, 2 s later (PERSIST_SECONDS in
# pipeline_thread.py): at 20,000 appliances a last_seen is at most 40 s old in the database; all are saved at stop
DEVICES_PER_SAVE = 1_000


class Gateway:
    def __init__(self, config: GatewayConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        library = load_library(config)
        self.profiles, self.prices, self.rules = library.profiles, library.prices, library.rules
        self.vendor_codes = library.vendor_codes
        database = resolve_path(config, config.storage.database)
        self.db = Database(database)  # the event loop's connection: delivery, service steps, the web's writes
        self.readers = Readers(database)  # the web's queries, on worker threads
        self.seal_key = load_or_create_key(resolve_path(config, config.storage.key_file))
        self.sender = OutboxSender(self.db, config.upstream, self.clock)
        self.influx = None
        history_path = (resolve_path(config, config.history.database) if config.history.database
                        else database.with_name("history.db"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self.pipeline = Pipeline(library, Database(database), self.clock, settings_from_config(config),
                                 seal_key=self.seal_key, on_ticket=self._ticket_due)
        if config.influx.url:
            self.influx = InfluxSink(config.influx, self.registry, self.db, config.site)
            self.pipeline.ingest.on_sample = self.influx.add_sample
        self.service = ServiceDesk(self.db, self.clock, config.service, self._last_seen, self.seal_key)
        self.follower = PlatformFollower(self.service, config.upstream, config.service)
        checkpoint_path = (resolve_path(config, config.storage.checkpoint_file) if config.storage.checkpoint_file
                           else database.with_name("checkpoint.npz"))
        self.checkpointer = Checkpointer(checkpoint_path, config.storage.checkpoint_seconds)
        if self.checkpointer.enabled:
            restore_checkpoint(checkpoint_path, self.store, self.evaluator, self.clock.now(),
                               config.storage.checkpoint_max_age_seconds)
        self.pipeline.restore()  # after the checkpoint: the database's open episodes are what is firing
        self.history = (History(history_path, self.store, intervals_by_type(self.profiles), config.history.days,
                                config.history.minute_days, config.history.max_megabytes)
                        if config.history.enabled else None)
        self.history_flush_ms = 0.0
        self.broker: EmbeddedBroker | None = None
        self.link: MqttLink | None = None
        self.serial_links: list[SerialLink] = []
        self.handoff = MessageHandoff(config.broker.max_queued_messages)
        self.pipeline_thread = PipelineThread(self.pipeline, self.handoff, self.clock, self._persist,
                                              steps=self.checkpointer)
        self.web_port: int | None = None
        self._devices_unsaved = False
        self._stop = asyncio.Event()

    # the pipeline's rooms, for the web, the status and the tests
    @property
    def registry(self) -> DeviceRegistry:
        return self.pipeline.registry

    @property
    def store(self) -> WindowStore:
        return self.pipeline.store

    @property
    def ingest(self) -> Ingest:
        return self.pipeline.ingest

    @property
    def evaluator(self) -> Evaluator:
        return self.pipeline.evaluator

    @property
    def incidents(self) -> IncidentManager:
        return self.pipeline.incidents

    @property
    def drops(self) -> DropCounter:
        return self.pipeline.drops

    @property
    def internal_errors(self) -> int:
        """Exceptions that reached the last line of defence (bugs): per message, and in the pipeline thread."""
        return self.pipeline.internal_errors + self.pipeline_thread.errors

    def _hearing(self, connected: bool) -> None:
        """The broker link's state, on the link's thread: while the gateway cannot hear, no appliance is silent,
        and after it hears again each has its whole silence limit from then (a broker outage of 40 s opened a
        false "stopped reporting" ticket for every appliance)."""
        self.evaluator.hearing_since = self.clock.now() if connected else math.inf

    def _ticket_due(self) -> None:
        """Called on the pipeline thread when a ticket is queued: wake the sender on the loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.sender.wake)

    @property
    def broker_url(self) -> str:
        if self.broker is not None:
            return self.broker.url
        return self.config.broker.url

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        broker_config = self.config.broker
        if broker_config.embedded:
            self.broker = EmbeddedBroker(broker_config.embedded_host, broker_config.embedded_port,
                                         broker_config.embedded_broker)
            await self.broker.start()
            broker_config = replace(broker_config, embedded_port=self.broker.port)
        if not broker_config.client_id:
            broker_config = replace(broker_config, client_id=stable_client_id(self.seal_key))
        runner = None
        try:
            runner = await self._start_web()
            self.pipeline_thread.start()
            self.evaluator.hearing_since = math.inf  # until the link is up: silence then counts from then
            self.link = MqttLink(broker_config, self.handoff.put,
                                 on_broker_dropped=self.ingest.link_health.broker_reports_dropped,
                                 on_state=self._hearing)
            self.link.start()
            self.serial_links = [
                SerialLink(port, adapter_for(port.dialect, self.profiles), self.handoff.put,
                           broker_config.topic_prefix)
                for port in self.config.serial_ports
            ]
            for serial_link in self.serial_links:
                serial_link.start()
            log.info("gateway running: %d rules over %d appliance types", len(self.rules), len(self.profiles))
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(supervised("outbox-sender", self.sender.run), name="outbox-sender")
                tasks.create_task(supervised("repair-verification", self._verification_loop),
                                  name="repair-verification")
                tasks.create_task(supervised("platform-follower", self.follower.run), name="platform-follower")
                if self.history is not None:
                    history = self.history
                    tasks.create_task(supervised("history", lambda: self._history_loop(history)), name="history")
                if self.influx is not None:
                    tasks.create_task(supervised("influx-sink", self.influx.run), name="influx-sink")
                tasks.create_task(supervised("memory-release", self._memory_loop), name="memory-release")
                if ready is not None:
                    ready.set()
                await self._stop.wait()
                raise _Stopping
        except* _Stopping:
            pass
        finally:
            if self.link is not None:
                await asyncio.to_thread(self.link.stop)
            for serial_link in self.serial_links:
                await asyncio.to_thread(serial_link.stop)
            await asyncio.to_thread(self.pipeline_thread.stop)
            if self.history is not None:
                await asyncio.to_thread(self._last_history_flush, self.history)
            if runner is not None:
                await runner.cleanup()
            self.readers.close()
            if self.broker is not None:
                await self.broker.stop()
            self.pipeline.db.close()
            self.db.close()
            log.info("gateway stopped")

    async def _start_web(self) -> web.AppRunner | None:
        if not self.config.web.enabled:
            return None
        context = WebContext(self.registry, self.db, self.status, Access(self.admin_token(), self.seal_key, self.db,
                                                                         self.config.web.technician_link_days),
                             self.profiles, self.store, self.history, self.service,
                             self.config.service.webhook_secret, self.seal_key, self.readers, self.clock)
        runner = web.AppRunner(create_app(context), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.config.web.host, self.config.web.port)
        await site.start()
        self.web_port = int(runner.addresses[0][1]) if runner.addresses else self.config.web.port
        return runner

    async def _verification_loop(self) -> None:
        """Repairs verified by telemetry, checked once a second (the time-driven rules run on the pipeline)."""
        while True:
            await asyncio.sleep(TIMER_SECONDS)
            try:
                if self.service.verify_repairs():
                    self.sender.wake()
            except StorageError as exc:
                log.error("could not check repairs for verification, will retry: %s", exc)

    def admin_token(self) -> str:
        return self.owner_token(self.config)

    @staticmethod
    def owner_token(config: GatewayConfig) -> str:
        """The owner's web token: configured, or read from (first run: written to) its file."""
        if config.web.admin_token:
            return config.web.admin_token
        path = (resolve_path(config, config.web.admin_token_file) if config.web.admin_token_file
                else resolve_path(config, config.storage.database).with_name("admin.token"))
        return load_or_create_token(path)

    def _last_seen(self, device_id: str) -> float | None:
        device = self.registry.get(device_id)
        return None if device is None or device.online is False else device.last_seen

    def _last_history_flush(self, history: History) -> None:
        """The minutes not yet written (they are batched), before the windows go."""
        try:
            history.flush(self.clock.now(), everything=True)
        except StorageError as exc:
            log.error("the history's last minutes were not written: %s", exc)
        history.close()

    async def _history_loop(self, history: History) -> None:
        """Each closed minute into the history (computed in the loop, written on a thread); prune hourly."""
        last_prune = 0.0
        failing = False
        while True:
            await asyncio.sleep(HISTORY_FLUSH_SECONDS)
            started = time.perf_counter()
            try:
                await asyncio.to_thread(history.flush, self.clock.now())
                if self.clock.now() - last_prune > 3600:
                    await asyncio.to_thread(history.prune, self.clock.now())
                    last_prune = self.clock.now()
                if failing:
                    log.warning("history written again, the minutes kept in memory too")
                failing = False
            except StorageError as exc:
                if not failing:  # once per state change, not every flush
                    log.error("history not written (%s): its minutes are kept in memory (the newest %d) and "
                              "written when the disk takes them", exc, len(history.unwritten))
                failing = True
            self.history_flush_ms = (time.perf_counter() - started) * 1000

    async def _memory_loop(self) -> None:
        """What the checkpoint's copy, history and the first passes freed, back to the system (gateway/memory.py)."""
        while True:
            await asyncio.sleep(RELEASE_EVERY_SECONDS)
            await asyncio.to_thread(release_free_memory)

    def _persist(self) -> None:
        """On the pipeline thread, every few seconds and at stop: changed devices, and the checkpoint when due."""
        if self.pipeline_thread.stopping:
            self.checkpointer.save_now(self.store, self.evaluator, self.clock.now())
        else:
            self.checkpointer.maybe_save(self.store, self.evaluator, self.clock.now())
        changed = self.registry.take_changed(None if self.pipeline_thread.stopping else DEVICES_PER_SAVE)
        if not changed:
            return
        try:
            self.pipeline.db.save_devices(changed)  # on the pipeline thread, which alone changes the registry
        except StorageError as exc:
            if not self._devices_unsaved:  # once per state change: this runs every 2 s
                log.error("could not save %d device(s) (%s); kept in memory and saved when the database can",
                          len(changed), exc)
            self._devices_unsaved = True
            self.registry.mark_changed(d.device_id for d in changed)
            return
        if self._devices_unsaved:
            log.warning("devices saved again")
        self._devices_unsaved = False

    def status(self) -> dict[str, Any]:
        # The pipeline thread goes on handling messages while this is read. The drops first: the counters only
        # grow, so the message and sample counts read after them hold every message handled before a drop they
        # count (the bench harness takes "all telemetry before its end marker" from the pair; read the other way
        # round, a few samples went missing now and then at 8,000 msg/s).
        dropped, dropped_total = self.drops.as_dict(), self.drops.total
        messages, samples = self.ingest.messages, self.ingest.samples
        outbox = self.db.outbox_counts()
        return {
            "devices": len(self.registry.devices),
            "online": self.registry.online_count(),
            "messages": messages,
            "samples": samples,
            "waiting_for_meta": self.ingest.waiting.count,  # samples and codes of appliances not yet announced
            "open_incidents": self.evaluator.firing_count(),
            "incidents_opened": self.incidents.opened,
            "incidents_unwritten": len(self.incidents.unwritten),  # waiting in memory for the database (disk full)
            "tickets_delivered": outbox["delivered"],
            "outbox": outbox,
            "step_outbox": self.db.outbox_counts(OutboxKind.STEP),
            "upstream_auth_refused": self.sender.auth_refused,  # "" unless the platform refuses the credentials
            "platform_events": {"applied": self.service.events_applied, "duplicate": self.service.events_duplicate,
                                "rejected": self.service.events_rejected, "polls": self.follower.polls,
                                "poll_errors": self.follower.poll_errors},
            "dropped_total": dropped_total,
            "dropped": dropped,
            "mqtt_connected": bool(self.link and self.link.connected),
            "mqtt_client_id": self.link.config.client_id if self.link else "",
            "mqtt_repeats_dropped": self.link.redeliveries.repeats if self.link else 0,
            "mqtt_node": "{}:{}".format(*self.link.endpoint) if self.link else "",
            "partition": ({"partition": self.config.cluster.partition, "partitions": self.config.cluster.partitions,
                           "subscription": subscription(self.config.broker.topic_prefix)}
                          if self.config.partitioned else None),
            "broker_url": self.broker_url,
            "embedded_broker": self.broker is not None,
            "broker": self.ingest.link_health.snapshot(),
            "rule_pass_ms": round(self.evaluator.last_pass_seconds * 1000, 3),
            "internal_errors": self.internal_errors,
            "clock_steps": self.pipeline.clock_steps,
            "fleet_quiet": {"now": self.evaluator.deaf, "spells": self.evaluator.deaf_spells},
            "checkpoint": self.checkpointer.snapshot(),
            "pipeline_alive": self.pipeline_thread.alive,
            "ingest_queue": len(self.handoff),
            "serial_ports": {link.name: link.snapshot() for link in self.serial_links},
            "history": {"rows_written": self.history.rows_written if self.history else 0,
                        "last_flush_ms": round(self.history_flush_ms, 1)},
            "influx": self.influx.counters() if self.influx else None,
            "latency_seconds": {"rule_pass": self.evaluator.pass_seconds.snapshot(),
                                "ingest_to_decision": self.pipeline_thread.ingest_to_decision.snapshot(),
                                "decision_to_delivery": self.sender.decision_to_delivery.snapshot()},
        }


async def supervised(name: str, task: Callable[[], Awaitable[None]], first_delay: float = 1.0,
                     max_delay: float = 60.0) -> None:
    """Run a background task for good: if it fails, log it and start it again after a growing pause, so that a
    bug in one of them never ends the gateway."""
    delay = first_delay
    while True:
        started = time.monotonic()
        try:
            await task()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s failed; restarting it in %.0f s", name, delay)
        delay = first_delay if time.monotonic() - started > max_delay else min(delay * 2, max_delay)
        await asyncio.sleep(delay)


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
