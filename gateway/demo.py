"""`appliance-gateway demo`: the whole system on one machine with embedded defaults.

Embedded broker, service-platform stand-in, gateway with its web page, and a mixed fleet of simulated
appliances of which one develops a condenser fan failure. Prints the URLs, a live status line, and at the
end the ticket the platform received with its diagnosis. Once the ticket is accepted, the demo walks its
service timeline: a technician is assigned (the visit code is printed for you to enter on the ticket page),
repairs the fan, the telemetry verifies the repair, and you confirm it (the demo does each step itself if
you do not within a minute).

One clock: with --time-scale the appliances, the gateway and the platform stand-in all keep the same simulated
time, so the service timeline is in order and the telemetry can verify the repair.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from firmware_sim.fleet import FleetSpec, SimClock, build_fleet, run_fleet
from firmware_sim.models import AirConditionerModel
from firmware_sim.mqtt_peer import MqttAppliance
from firmware_sim.platform import PlatformServer
from gateway.app import Gateway, start
from gateway.config import (
    BrokerConfig,
    GatewayConfig,
    ServiceConfig,
    StorageConfig,
    UpstreamConfig,
    WebConfig,
)
from gateway.service.timeline import ServiceError
from gateway.signals import stop_on_signals
from gateway.web.pages import state_words

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
    wait_for_you: float = HUMAN_WAIT_SECONDS  # how long the demo leaves each human step to you


def port_or_free(port: int, what: str, host: str = "127.0.0.1", warn: TextIO = sys.stderr) -> int:
    """The wanted port if nothing listens on it (0: any free port), else any free one, with a warning that
    says so. A port a closed connection still holds in TIME_WAIT is free for a server (SO_REUSEADDR, as every
    server here binds), so it is not "busy"."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return port
        except OSError as exc:
            reason = exc.strerror
    with socket.socket() as free:
        free.bind((host, 0))
        chosen = int(free.getsockname()[1])
    print(f"WARNING: port {port} for the {what} is in use ({reason}); using port {chosen} instead. "
          f"Stop what holds {port}, or pass another port.", file=warn, flush=True)
    return chosen


class StatusLine:
    """The demo's live status line: on a terminal it is redrawn in place, and every other line (log records,
    the demo's messages) is printed on a line of its own above it, never glued to it."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.text = ""

    def show(self, text: str) -> None:
        self.text = text
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def say(self, text: str) -> None:
        self.clear()
        self.stream.write(text + "\n")
        if self.tty and self.text:
            self.stream.write(self.text)
        self.stream.flush()

    def clear(self) -> None:
        if self.tty and self.text:
            self.stream.write("\r\033[K")
            self.stream.flush()


class _ClearsStatusLine(logging.Filter):
    """On the root log handlers: a record is written on a clean line, the status line returns with the next update."""

    def __init__(self, status: StatusLine) -> None:
        super().__init__()
        self.status = status

    def filter(self, record: logging.LogRecord) -> bool:
        self.status.clear()
        return True


async def run_demo(options: DemoOptions) -> int:
    shutil.rmtree(options.data_dir, ignore_errors=True)
    options.data_dir.mkdir(parents=True, exist_ok=True)
    status_line = StatusLine()
    quiet_lines = _ClearsStatusLine(status_line)
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet_lines)
    clock = SimClock(options.time_scale)  # the one clock of the appliances, the gateway and the platform
    platform = PlatformServer(options.data_dir / "platform.db",
                              port=port_or_free(options.platform_port, "service platform stand-in"),
                              webhook_secret=WEBHOOK_SECRET, clock=clock.now)
    await platform.start()
    config = GatewayConfig(
        site="demo-home",
        broker=BrokerConfig(embedded_port=port_or_free(options.broker_port, "embedded MQTT broker")),
        storage=StorageConfig(database=str((options.data_dir / "gateway.db").resolve()),
                              key_file=str((options.data_dir / "gateway.key").resolve())),
        upstream=UpstreamConfig(url=platform.url, retry_min_seconds=0.5, retry_max_seconds=5.0,
                                group_wait_seconds=3.0),
        web=WebConfig(port=port_or_free(options.web_port, "web console")),
        service=ServiceConfig(webhook_secret=WEBHOOK_SECRET, poll_seconds=10, verification_dwell_seconds=30),
    )
    gateway = Gateway(config, clock=clock)
    gateway_task = await start(gateway)
    platform.webhook_url = f"http://127.0.0.1:{gateway.web_port}/api/platform/events"
    broker_host, broker_port = replace(config.broker, embedded_port=gateway.broker.port if gateway.broker else 0
                                       ).host_port()
    stop = asyncio.Event()
    stop_on_signals(stop.set)
    fleet = build_fleet(options.fleet, broker_host, broker_port, clock.start)
    fleet_task = asyncio.create_task(run_fleet(fleet, stop, clock), name="fleet")
    walk = ServiceWalk(gateway, platform, fleet, status_line, options.wait_for_you, options.time_scale)
    walk_task = asyncio.create_task(walk.run(), name="service-walk")
    print(f"web console:       http://127.0.0.1:{gateway.web_port}/?token={gateway.admin_token()}")
    kind = f"embedded {gateway.broker.kind}, " if gateway.broker else ""
    print(f"MQTT broker:       {gateway.broker_url} ({kind}topics appliances/<id>/telemetry|event|status|meta)")
    print(f"service platform:  {platform.url}/v1/tickets")
    print(f"fleet:             {len(fleet)} appliances; {options.fleet.faulty_device} develops a condenser fan "
          f"failure after {options.fleet.fault_after_seconds:.0f} s")
    print("Ctrl-C stops." if options.duration is None else f"Running for {options.duration:.0f} s.")
    started = time.monotonic()
    outcomes: dict[str, str] = {}
    try:
        await _status_loop(gateway, stop, options.duration, started, status_line)
    finally:
        stop.set()
        walk_task.cancel()
        await asyncio.gather(walk_task, return_exceptions=True)
        await fleet_task
        await asyncio.sleep(0.5)
        outcomes = service_outcomes(gateway)
        gateway.request_stop()
        await gateway_task
        tickets = platform.store.list_tickets()
        details = [platform.store.get(t["ticket_id"]) for t in tickets]
        await platform.stop()
        for handler in logging.getLogger().handlers:
            handler.removeFilter(quiet_lines)
    status_line.say("")
    _print_summary(details, time.monotonic() - started, outcomes)
    return 0


def service_outcomes(gateway: Gateway) -> dict[str, str]:
    """Per platform ticket id: how its service ended, in words (state, verification, confirmation)."""
    outcomes = {}
    for entry in gateway.db.outbox_entries("delivered"):
        timeline = gateway.service.timeline(int(entry["ticket_id"]))
        steps = {s["step"]: s for s in timeline["steps"]}
        words = [] if timeline["state"] == "confirmed" else [f"now {state_words(timeline['state'])}"]
        words.append("repair verified by telemetry" if timeline["verified"] else
                     "repair not verified by telemetry" if timeline["repaired"] else "not repaired")
        if "confirmed" in steps:
            detail = steps["confirmed"]["detail"]
            words.append(f"confirmed by the customer, rating {detail.get('rating')}"
                         + (" (before verification)" if detail.get("without_verification") else ""))
        outcomes[str(entry["platform_ticket_id"])] = "; ".join(words)
    return outcomes


async def _status_loop(gateway: Gateway, stop: asyncio.Event, duration: float | None, started: float,
                       status_line: StatusLine) -> None:
    tty = status_line.tty
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
        status_line.show(line)
        if duration is not None and now - started >= duration:
            stop.set()


class ServiceWalk:
    """Play the technician and the customer for the first ticket, leaving each human step to the user first."""

    def __init__(self, gateway: Gateway, platform: PlatformServer, fleet: list[MqttAppliance], status: StatusLine,
                 wait_for_you: float, time_scale: float) -> None:
        self.gateway, self.platform, self.fleet, self.status = gateway, platform, fleet, status
        self.wait_for_you, self.time_scale = wait_for_you, time_scale

    async def run(self) -> None:
        gateway, platform, say = self.gateway, self.platform, self.status.say
        ticket_id, svc = await _first_delivered(gateway)
        page = f"http://127.0.0.1:{gateway.web_port}/tickets/{ticket_id}?token={gateway.admin_token()}"
        await asyncio.sleep(5.0)
        assigned = await platform.advance(svc, "technician_assigned")
        who = assigned["event"]["detail"]["technician"]
        say(f"{svc}: technician {who['name']} ({who['employee_id']}) assigned. When they arrive, enter their "
            f"visit code {assigned['visit_code']} at {page}")
        if not await _state_reached(gateway, ticket_id, "technician_verified", self.wait_for_you):
            with contextlib.suppress(ServiceError):
                gateway.service.enter_visit_code(ticket_id, assigned["visit_code"])
                say(f"{svc}: entered the visit code for you; the technician is verified")
        for appliance in self.fleet:  # the technician replaces the fan motor
            if isinstance(appliance.model, AirConditionerModel):
                appliance.model.repair()
        await platform.advance(svc, "repaired")
        dwell = gateway.config.service.verification_dwell_seconds
        clock = "" if self.time_scale == 1 else f" of appliance time ({dwell / self.time_scale:.0f} s here)"
        say(f"{svc}: repaired (fan motor replaced). The gateway now watches the telemetry for {dwell:.0f} s{clock} "
            "before it counts the repair as verified; until then the ticket page offers only \"confirm without "
            "verification\"")
        if not await _state_reached(gateway, ticket_id, "verified_by_telemetry", 600):
            say(f"{svc}: the telemetry did not verify the repair within 10 minutes; not confirmed")
            return
        say(f"{svc}: repair verified by telemetry. Confirm and rate it at {page}")
        if not await _state_reached(gateway, ticket_id, "confirmed", self.wait_for_you):
            with contextlib.suppress(ServiceError):
                gateway.service.confirm(ticket_id, 5, "confirmed by the demo")
                say(f"{svc}: confirmed for you (rating 5). The whole timeline is at {page}")


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


def _print_summary(tickets: list[dict[str, Any] | None], elapsed: float, outcomes: dict[str, str]) -> None:
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
        print(f"  service  {outcomes.get(entry['ticket_id'], 'not followed by the gateway')}")
