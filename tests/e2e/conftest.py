"""Real parts for end-to-end tests: brokers, the platform stand-in, gateways on real SQLite files."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from firmware_sim.localnet import LocalServiceError, MosquittoProcess
from firmware_sim.platform import PlatformServer
from gateway.app import Gateway
from gateway.clock import Clock
from gateway.config import BrokerConfig, GatewayConfig, StorageConfig, UpstreamConfig, WebConfig


class Mosquitto(MosquittoProcess):
    def start(self) -> None:
        """A broker a test needs that cannot start fails the test with the reason; it is never skipped."""
        try:
            super().start()
        except LocalServiceError as exc:
            pytest.fail(str(exc))


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[PlatformServer]:
    server = PlatformServer(tmp_path / "platform.db")
    await server.start()
    yield server
    await server.stop()


@dataclass
class RunningGateway:
    gateway: Gateway
    task: asyncio.Task[None]
    broker_host: str
    broker_port: int

    async def stop(self) -> None:
        self.gateway.request_stop()
        await asyncio.wait_for(self.task, timeout=15)


class SteppedClock:
    """The system clock plus an offset a test moves, as NTP or an operator moves the real one."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


def gateway_config(tmp_path: Path, platform: PlatformServer, broker_url: str = "") -> GatewayConfig:
    return GatewayConfig(
        site="test-home",
        broker=BrokerConfig(url=broker_url, embedded_port=0 if not broker_url else 1883,
                            reconnect_min_seconds=0.1, reconnect_max_seconds=1.0),
        storage=StorageConfig(database=str(tmp_path / "gateway.db"), key_file=str(tmp_path / "gateway.key")),
        upstream=UpstreamConfig(url=platform.url, retry_min_seconds=0.2, retry_max_seconds=1.0,
                                group_wait_seconds=0.5),
        web=WebConfig(port=0, admin_token=ADMIN_TOKEN),
    )


StartGateway = Callable[..., Awaitable[RunningGateway]]
ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def start_gateway(tmp_path: Path, platform: PlatformServer) -> AsyncIterator[StartGateway]:
    """Start a gateway in this event loop; `broker_url=""` makes it start its embedded broker."""
    running: list[RunningGateway] = []

    async def start(broker_url: str = "", clock: Clock | None = None, **changes: object) -> RunningGateway:
        config = replace(gateway_config(tmp_path, platform, broker_url), **changes)  # type: ignore[arg-type]
        gateway = Gateway(config, clock)
        ready = asyncio.Event()
        task = asyncio.create_task(gateway.run(ready))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert ready.is_set(), "gateway did not start within 15 s"
        host, port = (gateway.broker.host, gateway.broker.port) if gateway.broker else config.broker.host_port()
        handle = RunningGateway(gateway, task, host, port)
        running.append(handle)
        await eventually(lambda: gateway.link is not None and gateway.link.connected, 10, "gateway connects")
        return handle

    yield start
    for handle in running:
        if not handle.task.done():
            await handle.stop()


async def eventually(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll until `predicate` holds; fail with `what` if it does not within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out after {seconds} s waiting until: {what}")


@pytest.fixture(params=["embedded", "mosquitto"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def broker_url(broker_kind: str, request: pytest.FixtureRequest) -> str:
    """'' for the gateway's embedded broker (its default), or the URL of a mosquitto process of the test's own."""
    if broker_kind == "embedded":
        return ""
    mosquitto: Mosquitto = request.getfixturevalue("mosquitto")
    return f"mqtt://127.0.0.1:{mosquitto.port}"


