"""The embedded MQTT broker (amqtt) the gateway starts on loopback when no external broker is configured.

It runs in its own process (`python -m gateway.transport.broker`), so the broker's Python work never competes
with ingest or the web console for one event loop or one interpreter lock. The child exits with its parent:
on SIGTERM, and by itself within a second when the gateway that started it is gone (even after SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time

log = logging.getLogger("gateway.broker")

START_TIMEOUT_SECONDS = 20.0


class BrokerStartError(Exception):
    """The embedded broker could not listen (port in use, permission)."""


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port if port else free_port(host)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        """Spawn the broker process and wait until it accepts connections (or say why it did not)."""
        if _accepts(self.host, self.port):
            raise BrokerStartError(f"embedded MQTT broker cannot listen on {self.host}:{self.port}: "
                                   "something else listens there (set broker.url to use it, or another port)")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gateway.transport.broker", "--host", self.host, "--port", str(self.port),
             "--parent", str(os.getpid())], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _accepts(self.host, self.port):
            if self._process.poll() is not None:
                error = (self._process.stderr.read() if self._process.stderr else b"").decode(errors="replace")
                self._process = None
                raise BrokerStartError(f"embedded MQTT broker cannot listen on {self.host}:{self.port}: "
                                       f"{error.strip().splitlines()[-1] if error.strip() else 'it exited'}")
            if time.monotonic() > deadline:
                self._stop()
                raise BrokerStartError(f"embedded MQTT broker did not listen on {self.host}:{self.port} "
                                       f"within {START_TIMEOUT_SECONDS:.0f} s")
            time.sleep(0.05)
        log.info("embedded MQTT broker listening on %s (process %d)", self.url, self._process.pid)

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            process.stderr.close()


def _accepts(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def _serve(host: str, port: int, parent: int) -> None:
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    while not stop.is_set() and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    await broker.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description="The gateway's embedded MQTT broker (started by the gateway).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--parent", type=int, default=os.getppid(), help="exit when this process is gone")
    args = parser.parse_args()
    asyncio.run(_serve(args.host, args.port, args.parent))


if __name__ == "__main__":
    main()
