"""Route one raw MQTT message: telemetry into the window store, meta/status into the registry, events out.

Lenient at the edge, strict inside: anything malformed is counted with a reason and dropped, keeping every
good value of the same message; nothing here raises into the ingest loop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from gateway.clock import Clock
from gateway.engine.profiles import OUT_OF_RANGE_METRIC, Profile
from gateway.engine.vendor_codes import VendorCodes
from gateway.ingest.drops import DropCounter
from gateway.ingest.link_health import LinkHealth
from gateway.ingest.pending import PendingSamples
from gateway.ingest.registry import DeviceRegistry
from gateway.ingest.waiting import WaitingForMeta
from gateway.model import DeviceEvent
from gateway.protocol.payload import (
    DropReason,
    PayloadLimits,
    Rejection,
    Sample,
    checked_timestamp,
    decode_json_object,
    decode_telemetry,
    short_repr,
)
from gateway.protocol.topics import TopicKind, parse_topic
from gateway.store.window import TypeWindow, WindowStore

log = logging.getLogger("gateway.ingest")

MAX_CODE_LENGTH = 64  # a vendor code ("E18", "MIDEA-3"), never a paragraph
MAX_METRIC_SETS = 4_096  # distinct metric sets whose ranges are kept ready


class Ingest:
    def __init__(self, profiles: dict[str, Profile], registry: DeviceRegistry, store: WindowStore,
                 drops: DropCounter, limits: PayloadLimits, clock: Clock, topic_prefix: str = "appliances",
                 flush_rules: Callable[[], object] | None = None,
                 on_event: Callable[[DeviceEvent], None] | None = None,
                 vendor_codes: VendorCodes | None = None,
                 on_sample: Callable[[str, float, dict[str, float]], None] | None = None) -> None:
        self.profiles = profiles
        self.registry = registry
        self.store = store
        self.drops = drops
        self.limits = limits
        self.clock = clock
        self.prefix = topic_prefix
        self.flush_rules = flush_rules
        self.on_sample = on_sample  # e.g. the InfluxDB sink's buffer
        self.on_event = on_event
        self.vendor_codes = vendor_codes
        self.messages = 0
        self.samples = 0
        self.waiting = WaitingForMeta()  # samples and codes of appliances whose meta has not come yet
        self.link_health = LinkHealth()
        self.pending = PendingSamples()  # stored samples not yet in the window store (write_pending)
        self._ranges = {
            name: {m.name: (m.low, m.high) for m in profile.metrics} for name, profile in profiles.items()
        }
        self._bounds_by_set: dict[tuple[str, tuple[str, ...]], list[tuple[float, float]] | None] = {}

    def handle(self, topic: str, payload: bytes) -> None:
        """One message, its samples written to the window store at once."""
        self.stage(topic, payload)
        self.write_pending()

    def stage(self, topic: str, payload: bytes) -> None:
        """One message of a batch: its samples stay pending until write_pending (or a device's next sample)."""
        self.messages += 1
        parsed = parse_topic(topic, self.prefix)
        if parsed is None:
            self.drops.drop(None, DropReason.UNKNOWN_TOPIC, topic[:120])
            return
        device_id = parsed.device_id
        if device_id not in self.registry.devices and len(self.registry.devices) >= self.limits.max_devices:
            self.drops.drop(None, DropReason.DEVICE_LIMIT, f"{device_id} is new and {self.limits.max_devices} "
                            "appliances are known already (ingest.max_devices)")
            return
        if parsed.kind is TopicKind.TELEMETRY:
            self._telemetry(device_id, payload)
            return
        self.write_pending()  # a status, meta or event acts on the store as it is after the samples before it
        if parsed.kind is TopicKind.STATUS:
            self._status(device_id, payload)
        elif parsed.kind is TopicKind.META:
            self._meta(device_id, payload)
        else:
            self._event(device_id, payload)

    def write_pending(self) -> None:
        """Put the samples handled so far into the window store (before a rule pass reads it)."""
        self.pending.write()

    def _telemetry(self, device_id: str, payload: bytes) -> None:
        now = self.clock.now()
        decoded = decode_telemetry(payload, now, self.limits)
        for rejection in decoded.rejections:
            self.drops.drop(device_id, rejection.reason, rejection.detail)
        for sample in decoded.samples:
            if self._sample(device_id, sample):
                self.link_health.observe(now - sample.ts)

    def _sample(self, device_id: str, sample: Sample) -> bool:
        """Store one sample's good values; False if nothing of it could be stored."""
        known = self.registry.appliance_type(device_id)
        appliance = known or sample.appliance_type
        if appliance is None:
            self._wait_for_meta(device_id, sample)
            return False
        ranges = self._ranges.get(appliance)
        if ranges is None or (known and sample.appliance_type not in (None, known)):
            self.drops.drop(device_id, DropReason.UNKNOWN_TYPE,
                            f"type {sample.appliance_type!r} (registered as {known!r})")
            return False
        own_names = self.registry.metric_names.get(device_id)  # a brand's own names, declared in its meta
        metrics = sample.metrics if own_names is None else \
            {own_names.get(name, name): value for name, value in sample.metrics.items()}
        bounds = self._bounds(appliance, tuple(metrics))
        if bounds is None or not all(low <= value <= high
                                     for value, (low, high) in zip(metrics.values(), bounds, strict=True)):
            metrics = self._checked(device_id, appliance, ranges, metrics)  # something to drop: one by one
        if not metrics:
            return False
        window = self.store.windows[appliance]
        row = self._row(window, device_id)
        if row is None:
            return False
        if self.pending.holds(window, row):
            self.write_pending()
        if window.dirty[row] and self.flush_rules is not None:
            self.flush_rules()  # this device already has an unevaluated sample: evaluate before the next one
        now = self.clock.now()
        # a shift may not put the appliance ahead of the gateway clock, unless that clock is what is behind
        latest_allowed = math.inf if sample.restamped else now + self.limits.max_future_seconds
        ts, shift = window.on_timeline(row, sample.ts, now, latest_allowed)
        if shift:
            self.drops.drop(device_id, DropReason.CLOCK_WENT_BACK,
                            f"ts {sample.ts!r} is {shift:.0f} s behind the appliance's newest sample; its samples "
                            "are shifted onto its own timeline until its clock catches up")
        self.pending.add(window, row, ts, metrics)
        self.registry.seen(device_id, ts)
        self.samples += 1
        if self.on_sample is not None:
            self.on_sample(device_id, ts, metrics)
        return True

    def _bounds(self, appliance: str, names: tuple[str, ...]) -> list[tuple[float, float]] | None:
        """The valid ranges of a metric set in its order; None if a name is not the type's. A type's devices
        send a few metric sets, so a sample's values are checked against one list without a lookup each."""
        key = (appliance, names)
        if key not in self._bounds_by_set:
            ranges = self._ranges[appliance]
            known = all(name in ranges for name in names)
            if len(self._bounds_by_set) > MAX_METRIC_SETS:  # names made up by a hostile client: start over
                self._bounds_by_set.clear()
            self._bounds_by_set[key] = [ranges[name] for name in names] if known else None
        return self._bounds_by_set[key]

    def _checked(self, device_id: str, appliance: str, ranges: dict[str, tuple[float, float]],
                 given: dict[str, float]) -> dict[str, float]:
        """The values inside their type's metrics and ranges; each other one dropped with its reason."""
        metrics: dict[str, float] = {}
        out_of_range = 0
        for name, value in given.items():
            bounds = ranges.get(name)
            if bounds is None:
                self.drops.drop(device_id, DropReason.UNKNOWN_METRIC, f"{appliance} has no metric {name!r}")
            elif not bounds[0] <= value <= bounds[1]:
                self.drops.drop(device_id, DropReason.OUT_OF_RANGE, f"{name}={value} outside {bounds}")
                out_of_range += 1
            else:
                metrics[name] = value
        if out_of_range:  # the absurd value is dropped, but the data-quality rules must see that it came
            metrics[OUT_OF_RANGE_METRIC] = float(out_of_range)
        return metrics

    def _status(self, device_id: str, payload: bytes) -> None:
        text = payload.decode("utf-8", "replace").strip().lower()
        if text not in ("online", "offline"):
            self.drops.drop(device_id, DropReason.BAD_SCHEMA, f"status must be online or offline, got {text[:40]!r}")
            return
        self.registry.set_online(device_id, text == "online")
        appliance = self.registry.appliance_type(device_id)
        if appliance is not None and appliance in self.store.windows:
            window = self.store.windows[appliance]
            row = self._row(window, device_id)  # first: allocating a row may grow (replace) the arrays
            if row is not None:
                window.online[row] = 1.0 if text == "online" else 0.0

    def _row(self, window: TypeWindow, device_id: str) -> int | None:
        """The device's row in its type's window; None (counted) for a new one beyond the type's limit."""
        if device_id not in window.rows and len(window.device_ids) >= self.limits.max_devices_per_type:
            self.drops.drop(None, DropReason.TYPE_DEVICE_LIMIT, f"{device_id} is new and {len(window.device_ids)} "
                            f"{window.appliance} appliances are known already (ingest.max_devices_per_type)")
            return None
        return window.row(device_id)

    def _meta(self, device_id: str, payload: bytes) -> None:
        doc = decode_json_object(payload, self.limits)
        if isinstance(doc, Rejection):
            self.drops.drop(device_id, doc.reason, f"meta: {doc.detail}")
            return
        error = self.registry.set_meta(device_id, doc, self.limits.max_meta_length)
        if error:
            self.drops.drop(device_id, DropReason.BAD_SCHEMA, error)
            return
        self._parameters(device_id, doc.get("parameters", {}))
        for item in self.waiting.release(device_id):  # what came before the meta, in its order
            if isinstance(item, Sample):
                self._sample(device_id, item)
            else:
                self._vendor_code(*item)

    def _wait_for_meta(self, device_id: str, item: Sample | tuple[DeviceEvent, bool]) -> None:
        for device, count in self.waiting.park(device_id, item, self.clock.now()):
            self.drops.drop(device, DropReason.UNKNOWN_DEVICE, f"{count} message(s) dropped: too many waiting for "
                            "the appliance's meta (no retained meta, no 'type' in the telemetry)", count)

    def expire_waiting(self, now: float) -> None:
        """What waited too long for its appliance's meta is dropped after all (once a second, from the tick)."""
        for device, count in self.waiting.expire(now):
            self.drops.drop(device, DropReason.UNKNOWN_DEVICE, f"{count} message(s) waited {self.waiting.seconds:.0f}"
                            " s for a meta that did not come (no retained meta, no 'type' in the telemetry)", count)

    def _parameters(self, device_id: str, given: Any) -> None:
        """A meta's per-device parameters (rule constants such as a set point). Unusable ones are dropped,
        counted and logged, and the appliance keeps the values it had; the identity in the meta still counts."""
        appliance = self.registry.appliance_type(device_id)
        profile = self.profiles.get(appliance or "")
        if profile is None or appliance not in self.store.windows:
            return
        specs = {p.name: p for p in profile.parameters}
        if not isinstance(given, dict):
            self.drops.drop(device_id, DropReason.BAD_SCHEMA, "meta 'parameters' must map parameter names to numbers")
            return
        problems = [f"{name!r} is not a {appliance} parameter" for name in given if name not in specs]
        for name, value in given.items():
            spec = specs.get(name)
            if spec is not None and (not isinstance(value, int | float) or isinstance(value, bool)
                                     or not spec.low <= value <= spec.high):
                problems.append(f"{name} must be a number within [{spec.low:g}, {spec.high:g}], got "
                                f"{short_repr(value)}")
        if problems:
            known = ", ".join(sorted(specs)) or "none"
            self.drops.drop(device_id, DropReason.BAD_SCHEMA,
                            f"meta parameters: {'; '.join(problems[:5])} (known: {known})")
            return
        window = self.store.windows[str(appliance)]
        if not given and device_id not in window.rows:
            return  # the defaults, which a row starts with: no row is allocated for a meta alone
        row = self._row(window, device_id)
        if row is not None:
            window.set_parameters(row, {name: float(value) for name, value in given.items()})

    def _event(self, device_id: str, payload: bytes) -> None:
        doc = decode_json_object(payload, self.limits)
        if isinstance(doc, Rejection):
            self.drops.drop(device_id, doc.reason, f"event: {doc.detail}")
            return
        code, now = doc.get("code"), self.clock.now()
        if not isinstance(code, str) or not 0 < len(code) <= MAX_CODE_LENGTH:
            self.drops.drop(device_id, DropReason.BAD_SCHEMA,
                            f"event needs a string 'code' of 1-{MAX_CODE_LENGTH} characters")
            return
        ts = checked_timestamp(doc.get("ts", now), now, self.limits)
        if isinstance(ts, Rejection):
            self.drops.drop(device_id, ts.reason, f"event: {ts.detail}")
            return
        if ts.restamped:
            self.drops.drop(device_id, ts.restamped.reason, f"event: {ts.restamped.detail}")
        event = DeviceEvent(device_id, ts.value, code, {k: v for k, v in doc.items() if k not in ("code", "ts")})
        log.info("appliance %s reported code %s", device_id, code)
        self._vendor_code(event, active=_is_active(doc.get("active", True)))
        if self.on_event is not None:
            self.on_event(event)

    def _vendor_code(self, event: DeviceEvent, active: bool) -> None:
        """A mapped code becomes a sample of its canonical fault's column; the rules take it from there."""
        device = self.registry.get(event.device_id)
        if self.vendor_codes is None:
            return
        if device is None or device.meta is None:
            self._wait_for_meta(event.device_id, (event, active))  # the brand says what the code means
            return
        column, ignored = self.vendor_codes.lookup(device.meta.brand, device.meta.appliance_type, event.code)
        if column is not None:
            self._sample(event.device_id, Sample(event.ts, device.meta.appliance_type, {column: float(active)}))
        elif ignored is not None:
            log.info("appliance %s: code %s is no fault (%s)", event.device_id, event.code, ignored)
        else:
            self.drops.drop(event.device_id, DropReason.UNKNOWN_VENDOR_CODE,
                            f"{device.meta.brand} {device.meta.appliance_type} code {event.code!r} is not in a table")


_CLEARED = {"false", "0", "no", "off", "cleared", "inactive", "resolved"}


def _is_active(value: object) -> bool:
    """An event's `active`: a code is cleared by false, 0, or a word that says so ("false", "off", "cleared")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() not in _CLEARED
    return True
