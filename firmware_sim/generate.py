"""Scenarios drawn at random from a seed: the suite that measures how the gateway does on appliances nobody
tuned it for.

`generate(seed)` draws a fleet (types, brands with and without vendor code tables, brands that name their own
metrics, MQTT and the three UART dialects, reporting rates anywhere a profile tolerates, usage levels) and what
happens to it (component faults abrupt and gradual, at random onsets; two faults on one appliance; faults during
outages; repairs and recurrences; sensor and connection faults). The World of firmware_sim.scenario turns it into
messages and ground truth, as for a scenario file. The same seed always gives the same scenario.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from firmware_sim.catalog import COMPONENT_FAULTS, SENSOR_FAULTS
from firmware_sim.scenario import DEFAULT_START, SHORT, VENDOR_DIALECT_TYPES, Appliance, Injection, Scenario
from gateway.engine.profiles import Profile

# brands per type; those without a vendor code table in rules/vendor_codes are found by telemetry alone
BRANDS = {
    "air_conditioner": ("Midea", "Gree", "Haier", "Daikin"),
    "refrigerator": ("Haier", "Midea", "Siemens"),
    "washer": ("LG", "Samsung", "Bosch", "Haier", "Midea"),
    "water_heater": ("AO Smith", "Haier", "Ariston"),
    "dishwasher": ("Siemens", "Midea", "Bosch"),
}
GRADUAL = {"condenser_fouling": (6 * 3600, 24 * 3600), "refrigerant_leak": (3 * 3600, 12 * 3600),
           "filter_clogged": (3 * 3600, 12 * 3600), "door_seal_leak": (1800, 3 * 3600),
           "scale_build_up": (2 * 3600, 8 * 3600)}
HOUR = 3600.0
# how long a fault must last to be sure to show itself: a day and more where it shows only in use (an AC in the
# warm hours, a program a day), a defrost cycle or two in a fridge, a few heat-ups in a water heater
SHOWS_WITHIN = {"air_conditioner": 30 * HOUR, "washer": 30 * HOUR, "dishwasher": 30 * HOUR,
                "refrigerator": 12 * HOUR, "water_heater": 24 * HOUR}
# how long an appliance takes to be back to normal after a repair, where its symptom outlasts the fault: a fridge
# cabinet warmed to 20 degC pulls back below 8 degC in up to 6 h (door seal), a thawed freezer in up to 4 h
# (measured on firmware_sim.models.refrigerator, 12 seeds). A fault back before then is, to anyone watching, the
# same warm cabinet and the same open ticket, so a recurrence is drawn only after it.
RECOVERS_WITHIN = {"door_seal_leak": 8 * HOUR, "compressor_start_failure": 8 * HOUR}


@dataclass(frozen=True)
class Mix:
    """How much of what a generated scenario holds. The defaults are the CI and benchmark mix: small scenarios
    (a replay costs about 20 CPU-seconds per appliance-day at these rates), many seeds."""

    appliances: int = 6
    days: float = 2.0
    component: float = 0.45  # chance an appliance gets a component fault
    second_fault: float = 0.15  # ... and a second, different one
    repair: float = 0.35  # chance a component fault is repaired before the end (and may come back)
    recurrence: float = 0.5  # chance a repaired fault comes back later
    outage_at_onset: float = 0.15  # chance the connection drops around a component fault's onset
    sensor: float = 0.12  # chance a healthy appliance gets a sensor fault
    connection: float = 0.2  # chance an appliance gets a connection fault
    serial: float = 0.25  # chance an appliance is on a UART line


# more faults, overlaps, repairs, outages, sensor and connection faults and UART lines than CI's mix
# (benchmarks/harsh_mix.py scores it)
HARSH = Mix(appliances=8, days=2.0, component=0.7, second_fault=0.35, repair=0.5, recurrence=0.6,
            outage_at_onset=0.3, sensor=0.3, connection=0.4, serial=0.35)


def generate(seed: int, profiles: dict[str, Profile], mix: Mix | None = None) -> Scenario:
    mix = mix or Mix()
    rng = random.Random(f"generated-{seed}")
    total = mix.days * 86400.0
    appliances = _fleet(rng, profiles, mix)
    injections: list[Injection] = []
    for appliance in appliances:
        injections += _faults(rng, appliance, profiles[appliance.appliance], total, mix)
    return Scenario(f"generated-{seed}", seed, DEFAULT_START + rng.randrange(0, 120) * 86400.0, total,
                    appliances, injections, f"generated from seed {seed}")


def _fleet(rng: random.Random, profiles: dict[str, Profile], mix: Mix) -> list[Appliance]:
    counters: dict[str, int] = {}
    fleet = []
    for _ in range(mix.appliances):
        kind = rng.choice(sorted(BRANDS))
        counters[kind] = counters.get(kind, 0) + 1
        brand = rng.choice(BRANDS[kind])
        transport, dialect = "mqtt", "open"
        if rng.random() < mix.serial:
            transport = "serial"
            vendor = [d for d, t in VENDOR_DIALECT_TYPES.items() if t == kind]
            dialect = rng.choice(["open", *vendor])
            if dialect == "midea":
                brand = "Midea"
            elif dialect == "haier":
                brand = "Haier"
        usage = round(rng.uniform(0.5, 3.0), 2)
        if kind == "dishwasher":
            usage = max(usage, 1.25)  # runs every day, so a fault shows itself within the scenario
        fleet.append(Appliance(f"{SHORT[kind]}-{counters[kind]:02d}", kind, brand, f"G{rng.randrange(100, 999)}",
                               _interval(rng, profiles[kind]), transport, usage, dialect))
    return fleet


def _interval(rng: random.Random, profile: Profile) -> float:
    """Anywhere from the profile's own interval to 90 % of its silence limit, log-uniform (every rate as likely
    as its double)."""
    low = profile.interval_seconds
    high = 0.9 * profile.interval_seconds * profile.offline_after_intervals
    return round(math.exp(rng.uniform(math.log(low), math.log(high))), 1)


def _faults(rng: random.Random, appliance: Appliance, profile: Profile, total: float, mix: Mix) -> list[Injection]:
    out: list[Injection] = []
    device = appliance.device_id
    # Component and sensor faults need the telemetry their rules read. The vendor dialects carry too little of it
    # (a Haier washer says only whether it runs; a Midea AC sends no pressures and packs the rest into clamped
    # bytes), so their appliances get connection faults and healthy days only (docs/accuracy.md says what that
    # leaves out).
    if appliance.dialect == "open":
        if rng.random() < mix.component:
            out += _component_faults(rng, appliance, total, mix)
        elif rng.random() < mix.sensor:
            out.append(_sensor(rng, device, profile, total))
    if rng.random() < mix.connection:
        out.append(_connection(rng, device, total, busy=bool(out)))
    return out


def _component_faults(rng: random.Random, appliance: Appliance, total: float, mix: Mix) -> list[Injection]:
    """One fault, sometimes a second, different one; some begin while the appliance is unreachable."""
    names = sorted(COMPONENT_FAULTS[appliance.appliance])
    chosen = [rng.choice(names)]
    if rng.random() < mix.second_fault:
        chosen.append(rng.choice([n for n in names if n != chosen[0]]))
    out: list[Injection] = []
    for fault in chosen:
        out += _component(rng, appliance.device_id, fault, SHOWS_WITHIN[appliance.appliance], total, mix)
    if out and rng.random() < mix.outage_at_onset:  # the fault begins while the appliance is unreachable
        first = min(i.at for i in out)
        out.append(Injection(appliance.device_id, "comm", "offline", max(0.0, first - rng.uniform(0, 1800)),
                             rng.uniform(1800, 4 * HOUR), announced=rng.random() < 0.3))
    return out


def _component(rng: random.Random, device: str, fault: str, shows_within: float, total: float,
               mix: Mix) -> list[Injection]:
    """A fault with time to show itself before it is repaired or the scenario ends, more for a slow ramp."""
    ramp = rng.uniform(*GRADUAL[fault]) if fault in GRADUAL else 0.0
    needs = ramp + shows_within
    at = rng.uniform(0.05 * total, max(0.05 * total, total - needs))
    if rng.random() >= mix.repair or total - at < needs + 2 * HOUR:
        return [Injection(device, "component", fault, at, None, ramp)]
    length = rng.uniform(needs, total - at)
    first = Injection(device, "component", fault, at, length, ramp)
    back = at + length + RECOVERS_WITHIN.get(fault, 0.0) + rng.uniform(2 * HOUR, 12 * HOUR)
    if rng.random() < mix.recurrence and total - back >= needs:
        return [first, Injection(device, "component", fault, back, None, ramp)]
    return [first]


def _sensor(rng: random.Random, device: str, profile: Profile, total: float) -> Injection:
    candidates = [m for m in profile.metrics if m.unit not in ("bool", "enum") and not m.sporadic]
    metric = rng.choice(candidates)
    kind = rng.choice(SENSOR_FAULTS)
    length = rng.uniform(0.5 * HOUR, 30 * HOUR)
    at = rng.uniform(0.05 * total, max(0.05 * total, total - length))
    amount = {"out_of_range": metric.high * 10 + 1, "noise": 5 * (metric.max_step or 1.0),
              "drift": rng.uniform(0.05, 0.5)}.get(kind, 0.0)
    return Injection(device, "sensor", kind, at, length, metric=metric.name, amount=amount)


def _connection(rng: random.Random, device: str, total: float, busy: bool) -> Injection:
    kinds = ["duplicates", "out_of_order", "clock_skew", "burst"] if busy else \
        ["offline", "duplicates", "out_of_order", "clock_skew", "burst"]
    kind = rng.choice(kinds)
    if kind in ("duplicates", "out_of_order", "clock_skew"):
        return Injection(device, "comm", kind, 0.0, None, amount=rng.uniform(30, 400) if kind == "clock_skew" else 0)
    length = rng.uniform(120, 3 * HOUR) if kind == "offline" else rng.uniform(60, 900)
    at = rng.uniform(0.05 * total, total - length - HOUR)
    return Injection(device, "comm", kind, at, length, amount=20.0 if kind == "burst" else 0.0,
                     announced=kind == "offline" and rng.random() < 0.4)
