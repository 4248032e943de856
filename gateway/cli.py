"""The `appliance-gateway` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.config import ConfigError, GatewayConfig, load_config, resolve_path
from gateway.diagnosis.seal import SealError
from gateway.engine.library import load_library
from gateway.engine.profiles import ProfileError
from gateway.engine.rules import RuleFileError
from gateway.engine.vendor_codes import VendorCodeError
from gateway.prices import PriceTableError
from gateway.signals import stop_on_signals
from gateway.store.db import Database, StorageError
from gateway.transport.broker import BrokerStartError
from gateway.web.access import AccessError

log = logging.getLogger("gateway.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance-gateway",
        description="Read appliance telemetry over MQTT, detect faults with rules, open pre-diagnosed tickets.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the gateway from a config file")
    run.add_argument("--config", type=Path, help="gateway.toml (default: embedded defaults)")
    run.add_argument("--broker", help="external broker mqtt://host:port or mqtts://host:port "
                                      "(default: start the embedded broker on 127.0.0.1)")
    run.add_argument("--username", help="broker user name")
    run.add_argument("--password", help="broker password")
    run.add_argument("--tls-ca", help="CA file to verify the broker's certificate (turns TLS on)")
    run.add_argument("--tls-cert", help="client certificate file")
    run.add_argument("--tls-key", help="client key file")
    run.add_argument("--tls-insecure", action="store_true", help="do not check the broker's host name")
    run.add_argument("--web-port", type=int, help="web page port (0 = any free port)")
    run.add_argument("--partition", type=int, help="this worker's share of the appliances, 0 .. N-1, on a broker "
                     "that maps topics into partitions (docs/scaling.md); its files get the suffix -p<I>")
    run.add_argument("--partitions", type=int, help="how many workers share the appliances (with --partition)")

    demo = commands.add_parser("demo", help="embedded broker, platform stand-in, gateway and a simulated fleet")
    demo.add_argument("--duration", type=float, help="stop after this many seconds and print a summary")
    demo.add_argument("--fault-after", type=float, default=30.0, help="seconds until ac-01 develops the fault")
    demo.add_argument("--data-dir", type=Path, default=Path("var/demo"), help="where the demo's SQLite files go")
    demo.add_argument("--time-scale", type=float, default=1.0,
                      help="simulated seconds per real second (10 shows the fault ten times sooner)")
    demo.add_argument("--web-port", type=int, default=8080)
    demo.add_argument("--platform-port", type=int, default=8081)
    demo.add_argument("--broker-port", type=int, default=1883)
    demo.add_argument("--wait-for-you", type=float, default=60.0, metavar="SECONDS",
                      help="how long the demo leaves each of your steps (the visit code, the confirmation) to you "
                           "before it takes it itself")

    cluster = commands.add_parser(
        "cluster", help="run N gateway workers, one per partition of a NATS cluster, and a fleet view",
        description="Start `run --partition I --partitions N` for I = 0 .. N-1 against the NATS nodes' MQTT "
                    "listeners (see `nats-config` and docs/scaling.md), restart a worker that dies, and serve a "
                    "page listing the workers. Worker I's console is on --web-port + I.")
    cluster.add_argument("--partitions", type=int, required=True, help="workers (the NATS mapping's N)")
    cluster.add_argument("--nats", required=True, metavar="URLS",
                         help="the nodes' MQTT URLs, comma-separated: mqtt://host:1883,mqtt://host:1884,...")
    cluster.add_argument("--config", type=Path, help="gateway.toml shared by the workers (files get -p<I>)")
    cluster.add_argument("--web-port", type=int, default=8090, help="worker 0's console port (default 8090)")
    cluster.add_argument("--fleet-port", type=int, default=8089, help="the fleet view's port (default 8089)")

    nats_config = commands.add_parser(
        "nats-config", help="write NATS server configs: MQTT, JetStream, routes and the partition mapping",
        description="One config per node, node I on each base port + I (docs/scaling.md says what each part does).")
    nats_config.add_argument("folder", type=Path, help="where to write n0.conf, n1.conf, ...")
    nats_config.add_argument("--nodes", type=int, default=3)
    nats_config.add_argument("--partitions", type=int, default=2)
    nats_config.add_argument("--host", default="127.0.0.1")
    nats_config.add_argument("--mqtt-port", type=int, default=1883)
    nats_config.add_argument("--client-port", type=int, default=4222)
    nats_config.add_argument("--route-port", type=int, default=6222)
    nats_config.add_argument("--store-dir", help="JetStream's folder (default: FOLDER/jetstream)")
    nats_config.add_argument("--topic-prefix", default="appliances", help="the gateway's broker.topic_prefix")

    platform = commands.add_parser("platform", help="run the service-platform stand-in (upstream API)")
    platform.add_argument("--port", type=int, default=8081)
    platform.add_argument("--db", type=Path, default=Path("var/platform.db"))
    platform.add_argument("--webhook-url", default="",
                          help="push service steps here, e.g. http://127.0.0.1:8080/api/platform/events")
    platform.add_argument("--webhook-secret", default="", help="the gateway's service.webhook_secret")

    advance = commands.add_parser(
        "platform-advance", help="play the platform stand-in's side of a service step",
        description="Advance a ticket at the platform stand-in: assign a technician (prints the one-time visit "
                    "code), report the repair (charged items), or record the customer's confirmation.")
    advance.add_argument("ticket", help="the platform's ticket id, e.g. SVC-000001")
    advance.add_argument("step", choices=("technician_assigned", "repaired", "confirmed"))
    advance.add_argument("--platform", default="http://127.0.0.1:8081", help="the stand-in's URL")
    advance.add_argument("--item", action="append", default=[], metavar="ID=PRICE",
                         help="repaired: a charged item (repeat); default: the diagnosed items at mid-band")
    advance.add_argument("--new-evidence", default="", help="repaired: the technician's finding that explains "
                                                             "items beyond the diagnosis")
    advance.add_argument("--rating", type=int, default=5, help="confirmed: 1-5")

    ticket = commands.add_parser("ticket", help="a ticket's service timeline; enter a visit code; confirm a repair")
    ticket.add_argument("action", choices=("show", "visit-code", "confirm"))
    ticket.add_argument("ticket_id", type=int, help="the local ticket id (see the web page or `outbox list`)")
    ticket.add_argument("value", nargs="?", help="visit-code: the code the technician shows; confirm: rating 1-5")
    ticket.add_argument("--comment", default="", help="confirm: a comment")
    ticket.add_argument("--without-verification", default="", metavar="REASON",
                        help="confirm before the telemetry has verified the repair, and why (kept in the timeline)")
    ticket.add_argument("--config", type=Path)

    sim = commands.add_parser("sim", help="run a simulated appliance fleet against a broker")
    sim.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    sim.add_argument("--air-conditioners", type=int, default=8)
    sim.add_argument("--refrigerators", type=int, default=7)
    sim.add_argument("--washers", type=int, default=5)
    sim.add_argument("--faulty-device", default="ac-01", help="device that develops a fault ('' for none)")
    sim.add_argument("--fault-after", type=float, default=30.0)
    sim.add_argument("--fault-ramp", type=float, default=10.0)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--time-scale", type=float, default=1.0,
                     help="simulated seconds per real second (the gateway must accept the timestamps)")
    sim.add_argument("--duration", type=float, help="stop after this many real seconds")
    sim.add_argument("--bulk", type=int, metavar="N",
                     help="fleet mode: N appliances of all five types through one MQTT connection, "
                          "each reporting every --bulk-interval seconds")
    sim.add_argument("--bulk-interval", type=float, default=10.0)
    sim.add_argument("--scenario", type=Path, help="play a scenario file live (its faults at their times, from now)")

    serial_sim = commands.add_parser("serial-sim", help="a simulated appliance on a pseudo-terminal (UART)")
    serial_sim.add_argument("--dialect", choices=("midea", "haier", "open"), default="midea")
    serial_sim.add_argument("--path", type=Path, default=Path("var/ttySIM0"),
                            help="symlink to the pty, for the gateway's serial.ports url")
    serial_sim.add_argument("--appliance", choices=("air_conditioner", "refrigerator", "washer"),
                            help="open dialect only (midea is an AC, haier a washer)")
    serial_sim.add_argument("--fault-after", type=float, help="AC only: seconds until a condenser fan failure")
    serial_sim.add_argument("--corrupt", type=float, default=0.0,
                            help="fraction of bytes damaged on the line (bit flips, drops, duplicates)")
    serial_sim.add_argument("--duration", type=float, help="stop after this many seconds")

    replay = commands.add_parser("replay", help="run recorded telemetry (CSV or JSON lines) through the rules")
    replay.add_argument("file", type=Path)
    replay.add_argument("--config", type=Path)
    replay.add_argument("--json", action="store_true",
                        help="print transitions, ticket drafts, drops and notes as one JSON object")
    replay.add_argument("--tick", type=float, default=1.0,
                        help="seconds between runs of the time-driven rules (silence), as live (default 1)")

    outbox = commands.add_parser("outbox", help="list, retry and explain the tickets waiting to be delivered")
    outbox.add_argument("action", nargs="?", choices=("list", "retry", "explain"), default="list")
    outbox.add_argument("entry", nargs="?", type=int, help="outbox entry id (retry, explain)")
    outbox.add_argument("--state", choices=("queued", "sending", "delivered", "dead"), help="list only these")
    outbox.add_argument("--config", type=Path)

    verify = commands.add_parser("verify-ticket", help="check a ticket's seal; say what was changed if it fails")
    verify.add_argument("ticket", help="a ticket JSON file (as sent, or the platform's GET answer), "
                                       "or a local ticket id")
    verify.add_argument("--config", type=Path)

    score = commands.add_parser(
        "score", help="measure diagnosis accuracy on simulated scenarios (recall, false tickets, delays)",
        description="Run scenario files (default: the standard suite in firmware_sim/scenarios) through a "
                    "real gateway in replay mode and score its tickets against the ground truth; or score "
                    "saved --truth and --tickets files.")
    score.add_argument("scenarios", nargs="*", type=Path, help="scenario YAML files (default: the standard suite)")
    score.add_argument("--truth", type=Path, help="ground truth JSON (with --tickets: score without running)")
    score.add_argument("--tickets", type=Path, help="tickets JSON (with --truth)")
    score.add_argument("--save", type=Path, help="folder to write each scenario's truth, tickets and report")
    score.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    score.add_argument("--generate", type=int, metavar="N",
                       help="score N scenarios drawn at random (fleet, brands, transports, rates, faults), seeds "
                            "S to S+N-1, instead of the files")
    score.add_argument("--seed", type=int, default=1, metavar="S", help="first seed for --generate (default 1)")

    rules = commands.add_parser("rules", help="rule-file tools")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    check = rules_commands.add_parser("check", help="validate rule files; every error with file:line")
    check.add_argument("paths", nargs="*", type=Path, help="rule files or folders (default: the configured ones)")
    check.add_argument("--config", type=Path)
    check.add_argument("--profiles", type=Path, action="append", default=[], metavar="PATH",
                       help="more appliance profiles (a folder or file) for a new type's rules; repeatable")
    test = rules_commands.add_parser("test", help="run the rule unit tests (*.test.yaml) beside the rules; "
                                     "every rule needs a firing case and a near miss")
    test.add_argument("paths", nargs="*", type=Path, help="test files or folders (default: rules/tests)")
    test.add_argument("--config", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        if args.command == "run":
            return asyncio.run(_run(_run_config(args)))
        if args.command == "demo":
            return _demo(args)
        if args.command == "platform":
            return asyncio.run(_platform(args))
        if args.command == "cluster":
            return asyncio.run(_cluster(args))
        if args.command == "nats-config":
            return _nats_config(args)
        if args.command == "platform-advance":
            return asyncio.run(_platform_advance(args))
        if args.command == "ticket":
            return _ticket(args)
        if args.command == "sim":
            return asyncio.run(_sim(args))
        if args.command == "serial-sim":
            return _serial_sim(args)
        if args.command == "replay":
            return _replay(args)
        if args.command == "verify-ticket":
            return _verify_ticket(args)
        if args.command == "outbox":
            return _outbox(args)
        if args.command == "score":
            return _score(args)
        if args.rules_command == "test":
            return _rules_test(args)
        return _rules_check(args)
    except (CliInputError, ConfigError, ProfileError, PriceTableError, RuleFileError, VendorCodeError, StorageError,
            BrokerStartError, SealError, AccessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


class CliInputError(Exception):
    """A command's input is wrong (a file missing or unreadable, no gateway data here); said in one line."""


def _existing_database(config: GatewayConfig) -> Database:
    """The gateway's database for a command that reads or edits what the gateway stored: it must already be
    there (a read-only command run in the wrong folder must not create an empty one and report nothing)."""
    path = resolve_path(config, config.storage.database)
    if not path.is_file():
        where = f"config {config.source}" if Path(config.source).is_file() else "default paths, relative to this folder"
        raise CliInputError(f"no gateway database at {path} ({where}); pass the gateway's --config, or run this "
                            "where the gateway runs")
    return Database(path)


def _run_config(args: argparse.Namespace) -> GatewayConfig:
    """The config file with the command line's keys on top, checked as one."""
    broker = {"url": args.broker, "username": args.username, "password": args.password, "tls_ca_file": args.tls_ca,
              "tls_cert_file": args.tls_cert, "tls_key_file": args.tls_key}
    if args.tls_ca or args.tls_insecure:
        broker.update(tls=True, tls_insecure=args.tls_insecure)
    if (args.partition is None) != (args.partitions is None):
        raise CliInputError("--partition and --partitions go together")
    overrides = {"broker": broker, "web": {"port": args.web_port},
                 "cluster": {"partition": args.partition, "partitions": args.partitions}}
    return load_config(args.config, {section: {k: v for k, v in values.items() if v is not None}
                                     for section, values in overrides.items()})


async def _cluster(args: argparse.Namespace) -> int:
    from gateway.app import Gateway
    from gateway.cluster.workers import Cluster

    if not 1 <= args.partitions <= 1024:
        raise CliInputError("--partitions must be 1 .. 1024")
    # the workers' shared owner token, created here if it is new, so that the fleet view can read their status
    first = load_config(args.config, {"broker": {"url": args.nats},
                                      "cluster": {"partition": 0, "partitions": args.partitions}})
    token = Gateway.owner_token(first)
    await Cluster(args.config, args.partitions, args.nats, args.web_port, token).run(args.fleet_port)
    return 0


def _nats_config(args: argparse.Namespace) -> int:
    from gateway.cluster.nats_config import NatsLayout, node_config

    if not 1 <= args.nodes <= 32 or not 1 <= args.partitions <= 1024:
        raise CliInputError("--nodes must be 1 .. 32 and --partitions 1 .. 1024")
    store = args.store_dir or str((args.folder / "jetstream").resolve())
    layout = NatsLayout(nodes=args.nodes, partitions=args.partitions, host=args.host, client_port=args.client_port,
                        mqtt_port=args.mqtt_port, route_port=args.route_port, store_dir=store,
                        topic_prefix=args.topic_prefix)
    args.folder.mkdir(parents=True, exist_ok=True)
    for i in range(layout.nodes):
        (args.folder / f"n{i}.conf").write_text(node_config(layout, i))
        print(f"wrote {args.folder / f'n{i}.conf'}   start it with: nats-server -c {args.folder / f'n{i}.conf'}")
    print(f"the workers' broker.url: {layout.mqtt_urls()}")
    print(f"then: appliance-gateway cluster --partitions {layout.partitions} --nats {layout.mqtt_urls()}")
    return 0


async def _run(config: GatewayConfig) -> int:
    from gateway.app import Gateway, start

    gateway = Gateway(config)
    stop_on_signals(gateway.request_stop)
    task = await start(gateway)
    if gateway.web_port is not None:
        log.info("web console on http://%s:%s/ (sign in with ?token=<the owner's token>%s)", config.web.host,
                 gateway.web_port, "" if config.web.admin_token else ", kept in the admin.token file")
    await task
    return 0


def _demo(args: argparse.Namespace) -> int:
    from firmware_sim.fleet import FleetSpec
    from gateway.demo import DemoOptions, run_demo

    for quiet in ("gateway.ingest", "gateway.registry", "firmware_sim"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    options = DemoOptions(duration=args.duration, data_dir=args.data_dir, web_port=args.web_port,
                          platform_port=args.platform_port, broker_port=args.broker_port,
                          time_scale=args.time_scale, wait_for_you=args.wait_for_you,
                          fleet=FleetSpec(fault_after_seconds=args.fault_after))
    return asyncio.run(run_demo(options))


async def _platform(args: argparse.Namespace) -> int:
    from firmware_sim.platform import PlatformServer

    server = PlatformServer(args.db, port=args.port, webhook_url=args.webhook_url,
                            webhook_secret=args.webhook_secret)
    await server.start()
    print(f"service platform stand-in on {server.url}/v1/tickets (tickets in {args.db})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    return 0


async def _sim(args: argparse.Namespace) -> int:
    from firmware_sim.fleet import FleetSpec, SimClock, build_fleet, run_fleet
    from gateway.config import BrokerConfig

    host, port = BrokerConfig(url=args.broker).host_port()
    spec = FleetSpec(args.air_conditioners, args.refrigerators, args.washers, args.seed,
                     args.faulty_device or None, args.fault_after, args.fault_ramp)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.duration:
        loop.call_later(args.duration, stop.set)
    if args.scenario:
        from firmware_sim.live import play_scenario
        from firmware_sim.scenario import ScenarioError

        try:
            return await play_scenario(args.scenario, host, port, args.time_scale, stop)
        except ScenarioError as exc:
            raise CliInputError(str(exc)) from None
    if args.bulk:
        from firmware_sim.bulk_fleet import BulkFleet

        bulk = BulkFleet(args.bulk, host, port, args.seed)
        await asyncio.to_thread(bulk.connect)
        print(f"{args.bulk} simulated appliances (fleet mode) publishing to {host}:{port} every "
              f"{args.bulk_interval:g} s", flush=True)
        await bulk.run(stop, args.bulk_interval)
        await asyncio.to_thread(bulk.disconnect)
        print(f"published {bulk.published} reports")
        return 0
    clock = SimClock(args.time_scale)
    fleet = build_fleet(spec, host, port, clock.start)
    print(f"{len(fleet)} simulated appliances publishing to {host}:{port}", flush=True)
    await run_fleet(fleet, stop, clock)
    return 0


def _serial_sim(args: argparse.Namespace) -> int:
    import threading
    import time

    from firmware_sim.models import AirConditionerModel, ApplianceModel, FaultSchedule, RefrigeratorModel, WasherModel
    from firmware_sim.serial_peer import LineFaults, PtyAppliance

    appliance = {"midea": "air_conditioner", "haier": "washer"}.get(args.dialect, args.appliance or "air_conditioner")
    model: ApplianceModel
    if appliance == "air_conditioner":
        fault = FaultSchedule("condenser_fan_failure", time.time() + args.fault_after, 10) if args.fault_after else None
        model = AirConditionerModel(1, fault)
    else:
        model = RefrigeratorModel(1) if appliance == "refrigerator" else WasherModel(1)
    share = args.corrupt / 3
    faults = LineFaults(bit_flip_rate=share, drop_rate=share, duplicate_rate=share)
    profile = load_library(load_config(None)).profiles[appliance]
    args.path.parent.mkdir(parents=True, exist_ok=True)
    link = args.path.absolute()
    peer = PtyAppliance(link, args.dialect, model, profile=profile, faults=faults)
    peer.start()
    print(f"simulated {appliance} speaking {args.dialect} on {link} -> {link.readlink()}")
    print(f'gateway.toml:\n[[serial.ports]]\nurl = "{link}"\ndialect = "{args.dialect}"\n'
          f'device_id = "{appliance}-uart"' + (f'\nappliance = "{appliance}"' if args.dialect != "open" else ""),
          flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait(args.duration)
    peer.stop()
    return 0


async def _platform_advance(args: argparse.Namespace) -> int:
    import aiohttp

    detail: dict[str, Any] = {}
    if args.step == "repaired" and args.item:
        try:
            detail["items"] = [{"id": i.split("=", 1)[0], "price": float(i.split("=", 1)[1])} for i in args.item]
        except (IndexError, ValueError):
            print("error: --item takes ID=PRICE, e.g. --item ac_fan_capacitor=95", file=sys.stderr)
            return 2
        detail["new_evidence"] = args.new_evidence
    if args.step == "confirmed":
        detail["rating"] = args.rating
    url = f"{args.platform.rstrip('/')}/_sim/tickets/{args.ticket}/advance"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
                session.post(url, json={"step": args.step, "detail": detail}) as response:
            answer = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        print(f"error: cannot reach the platform stand-in at {args.platform}: {exc}", file=sys.stderr)
        return 2
    if response.status != 200:
        print(f"error: {args.ticket}: {answer.get('error', response.status)}", file=sys.stderr)
        return 1
    print(f"{args.ticket}: {args.step} (event {answer['event']['event_id']}, webhook: {answer['webhook']})")
    if "visit_code" in answer:
        technician = answer["event"]["detail"]["technician"]
        print(f"technician {technician['name']} ({technician['employee_id']}); one-time visit code: "
              f"{answer['visit_code']}")
    return 0


def _ticket(args: argparse.Namespace) -> int:
    import time

    from gateway.clock import SystemClock
    from gateway.diagnosis.seal import load_or_create_key
    from gateway.service.timeline import ServiceDesk, ServiceError

    config = load_config(args.config)
    db = _existing_database(config)
    desk = ServiceDesk(db, SystemClock(), config.service, last_seen=lambda _device: None,
                       secret=load_or_create_key(resolve_path(config, config.storage.key_file)))
    try:
        payload = db.ticket_payload(args.ticket_id)
        if payload is None:
            print(f"error: no local ticket {args.ticket_id}", file=sys.stderr)
            return 2
        if args.action == "visit-code":
            technician = desk.enter_visit_code(args.ticket_id, args.value or "")
            print(f"verified: {technician['name']}, employee {technician['employee_id']}, photo sha256 "
                  f"{technician['photo_sha256']}")
            return 0
        if args.action == "confirm":
            desk.confirm(args.ticket_id, int(args.value or 0), args.comment, args.without_verification)
            print(f"ticket {args.ticket_id}: repair confirmed; a running gateway tells the platform")
            return 0
        timeline = desk.timeline(args.ticket_id)
        fault = payload.get("fault", {})
        print(f"ticket {args.ticket_id}: {fault.get('code', '?')} {fault.get('title', {}).get('en', '')} on "
              f"{payload.get('appliance', {}).get('device_id', '?')}; state {timeline['state']}")
        for step in timeline["steps"]:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(step["at"]))
            unverified = step["detail"].get("without_verification") if step["step"] == "confirmed" else None
            print(f"  {stamp}  {step['title']['en']:<34} {step['actor']:<9} {step['source']}"
                  + (f"  (before the telemetry verified the repair: {unverified})" if unverified else ""))
        for flag in timeline["charge_flags"]:
            print(f"  {'note' if flag['explained'] else 'FLAG'}: {flag['problem']}")
        return 0
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()


def _score(args: argparse.Namespace) -> int:
    """Exit 0 when every scenario meets the suite's thresholds, 1 otherwise."""
    import time

    import orjson

    from firmware_sim.scenario import ScenarioError
    from firmware_sim.scoring import THRESHOLDS, ScoringError, format_report, format_summary, meets, score
    from gateway.accuracy_cli import STANDARD_SUITE, generated, score_scenarios, write_json

    if args.truth or args.tickets:
        if not (args.truth and args.tickets):
            print("error: --truth and --tickets go together", file=sys.stderr)
            return 2
        saved = orjson.loads(args.truth.read_bytes())
        try:
            report = score(saved.get("scenario", args.truth.stem), float(saved.get("appliance_days") or 0.0),
                           saved["truth"], orjson.loads(args.tickets.read_bytes()))
        except ScoringError as exc:
            print(f"error: {args.truth}: {exc}", file=sys.stderr)
            return 2
        print(format_report(report))
        return 0 if not meets(report) else 1
    if args.generate is not None and args.generate < 1:
        print("error: --generate N needs N >= 1", file=sys.stderr)
        return 2
    paths: list[Any] = list(args.scenarios)
    if args.generate:
        paths += generated(range(args.seed, args.seed + args.generate))
    paths = paths or sorted(STANDARD_SUITE.glob("*.yaml"))
    started = time.monotonic()

    def show(scenario: Any, report: Any, stats: dict[str, Any]) -> None:
        print(format_report(report))
        print(f"  ({stats['messages']:,} messages, {stats['cpu_seconds']:.0f} CPU-seconds of replay)\n", flush=True)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            write_json(args.save / f"{scenario.name}.truth.json", {"scenario": scenario.name,
                       "appliance_days": scenario.appliance_days, "truth": stats["truth"]})
            write_json(args.save / f"{scenario.name}.tickets.json", stats["tickets"])
            write_json(args.save / f"{scenario.name}.report.json", report.as_dict())

    print(f"scoring {len(paths)} scenario(s) on {args.workers} processes; thresholds: {THRESHOLDS}", flush=True)
    try:
        results = score_scenarios(paths, workers=args.workers, progress=show)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len(results) > 1:
        print(format_summary([r for _, r, _ in results]))
    failed = [(s.name, problems) for s, r, _ in results if (problems := meets(r))]
    print(f"scored in {time.monotonic() - started:.0f} s: " + ("all scenarios meet the thresholds" if not failed else
          "; ".join(f"{name}: {', '.join(p)}" for name, p in failed)))
    return 1 if failed else 0


def _outbox(args: argparse.Namespace) -> int:
    import time


    config = load_config(args.config)
    db = _existing_database(config)
    try:
        if args.action == "list":
            entries = db.outbox_entries(args.state)
            print(f"{'id':>4} {'ticket':>6} {'device':<16} {'code':<14} {'state':<9} {'tries':>5}  detail")
            for e in entries:
                print(f"{e['outbox_id']:>4} {e['ticket_id']:>6} {e['device_id']:<16} {e['fault_code']!s:<14} "
                      f"{e['state']:<9} {e['attempts']:>5}  {_outbox_detail(e, time.time())}")
            counts = db.outbox_counts()
            print(", ".join(f"{n} {state}" for state, n in counts.items()))
            return 0
        if args.entry is None:
            print(f"error: outbox {args.action} needs an entry id (see `appliance-gateway outbox list`)",
                  file=sys.stderr)
            return 2
        entry = next((e for e in db.outbox_entries(limit=1_000_000) if e["outbox_id"] == args.entry), None)
        if entry is None:
            print(f"error: no outbox entry {args.entry}", file=sys.stderr)
            return 2
        if args.action == "retry":
            if not db.requeue(args.entry, time.time()):
                print(f"entry {args.entry} is {entry['state']}: nothing to retry")
                return 1
            print(f"entry {args.entry} queued; a running gateway sends it within a second")
            return 0
        print(f"entry {entry['outbox_id']}: ticket {entry['ticket_id']} for {entry['device_id']} "
              f"({entry['fault_code']}, {entry['category']}), idempotency key {entry['idempotency_key']}")
        print(f"  state: {entry['state']} after {entry['attempts']} attempt(s); {_outbox_detail(entry, time.time())}")
        print(f"  next:  {_outbox_next(entry)}")
        return 0
    finally:
        db.close()


def _outbox_detail(entry: dict[str, Any], now: float) -> str:
    if entry["state"] == "delivered":
        return f"delivered as {entry['platform_ticket_id'] or '(no id)'}"
    if entry["state"] == "dead":
        return f"rejected: {entry['last_error']}"
    wait = entry["next_attempt_at"] - now
    last = f" (last: {entry['last_error']})" if entry["last_error"] else ""
    return (f"next attempt in {wait:.0f} s" if wait > 0 else "due now") + last


def _outbox_next(entry: dict[str, Any]) -> str:
    return {
        "delivered": "nothing: the platform has the ticket",
        "dead": "nothing until someone acts: the platform refused it (a 4xx). Fix the cause, then "
                f"`appliance-gateway outbox retry {entry['outbox_id']}`",
        "sending": "a request is in flight; if the gateway stopped meanwhile, it is sent again at start-up",
    }.get(entry["state"], "retried automatically with backoff until the platform accepts it; "
                          f"`appliance-gateway outbox retry {entry['outbox_id']}` sends it now")


def _verify_ticket(args: argparse.Namespace) -> int:
    """Exit 0 when the seal is valid, 1 when the ticket was altered or carries no valid seal."""
    import orjson

    from gateway.diagnosis.seal import load_or_create_key, verify

    config = load_config(args.config)
    key_path = resolve_path(config, config.storage.key_file)
    if not key_path.exists():
        raise SealError(f"{key_path}: no sealing key here; run verify-ticket with the gateway's config")
    key = load_or_create_key(key_path)
    document: dict[str, Any] | None
    if args.ticket.isdigit():
        db = _existing_database(config)
        try:
            document = db.ticket_payload(int(args.ticket))
        finally:
            db.close()
        if document is None:
            raise CliInputError(f"no local ticket {args.ticket}")
    else:
        try:
            loaded = orjson.loads(Path(args.ticket).read_bytes())
        except OSError as exc:
            raise CliInputError(f"cannot read {args.ticket}: {exc.strerror}") from None
        except orjson.JSONDecodeError as exc:
            raise CliInputError(f"{args.ticket} is not JSON: {exc}") from None
        document = loaded.get("ticket", loaded) if isinstance(loaded, dict) else None
        if not isinstance(document, dict):
            raise CliInputError(f"{args.ticket} is not a ticket (a JSON object)")
    original = None  # the gateway's own copy, where there is one, names the fields that were changed
    database = resolve_path(config, config.storage.database)
    if database.is_file():
        db = Database(database)
        try:
            original = db.ticket_by_key(str(document.get("idempotency_key", "")))
        finally:
            db.close()
    verdict = verify(document, key, original)
    print(("valid: " if verdict.valid else "INVALID: ") + verdict.reason)
    return 0 if verdict.valid else 1


def _replay(args: argparse.Namespace) -> int:
    import os
    import tempfile

    import orjson

    from gateway.clock import FakeClock
    from gateway.pipeline import Pipeline, settings_from_config
    from gateway.replay import ReplayError, read_recording, replay
    from gateway.store.db import Database

    logging.getLogger("gateway.incidents").setLevel(logging.ERROR)  # replay prints its own account
    logging.getLogger("gateway.ingest").setLevel(logging.ERROR)
    config = load_config(args.config)
    try:
        recording = read_recording(args.file, config.broker.topic_prefix)
    except (ReplayError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    library = load_library(config)
    with tempfile.TemporaryDirectory(prefix="replay-") as folder:
        db = Database(Path(folder) / "replay.db")
        clock = FakeClock(recording.messages[0].ts if recording.messages else 0.0)
        pipeline = Pipeline(library, db, clock, settings_from_config(config), seal_key=os.urandom(32))
        try:
            result = replay(recording, pipeline, clock, args.tick)
        finally:
            db.close()
    if args.json:
        sys.stdout.write(orjson.dumps({"messages": result.messages, "transitions": result.transitions,
                                       "tickets": [t["payload"] for t in result.tickets], "dropped": result.dropped,
                                       "drop_details": result.drop_details, "notes": result.notes},
                                      option=orjson.OPT_INDENT_2).decode())
        print()
        return 0
    print(f"{result.messages} messages replayed")
    for note in result.notes[:10]:
        print(f"note: {note}")
    if len(result.notes) > 10:
        print(f"note: ... and {len(result.notes) - 10} more cells that are not numbers")
    for reason, count in result.dropped.items():
        print(f"dropped {count} x {reason}, e.g. {result.drop_details.get(reason, '')}")
    for t in result.transitions:
        verb = "fires" if t["kind"] == "firing" else "resolves"
        held = " (held back: another incident of this appliance inhibits it)" if t["held_back"] else ""
        print(f"{t['ts']:.0f} {t['device_id']}: {t['rule']} {verb}{held}")
    for ticket in result.tickets:
        payload = ticket["payload"]
        price = payload.get("price") or {}
        band = price.get("total_band")
        print(f"\nticket draft: {payload['appliance']['device_id']} {payload['fault']['code']} "
              f"{payload['fault']['title']['en']} [{payload['fault']['severity']}, {payload['fault']['category']}]"
              + (f", {band[0]:.0f}-{band[1]:.0f} {price['currency']}" if band else ""))
        for cause in payload["probable_causes"]:
            print(f"  {cause['likelihood']:.0%} {cause['cause']} ({', '.join(cause['supported_by'])})")
        for excluded in payload.get("ruled_out", []):
            print(f"  ruled out: {excluded['cause']} ({'; '.join(excluded['because'])})")
    return 0


def _rules_test(args: argparse.Namespace) -> int:
    from gateway.ruletest import find_test_files, run_suite

    config = load_config(args.config)
    library = load_library(config)
    files = find_test_files(args.paths or list(library.rule_paths))
    result = run_suite(files, library, lambda rules, profiles: load_library(config, rules, profiles),
                       whole_library=not args.paths)
    for file in result.files:
        for error in file.errors:
            print(f"error: {error}")
        for outcome in file.outcomes:
            print(outcome.describe())
    for gap in result.gaps:
        print(f"untested: {gap}")
    outcomes = result.outcomes
    failed = sum(not o.passed for o in outcomes)
    print(f"{len(outcomes) - failed} passed, {failed} failed"
          + (f", {len(result.errors)} malformed" if result.errors else "")
          + (f", {len(result.gaps)} rule(s) without a firing case or a near miss" if result.gaps else ""))
    return 0 if result.ok else 1


def _rules_check(args: argparse.Namespace) -> int:
    from gateway.engine.lint import impossible_comparisons

    try:
        library = load_library(load_config(args.config), args.paths or None, tuple(args.profiles))
    except RuleFileError as exc:
        for error in exc.errors:
            print(error)
        print(f"{len(exc.errors)} error(s)")
        return 1
    warnings = impossible_comparisons(library.rules, library.profiles)
    for warning in warnings:
        print(f"warning: {warning}")
    builtin = sum(1 for r in library.rules if r.labels.get("category") == "data_quality")
    print(f"ok: {len(library.rules) - builtin} rule(s) in {', '.join(str(p) for p in library.rule_paths)}, "
          f"and {builtin} built-in data-quality rule(s)" + (f"; {len(warnings)} warning(s)" if warnings else ""))
    return 0

