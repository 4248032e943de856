"""Scale-out on a real 3-node NATS cluster (Debian's nats-server, MQTT listener, JetStream, the partition mapping
of gateway/cluster/nats_config.py) with 2 gateway workers (`appliance-gateway run --partition I --partitions 2`):
every appliance is owned by exactly one worker, and faults in both partitions give exactly one ticket each, also
when a NATS node or a worker is killed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from firmware_sim.bulk_fleet import BulkFleet
from firmware_sim.delivery_faults import GatewayProcess, until
from firmware_sim.load_faults import Console, Publisher, gateway_toml
from firmware_sim.localnet import free_port
from firmware_sim.nats_cluster import NatsCluster
from firmware_sim.platform import PlatformServer
from gateway.cluster.workers import rotated
from gateway.config import PROJECT_ROOT

pytestmark = pytest.mark.e2e

PARTITIONS = 2
LG_WASHERS = [f"wm-lg-{i}" for i in range(8)]  # brand LG: the vendor code OE opens a ticket at once


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "nats", nodes=3, partitions=PARTITIONS)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass
class Workers:
    processes: list[GatewayProcess]
    consoles: list[Console]

    async def start(self, i: int) -> None:
        await self.processes[i].start()
        await self.consoles[i].ready(self.processes[i])

    async def owned(self) -> list[set[str]]:
        return [await console.devices() for console in self.consoles]


@contextlib.asynccontextmanager
async def workers(folder: Path, nats: NatsCluster, platform: PlatformServer) -> AsyncIterator[Workers]:
    """Two workers sharing one config and one folder; worker i lists node i first, so they start on different
    nodes (each moves to the next node when its own goes away)."""
    config, web = gateway_toml(folder, platform.url, nats.url)  # worker i's console: web + i
    team = Workers([GatewayProcess(config, folder / f"worker-{i}.log", "--partition", str(i), "--partitions",
                                   str(PARTITIONS), "--broker", rotated(nats.url, i),
                                   "--web-port", str(web + i)) for i in range(PARTITIONS)],
                   [Console(web + i) for i in range(PARTITIONS)])
    try:
        for i in range(PARTITIONS):
            await team.start(i)
        yield team
    finally:
        for process in team.processes:
            await process.stop(signal.SIGKILL)


def tickets_by_device(platform: PlatformServer) -> Counter[str]:
    """Drain-fault tickets per appliance: the fault raised on purpose (silence is asserted on its own)."""
    return Counter(t["device_id"] for t in platform.store.list_tickets() if t["fault_code"] == "WM-DRAIN")


def tickets_in_full(platform: PlatformServer) -> list[tuple[object, ...]]:
    """Who got which ticket and when, for a failure's message."""
    found = []
    for summary in platform.store.list_tickets():
        full = platform.store.get(summary["ticket_id"]) or {}
        ticket = full.get("ticket", {})
        found.append((summary["device_id"], summary["fault_code"], ticket.get("worker"),
                      [(f["rule"], f["onset_ts"]) for f in ticket.get("findings", [])]))
    return found


def worker_of(platform: PlatformServer, device: str) -> int:
    [ticket] = [t for t in platform.store.list_tickets() if t["device_id"] == device and t["fault_code"] == "WM-DRAIN"]
    full = platform.store.get(ticket["ticket_id"])
    assert full is not None
    return int(full["ticket"]["worker"]["partition"])


async def announce_washers(publisher: Publisher, team: Workers) -> list[set[str]]:
    for device in LG_WASHERS:
        publisher.announce(device, "washer", "LG")

    async def all_owned() -> bool:
        return sum(len(set(LG_WASHERS) & owned) for owned in await team.owned()) == len(LG_WASHERS)
    deadline = time.monotonic() + 30
    while not await all_owned():
        assert time.monotonic() < deadline, "every washer reaches a worker"
        await asyncio.sleep(0.2)
    return [set(LG_WASHERS) & owned for owned in await team.owned()]


async def test_every_appliance_has_one_owner_and_every_fault_one_ticket(tmp_path: Path, nats: NatsCluster,
                                                                        platform: PlatformServer) -> None:
    ports = [node.port for node in nats.nodes]
    fleets = [BulkFleet(100, "127.0.0.1", ports[0], first=0), BulkFleet(100, "127.0.0.1", ports[2], first=100)]
    async with workers(tmp_path, nats, platform) as team:
        for fleet in fleets:  # 200 appliances of all five types, announced on two different nodes
            await asyncio.to_thread(fleet.connect)
            now = time.time()
            for appliance in fleet.appliances:
                fleet.publish(appliance, now)
            await asyncio.to_thread(fleet.flush)
        everyone = {a.device_id for fleet in fleets for a in fleet.appliances}
        deadline = time.monotonic() + 30
        while sum(len(o & everyone) for o in await team.owned()) < len(everyone):
            assert time.monotonic() < deadline, "all 200 appliances reach a worker"
            await asyncio.sleep(0.5)
        owned = [o & everyone for o in await team.owned()]
        assert not owned[0] & owned[1], "no appliance is owned by both workers"
        assert owned[0] | owned[1] == everyone
        assert all(len(o) > 40 for o in owned), [len(o) for o in owned]  # the hash spreads them
        types = [{d.split("-")[0] for d in o} for o in owned]
        assert all(len(t) == 5 for t in types), types

        publisher = await asyncio.to_thread(Publisher, ports[1], "lg-washers")
        try:
            washers = await announce_washers(publisher, team)
            assert all(washers), f"washers in both partitions: {washers}"
            for device in LG_WASHERS:
                publisher.send(f"appliances/{device}/event", {"ts": time.time(), "code": "OE"})
            await until(lambda: set(LG_WASHERS) <= set(tickets_by_device(platform)), 30)
            await asyncio.sleep(2.0)  # a second ticket from anyone would arrive now
        finally:
            publisher.close()
        for fleet in fleets:
            fleet.disconnect()
    counts = tickets_by_device(platform)
    assert {d: counts[d] for d in LG_WASHERS} == dict.fromkeys(LG_WASHERS, 1), counts
    for partition, devices in enumerate(washers):
        assert {worker_of(platform, d) for d in devices} == {partition}, "each ticket names its owner's partition"


async def test_a_nats_node_killed_mid_stream_loses_no_ticket(tmp_path: Path, nats: NatsCluster,
                                                             platform: PlatformServer) -> None:
    ports = [node.port for node in nats.nodes]
    async with workers(tmp_path, nats, platform) as team:
        publisher = await asyncio.to_thread(Publisher, ports, "lg-washers")  # on node 0, as worker 0 is
        try:
            washers = await announce_washers(publisher, team)
            before, after = LG_WASHERS[:4], LG_WASHERS[4:]
            for device in before:
                publisher.send(f"appliances/{device}/event", {"ts": time.time(), "code": "OE"})
            sent = 0
            for second in range(12):  # QoS 1 telemetry, 100 msg/s; node 0 dies after 4 s
                if second == 4:
                    nats.nodes[0].kill()
                for i in range(100):
                    device = LG_WASHERS[i % len(LG_WASHERS)]
                    publisher.send(f"appliances/{device}/telemetry",
                                   {"ts": time.time(), "metrics": {"vibration": 0.1}})
                    sent += 1
                    await asyncio.sleep(0.01)
            for device in after:
                publisher.send(f"appliances/{device}/event", {"ts": time.time(), "code": "OE"})
            acknowledged = await asyncio.to_thread(publisher.acknowledged, 30)
            await until(lambda: set(LG_WASHERS) <= set(tickets_by_device(platform)), 45)
            await asyncio.sleep(3.0)
            statuses = [await c.status() for c in team.consoles]
        finally:
            publisher.close()
    counts = tickets_by_device(platform)
    assert {d: counts[d] for d in LG_WASHERS} == dict.fromkeys(LG_WASHERS, 1), tickets_in_full(platform)
    # while the killed node's JetStream leaders move, QoS 1 delivery to a connected worker can stall past a
    # washer's 20 s silence limit: all of a worker's washers quiet at once is its own deafness, no ticket
    silent = [t["device_id"] for t in platform.store.list_tickets() if t["fault_code"] == "DQ-SILENT"]
    assert not silent, (silent, [s["fleet_quiet"] for s in statuses])
    assert all(s["mqtt_connected"] for s in statuses)
    assert statuses[0]["mqtt_node"] != f"127.0.0.1:{ports[0]}", "worker 0 moved to another node"
    handled = sum(int(str(s["samples"])) for s in statuses) - len(LG_WASHERS)  # the codes are samples too
    print(f"node killed: {sent} telemetry sent, {acknowledged - 2 * len(LG_WASHERS)} acknowledged, "
          f"{handled} handled by the workers, washers per worker {[len(w) for w in washers]}, spells of the whole "
          f"fleet quiet at once per worker {[s['fleet_quiet']['spells'] for s in statuses]}")


async def test_a_killed_worker_gets_what_its_appliances_sent_meanwhile(tmp_path: Path, nats: NatsCluster,
                                                                      platform: PlatformServer) -> None:
    ports = [node.port for node in nats.nodes]
    async with workers(tmp_path, nats, platform) as team:
        publisher = await asyncio.to_thread(Publisher, ports[2], "lg-washers")
        try:
            washers = await announce_washers(publisher, team)
            mine = sorted(washers[1])
            assert mine, "partition 1 owns some washers"
            await team.processes[1].stop(signal.SIGKILL)
            start = time.time() - 60
            for n in range(20):  # 20 QoS 1 samples per washer of the dead worker, and one fault
                for device in mine:
                    publisher.send(f"appliances/{device}/telemetry",
                                   {"ts": start + n, "metrics": {"vibration": 0.1}})
            publisher.send(f"appliances/{mine[0]}/event", {"ts": time.time(), "code": "OE"})
            await asyncio.to_thread(publisher.acknowledged, 20)
            await team.start(1)

            async def samples() -> int:
                return int(str((await team.consoles[1].status())["samples"]))
            deadline = time.monotonic() + 30
            while await samples() < 20 * len(mine) + 1:
                status = await team.consoles[1].status()
                assert time.monotonic() < deadline, (f"{status['samples']} of {20 * len(mine) + 1} samples arrived "
                                                     f"(messages {status['messages']}, dropped {status['dropped']})")
                await asyncio.sleep(0.2)
            await until(lambda: mine[0] in tickets_by_device(platform), 30)
            await asyncio.sleep(2.0)
        finally:
            publisher.close()
    assert tickets_by_device(platform) == {mine[0]: 1}, tickets_in_full(platform)


async def test_the_cluster_command_supervises_its_workers_and_lists_them(tmp_path: Path, nats: NatsCluster,
                                                                        platform: PlatformServer) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[storage]
database = "{tmp_path / 'gateway.db'}"
key_file = "{tmp_path / 'gateway.key'}"
[upstream]
url = "{platform.url}"
""")
    web, fleet = free_port(), free_port()
    while fleet in (web, web + 1) or platform.port in (web, web + 1):
        web, fleet = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "cluster", "--partitions", "2", "--nats", nats.url, "--config", str(config),
        "--web-port", str(web), "--fleet-port", str(fleet), cwd=PROJECT_ROOT)

    async def rows() -> list[dict[str, object]]:
        token = (tmp_path / "admin.token").read_text().strip()  # the workers' shared owner token
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{fleet}/api/workers", headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=5)) as response:
            result: list[dict[str, object]] = await response.json()
            return result

    async def settled(check: Callable[[list[dict[str, object]]], bool], what: str) -> list[dict[str, object]]:
        deadline = time.monotonic() + 40
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, FileNotFoundError, ValueError):
                found = await rows()
                if check(found):
                    return found
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.5)
    try:
        up = await settled(lambda r: len(r) == 2 and all(w["mqtt_connected"] for w in r), "both workers connect")
        assert [w["partition"] for w in up] == [0, 1] and up[0]["mqtt_node"] != up[1]["mqtt_node"]
        os.kill(int(str(up[1]["pid"])), signal.SIGKILL)
        again = await settled(lambda r: r[1]["starts"] == 2 and bool(r[1]["mqtt_connected"]),
                              "the killed worker is started again")
        assert again[1]["pid"] != up[1]["pid"] and again[0]["starts"] == 1
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{fleet}/") as page:
            assert page.status == 401, "the fleet view is the owner's"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        for worker in again:
            with pytest.raises(ProcessLookupError):
                os.kill(int(str(worker["pid"])), 0)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
