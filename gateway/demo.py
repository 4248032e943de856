"""`appliance-gateway demo`: the whole system on one machine with embedded defaults.

Embedded broker, service-platform stand-in, gateway with its web page, and a mixed fleet of simulated
appliances of which one develops a condenser fan failure. Prints the URLs, a live status line, and at the
end the ticket the platform received with its diagnosis. Once the ticket is accepted, the demo walks its
service timeline: a technician is assigned (the visit code is printed for you to enter on the ticket page),
repairs the fan, the telemetry verifies the repair, and you confirm it (the demo does each step itself if
you do not within a minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from firmware_sim.fleet import FleetSpec, SimClock, build_fleet, run_fleet
from firmware_sim.models import AirConditionerModel
from firmware_sim.mqtt_peer import MqttAppliance
from firmware_sim.platform import PlatformServer
from gateway.app import Gateway, start
from gateway.config import (
    BrokerConfig,
    GatewayConfig,
    IngestConfig,
    ServiceConfig,
    StorageConfig,
    UpstreamConfig,
    WebConfig,
)
from gateway.service.timeline import ServiceError

WEBHOOK_SECRET = "demo-webhook-secret"
HUMAN_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class DemoOptions:
    duration: float | None = None
    data_dir: Path = Path("var/demo")
    web_port: int = 8080
    platform_port: int = 8081
    broker_port: int = 1883
    time_scale: float = 1.0
    fleet: FleetSpec = field(default_factory=FleetSpec)


def port_or_free(port: int, host: str = "127.0.0.1") -> int:
    """The wanted port if it is free, else any free one (so a second demo does not fail on a busy port)."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
            return port
        except OSError:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])


async def run_demo(options: DemoOptions) -> int:
    shutil.rmtree(options.data_dir, ignore_errors=True)
    options.data_dir.mkdir(parents=True, exist_ok=True)
    platform = PlatformServer(options.data_dir / "platform.db", port=port_or_free(options.platform_port),
                              webhook_secret=WEBHOOK_SECRET)
    await platform.start()
    config = GatewayConfig(
        site="demo-home",
        broker=BrokerConfig(embedded_port=port_or_free(options.broker_port)),
        storage=StorageConfig(database=str((options.data_dir / "gateway.db").resolve()),
                              key_file=str((options.data_dir / "gateway.key").resolve())),
        upstream=UpstreamConfig(url=platform.url, retry_min_seconds=0.5, retry_max_seconds=5.0,
                                group_wait_seconds=3.0),
        web=WebConfig(port=port_or_free(options.web_port)),
        service=ServiceConfig(webhook_secret=WEBHOOK_SECRET, poll_seconds=10, verification_dwell_seconds=30),
        # a faster simulated clock runs ahead of the wall clock; accept it for the demo's length
        ingest=IngestConfig(max_future_seconds=max(300.0, (options.duration or 0) * options.time_scale)),
    )
    gateway = Gateway(config)
    gateway_task = await start(gateway)
    platform.webhook_url = f"http://127.0.0.1:{gateway.web_port}/api/platform/events"
    broker_host, broker_port = replace(config.broker, embedded_port=gateway.broker.port if gateway.broker else 0
                                       ).host_port()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    clock = SimClock(options.time_scale)
    fleet = build_fleet(options.fleet, broker_host, broker_port, clock.start)
    fleet_task = asyncio.create_task(run_fleet(fleet, stop, clock), name="fleet")
    walk_task = asyncio.create_task(_walk_service(gateway, platform, fleet), name="service-walk")
    print(f"web console:       http://127.0.0.1:{gateway.web_port}/?token={gateway.admin_token()}")
    kind = f"embedded {gateway.broker.kind}, " if gateway.broker else ""
    print(f"MQTT broker:       {gateway.broker_url} ({kind}topics appliances/<id>/telemetry|event|status|meta)")
    print(f"service platform:  {platform.url}/v1/tickets")
    print(f"fleet:             {len(fleet)} appliances; {options.fleet.faulty_device} develops a condenser fan "
          f"failure after {options.fleet.fault_after_seconds:.0f} s")
    print("Ctrl-C stops." if options.duration is None else f"Running for {options.duration:.0f} s.")
    started = time.monotonic()
    try:
        await _status_loop(gateway, stop, options.duration, started)
    finally:
        stop.set()
        walk_task.cancel()
        await asyncio.gather(walk_task, return_exceptions=True)
        await fleet_task
        await asyncio.sleep(0.5)
        gateway.request_stop()
        await gateway_task
        tickets = platform.store.list_tickets()
        details = [platform.store.get(t["ticket_id"]) for t in tickets]
        await platform.stop()
    print()
    _print_summary(details, time.monotonic() - started)
    return 0


async def _status_loop(gateway: Gateway, stop: asyncio.Event, duration: float | None, started: float) -> None:
    tty = sys.stdout.isatty()
    last_messages, last_time = 0, time.monotonic()
    period = 1.0 if tty else 5.0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=period)
        now = time.monotonic()
        status = gateway.status()
        rate = (status["messages"] - last_messages) / max(1e-6, now - last_time)
        last_messages, last_time = status["messages"], now
        line = (f"[{now - started:5.0f} s] {rate:6.0f} msg/s | {status['devices']} devices "
                f"({status['online']} online) | {status['open_incidents']} open incidents | "
                f"{status['tickets_delivered']} tickets delivered | {status['dropped_total']} dropped")
        print("\r" + line if tty else line, end="" if tty else "\n", flush=True)
        if duration is not None and now - started >= duration:
            stop.set()


async def _walk_service(gateway: Gateway, platform: PlatformServer, fleet: list[MqttAppliance]) -> None:
    """Play the technician and the customer for the first ticket, leaving each human step to the user first."""
    ticket_id, svc = await _first_delivered(gateway)
    page = f"http://127.0.0.1:{gateway.web_port}/tickets/{ticket_id}"
    await asyncio.sleep(5.0)
    assigned = await platform.advance(svc, "technician_assigned")
    who = assigned["event"]["detail"]["technician"]
    _say(f"{svc}: technician {who['name']} ({who['employee_id']}) assigned. When they arrive, enter their visit "
         f"code {assigned['visit_code']} at {page}")
    if not await _state_reached(gateway, ticket_id, "technician_verified", HUMAN_WAIT_SECONDS):
        with contextlib.suppress(ServiceError):
            gateway.service.enter_visit_code(ticket_id, assigned["visit_code"])
            _say(f"{svc}: entered the visit code for you; the technician is verified")
    for appliance in fleet:  # the technician replaces the fan motor
        if isinstance(appliance.model, AirConditionerModel):
            appliance.model.repair()
    await platform.advance(svc, "repaired")
    _say(f"{svc}: repaired (fan motor replaced). The gateway now watches the telemetry for 30 s before it "
         "counts the repair as verified")
    if await _state_reached(gateway, ticket_id, "verified_by_telemetry", 600):
        _say(f"{svc}: repair verified by telemetry. Confirm and rate it at {page}")
    if not await _state_reached(gateway, ticket_id, "confirmed", HUMAN_WAIT_SECONDS):
        with contextlib.suppress(ServiceError):
            gateway.service.confirm(ticket_id, 5, "confirmed by the demo")
            _say(f"{svc}: confirmed for you (rating 5). The whole timeline is at {page}")


async def _first_delivered(gateway: Gateway) -> tuple[int, str]:
    """(local ticket id, platform ticket id) of the first ticket the platform accepted."""
    while True:
        delivered = gateway.db.outbox_entries("delivered")
        if delivered:
            return int(delivered[-1]["ticket_id"]), str(delivered[-1]["platform_ticket_id"])
        await asyncio.sleep(1.0)


async def _state_reached(gateway: Gateway, ticket_id: int, step: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(s["step"] == step for s in gateway.service.timeline(ticket_id)["steps"]):
            return True
        await asyncio.sleep(0.5)
    return False


def _say(text: str) -> None:
    print(("\n" if sys.stdout.isatty() else "") + text, flush=True)


def _print_summary(tickets: list[dict[str, Any] | None], elapsed: float) -> None:
    print(f"Demo ran {elapsed:.0f} s. The service platform received {len(tickets)} ticket(s).")
    for entry in tickets:
        if entry is None:
            continue
        ticket = entry["ticket"]
        appliance, fault = ticket["appliance"], ticket["fault"]
        print(f"\n{entry['ticket_id']}: {appliance['device_id']} ({appliance['brand']} {appliance['model']}, "
              f"{appliance['type']}, serial {appliance['serial']})")
        print(f"  fault    {fault['code']} {fault['title']['en']} / {fault['title']['zh']} [{fault['severity']}]")
        for cause in ticket["probable_causes"]:
            print(f"  cause    {cause['likelihood']:.0%} {cause['cause']}: {cause['reason']}")
        for obs in ticket["evidence"]["observed"]:
            print(f"  evidence {obs['quantity']} = {obs['value']} (limit {obs['op']} {obs['threshold']})")
        print(f"  window   {len(ticket['evidence']['window']['ts'])} samples of "
              f"{len(ticket['evidence']['window']['metrics'])} metrics around the onset")
