"""Simulated appliance firmware speaking a UART dialect over a real pseudo-terminal.

The pty's slave side is reached through a stable symlink (`path`), so unplugging and replugging (a new pty,
a new /dev/pts/N) looks to the gateway like a USB adapter that vanished and came back on the same name.
Line faults are injected on the way out: bit flips, dropped, duplicated and noise bytes, random splits.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import threading
import time
import tty
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_sim.models import ApplianceModel
from gateway.engine.profiles import Profile
from gateway.protocol import haier, midea, open_dialect
from gateway.protocol.stream import StreamDecoder


@dataclass(frozen=True)
class LineFaults:
    bit_flip_rate: float = 0.0  # per byte
    drop_rate: float = 0.0  # per byte
    duplicate_rate: float = 0.0  # per byte
    noise_burst_rate: float = 0.0  # per write: 1-16 random bytes before it
    split_writes: bool = False  # write each frame in random pieces with short pauses

    def corrupt(self, data: bytes, rng: random.Random) -> bytes:
        out = bytearray()
        if self.noise_burst_rate and rng.random() < self.noise_burst_rate:
            out += rng.randbytes(rng.randint(1, 16))
        for byte in data:
            if self.drop_rate and rng.random() < self.drop_rate:
                continue
            if self.bit_flip_rate and rng.random() < self.bit_flip_rate:
                byte ^= 1 << rng.randrange(8)
            out.append(byte)
            if self.duplicate_rate and rng.random() < self.duplicate_rate:
                out.append(byte)
        return bytes(out)


@dataclass(frozen=True)
class SerialIdentity:
    brand: str = "OpenMaker"
    model: str = "SIM-1"
    serial: str = "SIM0001"
    firmware: str = "1.0.0"


class PtyAppliance:
    def __init__(self, path: Path, dialect: str, model: ApplianceModel, profile: Profile | None = None,
                 faults: LineFaults = LineFaults(), seed: int = 0, clock: Callable[[], float] = time.time,
                 identity: SerialIdentity = SerialIdentity(), report_interval: float = 1.0,
                 unsolicited: bool = False) -> None:
        self.path = path
        self.dialect = dialect
        self.model = model
        self.profile = profile
        self.faults = faults
        self.clock = clock
        self.identity = identity
        self.report_interval = report_interval
        self.unsolicited = unsolicited or dialect == "haier"  # the Haier washer always reports unasked
        self.silent = False
        self.counters: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._master: int | None = None
        self._slave: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._sample: tuple[float, dict[str, float]] = (-1.0, {})

    # --- life cycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.plug()
        self._thread = threading.Thread(target=self._run, name=f"pty-{self.path.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.unplug()

    def plug(self) -> None:
        """A new pseudo-terminal behind `path` (like plugging a USB adapter back in)."""
        with self._lock:
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no line editing: a serial line, not a terminal
            link = self.path
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(os.ttyname(slave))
            self._master, self._slave = master, slave
            self.counters["plugs"] += 1

    def unplug(self) -> None:
        """The port vanishes: the pty is closed and the name removed."""
        with self._lock:
            for fd in (self._master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    # --- firmware loop -------------------------------------------------------------------------------------------
    def _run(self) -> None:
        decoder = self._decoder()
        next_report = time.monotonic()
        wait = min(0.02, self.report_interval) if self.unsolicited else 0.02
        while not self._stop.is_set():
            master = self._master
            if master is None:
                time.sleep(0.02)
                continue
            try:
                readable, _, _ = select.select([master], [], [], wait)
                data = os.read(master, 4096) if readable else b""
            except OSError:
                time.sleep(0.02)  # unplugged under our feet, or the gateway side is not open yet
                continue
            if decoder is not None:
                for frame in decoder.feed(data):
                    self.counters["requests"] += 1
                    self._answer(frame)
            while self.unsolicited and time.monotonic() >= next_report:  # catch up: keeps line rate over time
                next_report += self.report_interval
                self._send(self._report())

    def _report(self) -> bytes:
        if self.dialect == "haier":
            return self._haier_status().to_wire()
        reply = self._open_reply(open_dialect.poll(0, open_dialect.MessageType.TELEMETRY))
        return reply or b""

    def _decoder(self) -> StreamDecoder[Any] | None:
        if self.dialect == "midea":
            return midea.MideaDecoder(midea.AIR_CONDITIONER)
        if self.dialect == "open":
            return open_dialect.OpenDecoder()
        return None  # the Haier washer talks unasked

    def _answer(self, frame: object) -> None:
        if self.dialect == "midea" and isinstance(frame, midea.MideaFrame):
            reply = self._midea_reply(frame)
        elif isinstance(frame, open_dialect.OpenFrame):
            reply = self._open_reply(frame)
        else:
            reply = None
        if reply is not None:
            self._send(reply)

    def _send(self, data: bytes) -> None:
        if self.silent:
            return
        wire = self.faults.corrupt(data, self._rng)
        pieces = [wire]
        if self.faults.split_writes and len(wire) > 2:
            cut = self._rng.randrange(1, len(wire))
            pieces = [wire[:cut], wire[cut:]]
        for piece in pieces:
            with self._lock:
                if self._master is None:
                    return
                try:
                    os.write(self._master, piece)
                except OSError:
                    return
            self.counters["bytes"] += len(piece)
            if len(pieces) > 1:
                time.sleep(self._rng.uniform(0.0, 0.005))
        self.counters["frames"] += 1

    def _metrics(self) -> dict[str, float]:
        """One model sample shared by the replies to one round of polls."""
        now = self.clock()
        if now - self._sample[0] > 0.1:
            self._sample = (now, self.model.sample(now))
        return self._sample[1]

    # --- dialects --------------------------------------------------------------------------------------------------
    def _midea_reply(self, query: midea.MideaFrame) -> bytes | None:
        body = query.body
        if len(body) < 4 or body[0] != midea.MessageId.QUERY:
            return None
        if body[1] == 0x81:
            return midea_state_reply(self._metrics(), query.protocol_version)
        if body[1] == 0x21 and body[3] & 0x0F == 1:
            return midea_group_reply(self._metrics(), query.protocol_version)
        return None

    def _open_reply(self, frame: open_dialect.OpenFrame) -> bytes | None:
        kind = open_dialect.MessageType
        if frame.msg_type != kind.POLL or not frame.payload:
            return None
        self._seq = (self._seq + 1) & 0xFF
        if frame.payload[0] == kind.IDENTIFY:
            code = open_dialect.ApplianceCode[self.model.appliance_type.upper()]
            identify = open_dialect.Identify(code, self.identity.brand, self.identity.model, self.identity.serial,
                                             self.identity.firmware)
            return open_dialect.OpenFrame(kind.IDENTIFY, self._seq, identify.encode()).to_bytes()
        if frame.payload[0] == kind.TELEMETRY and self.profile is not None:
            ids = {name: uart_id for uart_id, name in self.profile.metric_by_uart_id().items()}
            values = tuple((ids[name], value) for name, value in self._metrics().items() if name in ids)
            return open_dialect.OpenFrame(kind.TELEMETRY, self._seq, open_dialect.Telemetry(values).encode()).to_bytes()
        return None

    def _haier_status(self) -> haier.HaierFrame:
        return haier_status(self._metrics())


# --- the vendor dialects' replies, from one model sample (shared with firmware_sim.scenario) ----------------------
_MIDEA_MODE = {3: midea.Mode.COOL, 4: midea.Mode.HEAT, 7: midea.Mode.FAN, 8: midea.Mode.DRY, 1: midea.Mode.AUTO}


def midea_state_reply(m: dict[str, float], protocol_version: int = 0) -> bytes:
    """The 0xC0 state answer of a Midea AC: power and mode as the unit runs them, set and room temperatures."""
    mode = int(m.get("system_mode", 3))
    state = midea.ACState(mode != 0, m["occupied_cooling_setpoint"], _MIDEA_MODE.get(mode, midea.Mode.COOL), 102,
                          m["local_temperature"], m["outdoor_temperature"], False, False, 0)
    return midea.MideaFrame(midea.AIR_CONDITIONER, protocol_version, midea.FrameType.QUERY,
                            midea.state_body(state)).to_bytes()


def midea_group_reply(m: dict[str, float], protocol_version: int = 0) -> bytes:
    """The 0xC1 group 1 answer: compressor, coil and discharge temperatures."""
    frequency = round(m["compressor_frequency"])
    group = midea.CompressorGroup(frequency, frequency, round(m["compressor_current"]), 230,
                                  m["local_temperature"], m["indoor_coil_temperature"],
                                  m["outdoor_temperature"] + 10, m["outdoor_temperature"],
                                  round(m["discharge_temperature"]))
    return midea.MideaFrame(midea.AIR_CONDITIONER, protocol_version, midea.FrameType.QUERY,
                            midea.compressor_group_body(group)).to_bytes()


def haier_status(m: dict[str, float]) -> haier.HaierFrame:
    """The status frame a Haier washer sends unasked: running or not."""
    state = b"\xb0\x31" if m.get("operational_state", 0) == 1 else b"\x30\x30"
    return haier.HaierFrame(0x06, b"\x6d\x01\x01" + state + bytes(10))
