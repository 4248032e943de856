"""Scenario files: a simulated world with a known truth, for measuring how well the gateway diagnoses.

A scenario (YAML) says which appliances (type, brand, model, count, reporting interval, transport), for how
long, from which seed, and which faults happen when: component faults from the catalog, sensor faults on one
metric, communication faults on one appliance, or a random fault rate. `World` turns it into the messages the
appliances would send, in time order, and the ground truth: device, fault, onset, end, expected codes.
"""

from __future__ import annotations

import heapq
import math
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from firmware_sim.catalog import (
    COMM_FAULTS,
    COMPONENT_FAULTS,
    MAINTENANCE,
    SENSOR_FAULTS,
    Expectation,
    comm_expectation,
    sensor_expectation,
)
from firmware_sim.models import MODELS, FaultableModel, FaultSchedule, WasherModel
from firmware_sim.serial_peer import haier_status, midea_group_reply, midea_state_reply
from gateway import yaml_input
from gateway.engine.durations import parse_duration
from gateway.engine.profiles import Profile
from gateway.ingest.uart import HaierAdapter, MideaAdapter
from gateway.protocol import open_dialect
from gateway.store.window import OWN_INTERVALS

SHORT = {"air_conditioner": "ac", "refrigerator": "fridge", "washer": "washer", "water_heater": "wh",
         "dishwasher": "dw"}
# Brands that name their sensors their own way and say so in their meta (Gree's service manuals call the room
# sensor T1, the indoor coil T2, outdoor air T4 and the discharge line TP)
BRAND_METRIC_NAMES = {("air_conditioner", "Gree"): {"T1": "local_temperature", "T2": "indoor_coil_temperature",
                                                    "T4": "outdoor_temperature", "TP": "discharge_temperature"}}
DEFAULT_START = 1_782_864_000.0  # 2026-07-01 00:00 UTC: summer, so the air conditioners work
# the UART dialects of one vendor, and the one appliance type each speaks for (as the gateway's adapters say)
VENDOR_DIALECT_TYPES = {"midea": MideaAdapter.appliance_type, "haier": HaierAdapter.appliance_type}
# the metrics each vendor dialect carries, in fixed frame fields (none can go missing)
VENDOR_DIALECT_METRICS = {"midea": MideaAdapter.carries, "haier": HaierAdapter.carries}
SERIAL_PREFIX = "serial:"  # a message "topic" that carries UART bytes for this appliance, not an MQTT message


class ScenarioError(Exception):
    """A scenario file is broken; the message names the file and the key."""


def duration(value: Any) -> float | None:
    """'30d', '2d3h', '90m', '45s' or seconds (the gateway's own duration parser)."""
    return parse_duration(value)


@dataclass(frozen=True)
class Appliance:
    device_id: str
    appliance: str
    brand: str
    model: str
    interval: float
    transport: str = "mqtt"
    usage: float = 1.0
    dialect: str = "open"  # on a UART line: open, midea (air conditioners) or haier (washers)


@dataclass(frozen=True)
class Injection:
    device_id: str
    kind: str  # component | sensor | comm
    fault: str
    at: float  # seconds from the start
    duration: float | None  # None: until the end
    ramp: float = 0.0
    severity: float = 1.0
    metric: str = ""
    amount: float = 0.0
    announced: bool = False  # comm offline: with a status 'offline' first


@dataclass
class Scenario:
    name: str
    seed: int
    start: float
    duration: float
    appliances: list[Appliance]
    injections: list[Injection]
    source: str = ""

    @property
    def appliance_days(self) -> float:
        return len(self.appliances) * self.duration / 86400.0

    def part(self, index: int, parts: int) -> Scenario:
        """Every `parts`-th appliance from `index`, with its faults: independent shares to run in parallel."""
        keep = {a.device_id for n, a in enumerate(self.appliances) if n % parts == index}
        return Scenario(self.name, self.seed, self.start, self.duration,
                        [a for a in self.appliances if a.device_id in keep],
                        [i for i in self.injections if i.device_id in keep], self.source)


@dataclass(frozen=True)
class TruthEntry:
    device_id: str
    appliance: str
    kind: str
    fault: str
    onset: float
    end: float | None
    expected_codes: tuple[str, ...]
    top_cause: str
    category: str
    metric: str = ""  # a sensor fault's metric

    def as_dict(self) -> dict[str, Any]:
        return {"device": self.device_id, "appliance": self.appliance, "kind": self.kind, "fault": self.fault,
                "onset": self.onset, "end": self.end, "expected_codes": list(self.expected_codes),
                "top_cause": self.top_cause, "category": self.category, "metric": self.metric}


def load_scenario(path: Path) -> Scenario:
    try:
        doc = yaml_input.load_file(path)
    except FileNotFoundError:
        raise ScenarioError(f"{path}: scenario not found") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return scenario_from_dict(doc, str(path))


def scenario_from_dict(doc: Any, source: str = "<dict>") -> Scenario:
    errors: list[str] = []

    def need(value: Any, key: str, parse: Any, default: Any = None) -> Any:
        if value is None:
            if default is None:
                errors.append(f"{source}: key '{key}' is required")
            return default
        parsed = parse(value)
        if parsed is None:
            errors.append(f"{source}: key '{key}' has a bad value {value!r}")
        return parsed

    if not isinstance(doc, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping with name, duration, fleet and faults")
    known = {"name", "seed", "start", "duration", "fleet", "faults", "fault_rate"}
    for key in set(doc) - known:
        errors.append(f"{source}: unknown key '{key}' (known: {', '.join(sorted(known))})")
    total = need(doc.get("duration"), "duration", duration) or 0.0
    seed = int(doc.get("seed", 1))
    appliances = _fleet(doc.get("fleet"), source, errors)
    by_id = {a.device_id: a for a in appliances}
    injections = [_injection(f, i, by_id, source, errors) for i, f in enumerate(doc.get("faults") or [])]
    rate = doc.get("fault_rate")
    if rate is not None:
        injections += _random_faults(rate, appliances, total, seed, source, errors)
    if errors:
        raise ScenarioError("\n".join(errors))
    return Scenario(str(doc.get("name", Path(source).stem)), seed, float(doc.get("start", DEFAULT_START)), total,
                    appliances, [i for i in injections if i is not None], source)


def _fleet(value: Any, source: str, errors: list[str]) -> list[Appliance]:
    if not isinstance(value, list) or not value:
        errors.append(f"{source}: key 'fleet' must list appliance groups (type, brand, model, count, every)")
        return []
    appliances: list[Appliance] = []
    counters: dict[str, int] = {}
    for index, group in enumerate(value):
        where = f"{source}: fleet[{index}]"
        if not isinstance(group, dict) or group.get("type") not in MODELS:
            errors.append(f"{where}: 'type' must be one of {sorted(MODELS)}")
            continue
        every = duration(group.get("every", "10s"))
        count = group.get("count", 1)
        if every is None or every <= 0 or not isinstance(count, int) or count < 1:
            errors.append(f"{where}: 'every' must be a duration and 'count' a positive whole number")
            continue
        transport = str(group.get("transport", "mqtt"))
        if transport not in ("mqtt", "serial"):
            errors.append(f"{where}: 'transport' is mqtt or serial (a UART line), not {transport!r}")
        appliance = str(group["type"])
        dialect = str(group.get("dialect", "open"))
        if dialect != "open" and (transport != "serial" or VENDOR_DIALECT_TYPES.get(dialect) != appliance):
            errors.append(f"{where}: 'dialect' is open, or on a serial line midea (air_conditioner) or haier "
                          f"(washer); not {dialect!r} for a {appliance} on {transport}")
        for _ in range(count):
            counters[appliance] = counters.get(appliance, 0) + 1
            appliances.append(Appliance(f"{SHORT[appliance]}-{counters[appliance]:02d}", appliance,
                                        str(group.get("brand", "Generic")), str(group.get("model", "M1")),
                                        every, transport, float(group.get("usage", 1.0)), dialect))
    return appliances


def _injection(spec: Any, index: int, by_id: dict[str, Appliance], source: str,
               errors: list[str]) -> Injection | None:
    where = f"{source}: faults[{index}]"
    if not isinstance(spec, dict) or spec.get("device") not in by_id:
        errors.append(f"{where}: 'device' must name an appliance of the fleet ({', '.join(list(by_id)[:6])} ...)")
        return None
    appliance = by_id[spec["device"]]
    fault = str(spec.get("fault", ""))
    kind = "sensor" if fault in SENSOR_FAULTS else "comm" if fault in COMM_FAULTS else "component"
    if kind == "component" and fault not in COMPONENT_FAULTS[appliance.appliance]:
        errors.append(f"{where}: {appliance.appliance} faults are {sorted(COMPONENT_FAULTS[appliance.appliance])}, "
                      f"sensor faults {list(SENSOR_FAULTS)}, communication faults {list(COMM_FAULTS)}; "
                      f"not {fault!r}")
        return None
    at, length, ramp = duration(spec.get("at", 0)), duration(spec.get("for", 0)), duration(spec.get("ramp", 0))
    if at is None or length is None or ramp is None:
        errors.append(f"{where}: 'at', 'for' and 'ramp' are durations")
        return None
    if kind == "sensor" and not spec.get("metric"):
        errors.append(f"{where}: a sensor fault needs the 'metric' it affects")
        return None
    carried = VENDOR_DIALECT_METRICS.get(appliance.dialect)
    if kind == "sensor" and carried is not None and (spec["metric"] not in carried or fault == "dropout"):
        errors.append(f"{where}: {appliance.device_id} speaks the {appliance.dialect} dialect, whose frames carry "
                      f"{', '.join(sorted(carried))} in fixed fields (none can drop out); not a {fault} of "
                      f"{spec['metric']!r}")
        return None
    return Injection(appliance.device_id, kind, fault, at, length or None, ramp, float(spec.get("severity", 1.0)),
                     str(spec.get("metric", "")), float(spec.get("amount", 0.0)), bool(spec.get("announced", False)))


def _random_faults(rate: Any, appliances: list[Appliance], total: float, seed: int, source: str,
                   errors: list[str]) -> list[Injection | None]:
    """`fault_rate: {per_appliance_day: 0.02}`: component faults at random times, one at most per appliance."""
    if not isinstance(rate, dict) or not isinstance(rate.get("per_appliance_day"), int | float):
        errors.append(f"{source}: key 'fault_rate' is {{per_appliance_day: <number>}}")
        return []
    rng = random.Random(seed * 7919)
    out: list[Injection | None] = []
    for appliance in appliances:
        chance = 1.0 - math.exp(-float(rate["per_appliance_day"]) * total / 86400.0)
        if rng.random() < chance:
            fault = rng.choice(sorted(COMPONENT_FAULTS[appliance.appliance]))
            out.append(Injection(appliance.device_id, "component", fault, rng.uniform(0.1, 0.7) * total, None,
                                 rng.choice([0.0, 3600.0])))
    return out


@dataclass(order=True)
class _Due:
    ts: float
    order: int
    device_id: str = field(compare=False)


class World:
    """The scenario's appliances, their faults, and the messages they send (topic, payload, true time)."""

    def __init__(self, scenario: Scenario, profiles: dict[str, Profile]) -> None:
        self.scenario = scenario
        self.profiles = profiles
        self.rng = random.Random(scenario.seed)
        self.models: dict[str, FaultableModel] = {}
        self.appliances = {a.device_id: a for a in scenario.appliances}
        for appliance in scenario.appliances:
            schedules = [FaultSchedule(i.fault, scenario.start + i.at, i.ramp, i.severity,
                                       None if i.duration is None else scenario.start + i.at + i.duration)
                         for i in scenario.injections if i.device_id == appliance.device_id and i.kind == "component"]
            model_class = MODELS[appliance.appliance]
            extra: dict[str, Any] = {"brand": appliance.brand} if appliance.appliance == "washer" else {}
            if appliance.appliance == "air_conditioner":
                extra["always_on"] = False
            seed = scenario.seed * 100_000 + zlib.crc32(appliance.device_id.encode()) % 100_000  # same in any part
            model = model_class(seed, schedules, **extra)
            model.usage = appliance.usage
            if isinstance(model, WasherModel):
                model.use(appliance.usage)
            self.models[appliance.device_id] = model
        self.by_device: dict[str, list[Injection]] = {}
        for injection in scenario.injections:
            self.by_device.setdefault(injection.device_id, []).append(injection)
        self.stuck_values: dict[tuple[str, str], float] = {}
        self.held: list[tuple[float, str, bytes]] = []  # out-of-order messages released later
        self.sequence: dict[str, int] = {}  # serial appliances: the last frame sequence number sent
        self.announced_offline: set[str] = set()
        self.uart_ids = {name: {metric: uart_id for uart_id, metric in profile.metric_by_uart_id().items()}
                         for name, profile in profiles.items()}

    def truth(self) -> list[TruthEntry]:
        """The injected faults, and the maintenance the appliances came to need while running (call after
        `messages()` has been consumed for the latter)."""
        entries = []
        for device_id, model in self.models.items():
            due = getattr(model, "filter_due_at", None)
            if due is not None:
                need = MAINTENANCE["filter_cleaning_due"]
                entries.append(TruthEntry(device_id, model.appliance_type, "maintenance", "filter_cleaning_due", due,
                                          None, tuple(sorted(need.codes)), need.top_cause, need.category))
        for i in self.scenario.injections:
            appliance = self.appliances[i.device_id]
            profile = self.profiles[appliance.appliance]
            length = i.duration if i.duration is not None else self.scenario.duration - i.at
            # the gateway's silence limit for this appliance: its profile's, or five of its own intervals where
            # it reports more slowly (with a quarter's slack: the gateway measures the interval, jitter and all)
            limit = max(profile.silence_limit,
                        OWN_INTERVALS * appliance.interval * 1.25)
            expectation: Expectation
            onset = self.scenario.start + i.at
            end = None if i.duration is None else onset + i.duration
            if i.kind == "component":
                expectation = COMPONENT_FAULTS[appliance.appliance][i.fault]
                if not self.models[i.device_id].showed(i.fault, onset, end):  # nothing to see: nothing to detect
                    expectation = Expectation(frozenset(), expectation.top_cause, expectation.category)
            elif i.kind == "sensor":
                spec = next((m for m in profile.metrics if m.name == i.metric), None)
                expectation = sensor_expectation(i.fault, length, spec.flatline_after if spec else None,
                                                 spec.max_step if spec else None, limit)
            else:
                expectation = comm_expectation(i.fault, length, limit, profile.always_on, i.announced)
            entries.append(TruthEntry(i.device_id, appliance.appliance, i.kind, i.fault, onset, end,
                                      tuple(sorted(expectation.codes)), expectation.top_cause,
                                      expectation.category, i.metric if i.kind == "sensor" else ""))
        return entries

    def messages(self) -> Iterator[tuple[float, str, bytes]]:
        """(true time, topic, payload) in time order: retained meta and status first, then telemetry."""
        start, end = self.scenario.start, self.scenario.start + self.scenario.duration
        for appliance in self.scenario.appliances:
            if appliance.transport == "serial" and appliance.dialect == "open":  # it identifies itself, then reports
                identify = open_dialect.Identify(open_dialect.ApplianceCode[appliance.appliance.upper()],
                                                 appliance.brand, appliance.model, f"SN-{appliance.device_id}",
                                                 "2.1.0")
                yield start, f"{SERIAL_PREFIX}{appliance.device_id}", open_dialect.OpenFrame(
                    open_dialect.MessageType.IDENTIFY, 0, identify.encode()).to_bytes()
                continue
            meta: dict[str, Any] = {"type": appliance.appliance, "brand": appliance.brand, "model": appliance.model,
                                    "serial": f"SN-{appliance.device_id}", "firmware": "2.1.0"}
            if (own := BRAND_METRIC_NAMES.get((appliance.appliance, appliance.brand))) is not None:
                meta["metric_names"] = own
            yield start, f"appliances/{appliance.device_id}/meta", orjson.dumps(meta)
            yield start, f"appliances/{appliance.device_id}/status", b"online"
        heap = [_Due(start + self.rng.uniform(0, a.interval), n, a.device_id)
                for n, a in enumerate(self.scenario.appliances)]
        heapq.heapify(heap)
        while heap:
            due = heapq.heappop(heap)
            if due.ts >= end:
                continue
            while self.held and self.held[0][0] <= due.ts:
                released = heapq.heappop(self.held)
                yield due.ts, released[1], released[2]
            yield from self._report(due.device_id, due.ts)
            heapq.heappush(heap, _Due(due.ts + self.appliances[due.device_id].interval, due.order, due.device_id))

    def _active(self, device_id: str, ts: float, kinds: tuple[str, ...]) -> list[Injection]:
        start = self.scenario.start
        return [i for i in self.by_device.get(device_id, ()) if i.kind in kinds and start + i.at <= ts
                and (i.duration is None or ts < start + i.at + i.duration)]

    def _report(self, device_id: str, ts: float) -> Iterator[tuple[float, str, bytes]]:
        model = self.models[device_id]
        metrics = model.sample(ts)
        codes = model.codes(ts)
        for injection in self._active(device_id, ts, ("sensor",)):
            self._corrupt(metrics, injection, ts)
        appliance = self.appliances[device_id]
        own = BRAND_METRIC_NAMES.get((appliance.appliance, appliance.brand))
        if own is not None and appliance.transport == "mqtt":  # on a UART the metric ids are the profile's
            canonical_to_own = {v: k for k, v in own.items()}
            metrics = {canonical_to_own.get(k, k): v for k, v in metrics.items()}
        comm = {c.fault: c for c in self._active(device_id, ts, ("comm",))}
        status = f"appliances/{device_id}/status"
        if "offline" in comm:  # silent; an announced outage says goodbye first (or its last will does)
            if comm["offline"].announced and device_id not in self.announced_offline:
                self.announced_offline.add(device_id)
                yield ts, status, b"offline"
            return
        if device_id in self.announced_offline:
            self.announced_offline.discard(device_id)
            yield ts, status, b"online"
        stamp = ts + (comm["clock_skew"].amount or 120.0) if "clock_skew" in comm else ts
        if appliance.dialect == "midea":  # the answers to the gateway's two polls
            yield ts, f"{SERIAL_PREFIX}{device_id}", midea_state_reply(metrics) + midea_group_reply(metrics)
            return
        if appliance.dialect == "haier":  # the status frame the washer sends unasked
            yield ts, f"{SERIAL_PREFIX}{device_id}", haier_status(metrics).to_wire()
            return
        if appliance.transport == "serial":  # open-dialect frames, the way a UART appliance answers a poll
            ids = self.uart_ids[appliance.appliance]
            frame = open_dialect.OpenFrame(open_dialect.MessageType.TELEMETRY, self._next_seq(device_id),
                                           open_dialect.Telemetry(tuple((ids[k], v) for k, v in metrics.items()
                                                                        if k in ids)).encode())
            yield ts, f"{SERIAL_PREFIX}{device_id}", frame.to_bytes()
            for code in codes:  # each event frame its own sequence number, as firmware counts them
                yield ts, f"{SERIAL_PREFIX}{device_id}", open_dialect.OpenFrame(
                    open_dialect.MessageType.EVENT, self._next_seq(device_id),
                    open_dialect.Event(code, True).encode()).to_bytes()
            return
        topic = f"appliances/{device_id}/telemetry"
        payload = orjson.dumps({"ts": round(stamp, 3), "metrics": metrics})
        copies = 1 + ("duplicates" in comm) + (int(comm["burst"].amount or 20) if "burst" in comm else 0)
        if "out_of_order" in comm and self.rng.random() < 0.3:  # delivered one to three reports late
            delay = self.rng.uniform(1, 3) * self.appliances[device_id].interval
            heapq.heappush(self.held, (ts + delay, topic, payload))
            copies -= 1
        for _ in range(copies):
            yield ts, topic, payload
        for code in codes:
            yield ts, f"appliances/{device_id}/event", orjson.dumps({"ts": round(stamp, 3), "code": code})

    def _next_seq(self, device_id: str) -> int:
        """The appliance's frame counter, 1-255 and round again (0 is its IDENTIFY)."""
        seq = self.sequence.get(device_id, 0) % 255 + 1
        self.sequence[device_id] = seq
        return seq

    def _corrupt(self, metrics: dict[str, float], injection: Injection, ts: float) -> None:
        name = injection.metric
        if name not in metrics:
            return
        key = (injection.device_id, name)
        if injection.fault == "stuck":
            metrics[name] = self.stuck_values.setdefault(key, metrics[name])
        elif injection.fault == "drift":
            hours = (ts - self.scenario.start - injection.at) / 3600.0
            metrics[name] = round(metrics[name] + (injection.amount or 0.5) * hours, 3)
        elif injection.fault == "noise":
            metrics[name] = round(metrics[name] + self.rng.gauss(0, injection.amount or 20.0), 3)
        elif injection.fault == "dropout":
            del metrics[name]
        elif injection.fault == "out_of_range":
            metrics[name] = injection.amount or 9999.0
