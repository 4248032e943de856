"""Faults under load, end to end: the gateway CLI, a real broker, the platform stand-in and simulated appliances
publishing over MQTT, while something breaks: the broker is killed mid-stream, the gateway is killed inside the
group wait, or hundreds of appliances fault at once.

Used by tests/e2e/test_load_faults.py (which asserts every ticket arrives exactly once) and by
benchmarks/load_faults.py (which prints the table). Every scenario is bounded in time and stops what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.delivery_faults import GatewayProcess, until
from firmware_sim.localnet import MosquittoProcess, free_port
from firmware_sim.platform import PlatformServer
from gateway.config import PROJECT_ROOT

ADMIN_TOKEN = "load-faults-admin-token"
# vendor codes that each open a ticket at once (a code is the appliance's own verdict: no `for`)
FAULT_CODES = (("washer", "LG", "OE"), ("washer", "Samsung", "5E"), ("washer", "Bosch", "E18"),
               ("air_conditioner", "Midea", "P0"))


@dataclass(frozen=True)
class LoadResult:
    scenario: str
    expected: int  # appliances that must end with exactly one ticket
    delivered: int
    duplicated: int  # tickets beyond one per faulty appliance, or for an appliance that had no fault
    lost: int
    telemetry: str  # what happened to the telemetry published meanwhile
    seconds: float
    note: str = ""

    def row(self) -> str:
        return (f"| {self.scenario} | {self.expected} | {self.delivered} | {self.duplicated} | {self.lost} | "
                f"{self.telemetry} | {self.seconds:.1f} | {self.note} |")


TABLE_HEADER = ("| scenario | faulty appliances | tickets delivered | duplicated | lost | telemetry | seconds | "
                "note |\n|---|---|---|---|---|---|---|---|")


def gateway_toml(folder: Path, platform_url: str, broker_url: str = "", group_wait: float = 0.5) -> tuple[Path, int]:
    """A gateway on the shipped rules, its own broker (embedded) unless `broker_url`; returns (config, web port)."""
    web_port = free_port()
    broker = f'url = "{broker_url}"' if broker_url else f"embedded_port = {free_port()}"
    config = folder / "gateway.toml"
    config.write_text(f"""
site = "load-lab"
[broker]
{broker}
reconnect_min_seconds = 0.1
[storage]
database = "{folder / 'gateway.db'}"
key_file = "{folder / 'gateway.key'}"
[rules]
paths = ["{PROJECT_ROOT / 'rules'}"]
profiles = "{PROJECT_ROOT / 'rules' / 'profiles'}"
[upstream]
url = "{platform_url}"
group_wait_seconds = {group_wait}
retry_min_seconds = 0.1
retry_max_seconds = 1.0
[web]
port = {web_port}
admin_token = "{ADMIN_TOKEN}"
""")
    return config, web_port


class Console:
    """The owner's view of the running gateway over HTTP: status, and the latency of its pages."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def status(self) -> dict[str, object]:
        async with aiohttp.ClientSession(headers=self.headers) as session, \
                session.get(self.base + "/api/status", timeout=aiohttp.ClientTimeout(total=10)) as response:
            result: dict[str, object] = await response.json()
            return result

    async def devices(self) -> set[str]:
        """The ids of every appliance this gateway knows, page by page."""
        found: set[str] = set()
        async with aiohttp.ClientSession(headers=self.headers) as session:
            while True:
                async with session.get(f"{self.base}/api/devices?limit=200&offset={len(found)}",
                                       timeout=aiohttp.ClientTimeout(total=10)) as response:
                    page = await response.json()
                    found |= {d["device_id"] for d in page}
                    if len(found) >= int(response.headers["X-Total-Count"]) or not page:
                        return found

    async def ready(self, gateway: GatewayProcess, seconds: float = 30) -> None:
        async def connected() -> bool:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                return bool((await self.status())["mqtt_connected"])
            return False
        deadline = time.monotonic() + seconds
        while not await connected():
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not come up: " + gateway.text()[-1500:])
            await asyncio.sleep(0.1)

    async def watch(self, stop: asyncio.Event, latencies: list[float], failures: list[str]) -> None:
        """GET the list page and the status, one after the other, until `stop`: how the console feels."""
        async with aiohttp.ClientSession(headers=self.headers) as session:
            while not stop.is_set():
                for path in ("/", "/api/status"):
                    started = time.perf_counter()
                    try:
                        async with session.get(self.base + path,
                                               timeout=aiohttp.ClientTimeout(total=30)) as response:
                            await response.read()
                            if response.status != 200:
                                failures.append(f"{path}: HTTP {response.status}")
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        failures.append(f"{path}: {exc!r}")
                    latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.1)


class Publisher:
    """Appliances behind one paho client with a persistent session, QoS 1: what a broker acknowledged is what
    the gateway should receive. Given several ports (the nodes of one cluster), it moves to the next node when
    its node goes away, as a cloud bridge with a node list does."""

    def __init__(self, port: int | list[int], client_id: str) -> None:
        self.ports = [port] if isinstance(port, int) else list(port)
        self.node = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                  protocol=mqtt.MQTTv311)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", self.ports[0], keepalive=10)
        self.client.on_publish = self._acknowledged
        self.client.on_disconnect = self._next_node
        self.client.on_connect_fail = self._next_node  # a node that is down refuses: try the one after it
        self.acknowledged_ids: set[int] = set()
        self.sent = 0
        self.client.loop_start()

    def _next_node(self, client: mqtt.Client, *rest: object) -> None:
        """paho reconnects to the host it was given last: give it the next node. Called on a lost connection and
        on a refused one too, or a publisher whose next node is the dead one would retry that node forever."""
        if len(self.ports) > 1:
            self.node = (self.node + 1) % len(self.ports)
            client.connect_async("127.0.0.1", self.ports[self.node], keepalive=10)

    def _acknowledged(self, client: mqtt.Client, userdata: object, mid: int, *rest: object) -> None:
        self.acknowledged_ids.add(mid)

    def send(self, topic: str, payload: dict[str, object], retain: bool = False) -> None:
        """Published now, or queued by paho while the broker is away and sent when it is back."""
        self.client.publish(topic, orjson.dumps(payload), qos=1, retain=retain)
        self.sent += 1

    def announce(self, device: str, appliance: str, brand: str) -> None:
        self.send(f"appliances/{device}/meta", {"type": appliance, "brand": brand, "model": "L1"}, retain=True)

    def acknowledged(self, timeout: float = 30.0) -> int:
        """How many of the messages sent the broker acknowledged, once all are or `timeout` has passed."""
        deadline = time.monotonic() + timeout
        while len(self.acknowledged_ids) < self.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.acknowledged_ids)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def tally(platform: PlatformServer, faulty: set[str]) -> tuple[int, int, int]:
    """(delivered, duplicated, lost) counted by appliance: exactly one ticket per faulty appliance."""
    per_device = Counter(t["device_id"] for t in platform.store.list_tickets())
    delivered = len(faulty & set(per_device))
    duplicated = sum(n - 1 for d, n in per_device.items() if d in faulty) + sum(
        n for d, n in per_device.items() if d not in faulty)
    return delivered, duplicated, len(faulty - set(per_device))


def incidents_in(db: Path) -> int:
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM incidents").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


@dataclass
class Lab:
    """One scenario's running parts: the platform stand-in, the gateway CLI, its console, and the appliances."""

    folder: Path
    platform: PlatformServer
    gateway: GatewayProcess
    console: Console
    publisher: Publisher


@contextlib.asynccontextmanager
async def lab(folder: Path, client_id: str, broker_url: str = "", group_wait: float = 0.5) -> AsyncIterator[Lab]:
    """Start the platform, the gateway (on `broker_url`, or its embedded broker) and the appliances' client;
    stop all of them afterwards, whatever happened."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    platform = PlatformServer(folder / "platform.db", port=free_port())
    await platform.start()
    config, web_port = gateway_toml(folder, platform.url, broker_url, group_wait)
    gateway, console = GatewayProcess(config, folder / "gateway.log"), Console(web_port)
    publisher: Publisher | None = None
    try:
        await gateway.start()
        await console.ready(gateway)
        port = int(str((await console.status())["broker_url"]).rsplit(":", 1)[1])
        publisher = await asyncio.to_thread(Publisher, port, client_id)
        yield Lab(folder, platform, gateway, console, publisher)
    finally:
        if publisher is not None:
            publisher.close()
        await gateway.stop(signal.SIGKILL)
        await platform.stop()


async def fault_burst(tmp: Path, appliances: int = 300, within: float = 10.0) -> LoadResult:
    """`appliances` appliances of several brands each raise a fault code within `within` seconds; every one
    must reach the platform exactly once, and the console must keep answering meanwhile."""
    devices = [(f"burst-{i:03d}", *FAULT_CODES[i % len(FAULT_CODES)]) for i in range(appliances)]
    started = time.monotonic()
    async with lab(tmp / "burst", "burst-appliances") as run:
        for device, appliance, brand, _ in devices:
            run.publisher.announce(device, appliance, brand)
        await asyncio.to_thread(run.publisher.acknowledged)
        stop, latencies, failures = asyncio.Event(), list[float](), list[str]()
        watcher = asyncio.create_task(run.console.watch(stop, latencies, failures))
        burst_started = time.monotonic()
        for n, (device, _, _, code) in enumerate(devices):  # spread evenly over `within`
            run.publisher.send(f"appliances/{device}/event", {"ts": time.time(), "code": code, "active": True})
            await asyncio.sleep(max(0.0, burst_started + within * (n + 1) / appliances - time.monotonic()))
        await until(lambda: len(run.platform.store.list_tickets()) >= appliances, 120)
        all_in = time.monotonic() - burst_started
        await asyncio.sleep(2.0)  # anything sent twice would arrive now
        stop.set()
        await watcher
        delivered, duplicated, lost = tally(run.platform, {d for d, *_ in devices})
    ms = sorted(x * 1000 for x in latencies)
    note = (f"every ticket at the platform {all_in:.1f} s after the first fault; console "
            f"(`/` and `/api/status`, {len(ms)} requests during the burst) p50 {statistics.median(ms):.0f} ms, "
            f"p99 {ms[int(0.99 * (len(ms) - 1))]:.0f} ms, worst {ms[-1]:.0f} ms, "
            f"{len(failures)} failed{': ' + failures[0] if failures else ''}")
    return LoadResult(f"{appliances} appliances faulting within {within:g} s", appliances, delivered,
                      duplicated, lost, "n/a (vendor codes)", time.monotonic() - started, note)


async def broker_killed(tmp: Path, how: signal.Signals = signal.SIGKILL, devices: int = 20,
                        rate: float = 200.0, seconds: float = 12.0, outage: float = 5.0) -> LoadResult:
    """Telemetry at QoS 1 from `devices` appliances while the broker (mosquitto with persistence, saving every
    second) is stopped with `how` mid-stream and started again `outage` s later; one fault code before the
    outage and one after must each give exactly one ticket."""
    folder = tmp / f"broker-{how.name}"
    folder.mkdir(parents=True, exist_ok=True)
    broker = MosquittoProcess(folder, extra_config="autosave_interval 1\nmax_queued_messages 0\n", persistent=True)
    broker.start()
    started = time.monotonic()
    telemetry = 0
    try:
        async with lab(folder, "fleet-behind-a-broker", broker.url) as run:
            for device in ("washer-before", "washer-after"):
                run.publisher.announce(device, "washer", "LG")
            ids = [f"tele-{i:02d}" for i in range(devices)]
            killed = restarted = False
            killed_at = 0.0
            begin = time.monotonic()
            while time.monotonic() - begin < seconds:
                if not killed and time.monotonic() - begin > seconds / 3:
                    run.publisher.send("appliances/washer-before/event", {"ts": time.time(), "code": "OE"})
                    await asyncio.sleep(0.5)
                    assert broker.process is not None
                    broker.process.send_signal(how)
                    await asyncio.to_thread(broker.process.wait, 15)
                    killed, killed_at = True, time.monotonic()
                if killed and not restarted and time.monotonic() - killed_at > outage:
                    await asyncio.to_thread(broker.start)
                    restarted = True
                    run.publisher.send("appliances/washer-after/event", {"ts": time.time(), "code": "OE"})
                run.publisher.send(f"appliances/{ids[telemetry % devices]}/telemetry",
                                   {"ts": time.time(), "type": "washer", "metrics": {"vibration": 0.1}})
                telemetry += 1
                await asyncio.sleep(max(0.0, begin + telemetry / rate - time.monotonic()))
            acknowledged = await asyncio.to_thread(run.publisher.acknowledged) - 4  # two metas, two codes
            await until(lambda: len(run.platform.store.list_tickets()) >= 2, 30)
            await asyncio.sleep(3.0)  # the gateway drains what the broker queued; a resend would arrive now
            final = await run.console.status()
            delivered, duplicated, lost = tally(run.platform, {"washer-before", "washer-after"})
    finally:
        broker.stop()
    handled = int(str(final["samples"])) - 2  # the two codes are samples too
    lost_telemetry, twice = max(0, acknowledged - handled), max(0, handled - acknowledged)
    return LoadResult(
        f"broker {'killed (SIGKILL)' if how == signal.SIGKILL else 'restarted (SIGTERM)'} mid-stream, "
        f"{outage:g} s down, QoS 1", 2, delivered, duplicated, lost,
        f"{telemetry} published, {acknowledged} acknowledged by the broker, {handled} handled, "
        f"{lost_telemetry} lost, {twice} handled twice ({final['mqtt_repeats_dropped']} QoS 1 repeats dropped)",
        time.monotonic() - started,
        "mosquitto with persistence, saving every second; the gateway's session is persistent")


async def sigkill_in_group_wait(tmp: Path, group_wait: float = 4.0) -> LoadResult:
    """The gateway is SIGKILLed after it recorded a fault but while the ticket waits out its group wait (not yet
    sent), then restarted: the ticket goes out once, after the wait."""
    started = time.monotonic()
    async with lab(tmp / "group-wait", "group-wait-appliance", group_wait=group_wait) as run:
        run.publisher.announce("washer-gw", "washer", "LG")
        run.publisher.send("appliances/washer-gw/event", {"ts": time.time(), "code": "OE"})
        await until(lambda: incidents_in(run.folder / "gateway.db") == 1, 20)
        posts_at_kill = run.platform.posts
        await run.gateway.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        await run.gateway.start()
        await run.console.ready(run.gateway)
        await until(lambda: len(run.platform.store.list_tickets()) >= 1, 30)
        after = time.monotonic() - killed_at
        await asyncio.sleep(2.0)
        delivered, duplicated, lost = tally(run.platform, {"washer-gw"})
    return LoadResult(f"gateway SIGKILL inside the group wait ({group_wait:g} s)", 1, delivered, duplicated,
                      lost, "n/a", time.monotonic() - started,
                      f"{posts_at_kill} POSTs before the kill; delivered {after:.1f} s after it, by the "
                      "restarted gateway")


SCENARIOS = {
    "fault_burst": fault_burst,
    "broker_restarted": lambda tmp: broker_killed(tmp, signal.SIGTERM),
    "broker_killed": broker_killed,
    "sigkill_in_group_wait": sigkill_in_group_wait,
}
