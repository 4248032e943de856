"""Serial (UART) ports: pyserial opened by URL, one thread per port, polls with a request/response table.

`serial_for_url` means `/dev/ttyUSB0`, a pseudo-terminal, `socket://host:port` and `loop://` all work. A port that
vanishes (unplugged adapter) is closed and reopened with jittered backoff, never left locked; a port whose
appliance stops answering for `watchdog_polls` polls is reopened too. Every frame the dialect decodes becomes
canonical records handed to the same ingest as MQTT.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import serial

from gateway.config import SerialPortConfig
from gateway.ingest.uart import UartAdapter
from gateway.protocol.stream import FrameError
from gateway.protocol.topics import TopicKind, appliance_topic

log = logging.getLogger("gateway.serial")

Deliver = Callable[[str, bytes], None]


class _Watchdog(Exception):
    """The appliance has not answered for too long: reopen the port."""


class SerialLink:
    def __init__(self, config: SerialPortConfig, adapter: UartAdapter, deliver: Deliver,
                 topic_prefix: str = "appliances") -> None:
        self.config = config
        self.adapter = adapter
        self._deliver = deliver
        self._prefix = topic_prefix
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counters: Counter[str] = Counter()
        self.state = "new"  # new -> open <-> closed
        self._online: bool | None = None
        self._counter = 0

    @property
    def name(self) -> str:
        return self.config.device_id

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"serial-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        log.info("serial port %s (%s) stopped [%s]", self.config.url, self.name, self._counter_text())

    def _counter_text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.counters.items()))

    def snapshot(self) -> dict[str, Any]:
        return {"url": self.config.url, "dialect": self.config.dialect, "state": self.state,
                "online": bool(self._online), **dict(sorted(self.counters.items()))}

    def _run(self) -> None:
        delay = self.config.reconnect_min_seconds
        while not self._stop.is_set():
            try:
                port = serial.serial_for_url(self.config.url, baudrate=self.config.baudrate, timeout=0.02,
                                             exclusive=True if self.config.url.startswith("/") else None)
            except (serial.SerialException, OSError, ValueError) as exc:
                self._set_state("closed", f"cannot open {self.config.url}: {exc}")
                self._stop.wait(random.uniform(self.config.reconnect_min_seconds, delay))
                delay = min(self.config.reconnect_max_seconds, delay * 2)
                continue
            self.counters["reconnects" if self.state != "new" else "opens"] += 1
            self._set_state("open", "")
            delay = self.config.reconnect_min_seconds
            try:
                self._session(port)
            except _Watchdog:
                self.counters["watchdog_resets"] += 1
                self._set_state("closed", f"no answer for {self.config.watchdog_polls} polls; reopening")
            except (serial.SerialException, OSError) as exc:
                self._set_state("closed", f"lost: {exc}")
            finally:
                port.close()
            self._set_online(False)
            self._stop.wait(random.uniform(self.config.reconnect_min_seconds, delay))

    def _session(self, port: serial.Serial) -> None:
        decoder = self.adapter.decoder()
        decoder.counters = self.counters  # count frames, CRC errors and resyncs live, across reconnects
        pending: dict[Any, float] = {}
        now = time.monotonic()
        last_frame, next_poll = now, now
        interval = self.config.poll_interval_seconds
        if self.config.dialect != "open":  # the open dialect identifies itself; the vendor dialects do not
            self._emit(TopicKind.META, self._configured_meta())
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_poll:
                self._counter = (self._counter + 1) & 0xFF
                for poll in self.adapter.polls(self._counter):
                    port.write(poll.frame)
                    pending.setdefault(poll.answer_key, now)
                next_poll = now + interval
            data = port.read(max(1, port.in_waiting))
            if data:
                self.counters["bytes"] += len(data)
                for frame in decoder.feed(data):
                    last_frame = now
                    pending.pop(self.adapter.response_key(frame), None)
                    self._handle(port, frame)
            for key, sent in list(pending.items()):
                if now - sent > self.config.response_timeout_seconds:
                    self.counters["timeouts"] += 1
                    del pending[key]
            if now - last_frame > interval * self.config.watchdog_polls:
                raise _Watchdog

    def _handle(self, port: serial.Serial, frame: Any) -> None:
        try:
            records = self.adapter.records(frame, time.time())
        except FrameError as error:
            self.counters[error.reason] += 1
            return
        self._set_online(True)
        for kind, document in records:
            if kind is TopicKind.TELEMETRY and self.config.appliance:
                document.setdefault("type", self.config.appliance)
            self._emit(kind, document)
        for reply in self.adapter.replies(frame, self._counter):
            port.write(reply)

    def _configured_meta(self) -> dict[str, str]:
        return {"type": self.config.appliance, "brand": self.config.brand, "model": self.config.model,
                "serial": self.config.serial_number, "firmware": ""}

    def _emit(self, kind: TopicKind, document: dict[str, Any]) -> None:
        self._deliver(appliance_topic(self.name, kind, self._prefix), orjson.dumps(document))

    def _set_online(self, online: bool) -> None:
        if online != self._online:
            self._online = online
            self._deliver(appliance_topic(self.name, TopicKind.STATUS, self._prefix),
                          b"online" if online else b"offline")

    def _set_state(self, state: str, reason: str) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        if state == "open":
            log.info("serial port %s (%s, %s) %s", self.config.url, self.name, self.config.dialect,
                     "reopened" if previous == "closed" else "open")
        else:
            log.warning("serial port %s (%s): %s [%s]", self.config.url, self.name, reason, self._counter_text())
