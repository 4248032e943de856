"""The embedded MQTT broker the gateway starts on loopback when no external broker is configured.

Debian's mosquitto when it is installed, with a configuration the gateway writes (loopback only), or amqtt,
pure Python, as the fallback (`broker.embedded_broker`: auto, mosquitto or amqtt). Measured on this 2-core
machine (`benchmarks/default_broker.py`), amqtt in a process of its own stores every message at 8,000 msg/s
but falls 5-30 s behind above about 3,000 msg/s; mosquitto keeps up to at least 8,000 msg/s with a lag of
milliseconds.

Either runs under a small watchdog child (`python -m gateway.transport.broker`), so the broker's work never
competes with ingest or the web for the gateway's interpreter lock, and so the broker exits with the gateway:
on SIGTERM, and by itself within a second when the gateway is gone, even after SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from gateway.signals import stop_on_signals

log = logging.getLogger("gateway.broker")

START_TIMEOUT_SECONDS = 20.0
# a killed gateway's broker sees its parent gone within a second (`_watch`) and exits; a restart waits for it
PREVIOUS_BROKER_GRACE_SECONDS = 5.0
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")


class BrokerStartError(Exception):
    """The embedded broker could not listen (port in use, permission, not installed)."""


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next((p for p in MOSQUITTO_PATHS if Path(p).exists()), None)


def choose_kind(wanted: str) -> str:
    """auto -> mosquitto where installed, else amqtt."""
    if wanted == "auto":
        return "mosquitto" if find_mosquitto() else "amqtt"
    if wanted == "mosquitto" and find_mosquitto() is None:
        raise BrokerStartError("broker.embedded_broker = \"mosquitto\" but mosquitto is not installed "
                               "(apt-get install mosquitto), or use \"auto\" to fall back to amqtt")
    return wanted


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883, kind: str = "auto") -> None:
        self.host = host
        self.port = port if port else free_port(host)
        self.kind = choose_kind(kind)
        self._process: subprocess.Popen[bytes] | None = None
        self._errors: IO[bytes] | None = None  # the child's stderr: a file, so a chatty broker never blocks

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process that relays messages (mosquitto itself, or the amqtt process)."""
        if self._process is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            children = Path(f"/proc/{self._process.pid}/task/{self._process.pid}/children").read_text().split()
            if children:
                return int(children[0])
        return self._process.pid

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        """Spawn the broker and wait until it accepts connections (or say why it did not)."""
        deadline = time.monotonic() + PREVIOUS_BROKER_GRACE_SECONDS
        while _accepts(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.1)  # perhaps the broker of a gateway that was just killed: it follows its parent
        if _accepts(self.host, self.port):
            raise BrokerStartError(f"embedded MQTT broker cannot listen on {self.host}:{self.port}: "
                                   "something else listens there (set broker.url to use it, or another port)")
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (open for the life of the broker; closed in _stop)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gateway.transport.broker", "--kind", self.kind, "--host", self.host,
             "--port", str(self.port), "--parent", str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._errors)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _accepts(self.host, self.port):
            if self._process.poll() is not None:
                self._errors.seek(0)
                error = self._errors.read()[-4000:].decode(errors="replace")
                self._process = None
                self._errors.close()
                last = error.strip().splitlines()[-1] if error.strip() else "it exited"
                raise BrokerStartError(f"embedded MQTT broker ({self.kind}) cannot listen on "
                                       f"{self.host}:{self.port}: {last}")
            if time.monotonic() > deadline:
                self._stop()
                raise BrokerStartError(f"embedded MQTT broker ({self.kind}) did not listen on "
                                       f"{self.host}:{self.port} within {START_TIMEOUT_SECONDS:.0f} s")
            time.sleep(0.05)
        log.info("embedded MQTT broker (%s) listening on %s", self.kind, self.url)

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._errors is not None:
            self._errors.close()
            self._errors = None


def _accepts(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --- the watchdog child --------------------------------------------------------------------------------------

def mosquitto_config(host: str, port: int) -> str:
    """Loopback only, anonymous (nothing else can reach it), and queues deep enough that a thousand appliances
    announcing themselves at once lose nothing (mosquitto keeps 1,000 QoS 1 messages per client by default)."""
    return (f"listener {port} {host}\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n"
            "max_inflight_messages 0\nsys_interval 5\nlog_dest stderr\nlog_type error\n")


async def _watch(parent: int, alive: asyncio.Event, stopped: asyncio.Event) -> None:
    """Until a signal, the parent's death, or the broker's own end."""
    stop_on_signals(stopped.set)
    while not stopped.is_set() and alive.is_set() and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopped.wait(), 1.0)


async def _serve_amqtt(host: str, port: int, parent: int) -> None:
    from amqtt.broker import Broker

    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.ERROR)
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    try:
        await broker.start()
    except Exception as exc:  # amqtt wraps OSError in its own BrokerError; the reason is in the text
        print(f"{exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from exc
    alive = asyncio.Event()
    alive.set()
    await _watch(parent, alive, asyncio.Event())
    await broker.shutdown()


async def _serve_mosquitto(host: str, port: int, parent: int) -> None:
    binary = find_mosquitto()
    if binary is None:
        print("mosquitto is not installed", file=sys.stderr, flush=True)
        raise SystemExit(2)
    with tempfile.TemporaryDirectory(prefix="gateway-mosquitto-") as folder:
        config = Path(folder) / "mosquitto.conf"
        config.write_text(mosquitto_config(host, port))
        process = await asyncio.create_subprocess_exec(binary, "-c", str(config), stdin=subprocess.DEVNULL,
                                                       stdout=subprocess.DEVNULL, stderr=None)
        alive = asyncio.Event()
        alive.set()

        async def reap() -> None:
            await process.wait()
            alive.clear()

        reaper = asyncio.create_task(reap())
        await _watch(parent, alive, asyncio.Event())
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
        await reaper
        if process.returncode not in (0, -signal.SIGTERM) and os.getppid() == parent:
            raise SystemExit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description="The gateway's embedded MQTT broker (started by the gateway).")
    parser.add_argument("--kind", choices=("mosquitto", "amqtt"), default="amqtt")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--parent", type=int, default=os.getppid(), help="exit when this process is gone")
    args = parser.parse_args()
    serve = _serve_mosquitto if args.kind == "mosquitto" else _serve_amqtt
    asyncio.run(serve(args.host, args.port, args.parent))


if __name__ == "__main__":
    main()
