"""The rule library as the gateway runs it: profiles, price table, rule files and the built-in data-quality rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.config import GatewayConfig, resolve_path
from gateway.engine.data_quality import builtin_rules
from gateway.engine.profiles import OUT_OF_RANGE_METRIC, Profile, load_profiles
from gateway.engine.rules import Rule, RuleFileError, load_rules
from gateway.engine.vendor_codes import VendorCodes, load_vendor_codes, with_code_columns
from gateway.prices import PriceTable, load_prices
from gateway.store.window import SECONDS_BEFORE_ONSET, RingLayout, WindowStore, slots_spanning


@dataclass(frozen=True)
class Library:
    profiles: dict[str, Profile]
    prices: PriceTable
    rules: list[Rule]
    rule_paths: tuple[Path, ...]
    vendor_codes: VendorCodes


def load_library(config: GatewayConfig, rule_paths: list[Path] | None = None,
                 extra_profiles: tuple[Path, ...] = ()) -> Library:
    """Everything a rule needs, loaded and checked together; every error is reported, not the first.
    `rule_paths` replace the configured rule files; `extra_profiles` add appliance types (a rule author's new
    type, before it joins the configured profiles)."""
    profiles = load_profiles(resolve_path(config, config.rules.profiles, existing=True), *extra_profiles)
    vendor_codes = load_vendor_codes(resolve_path(config, config.rules.vendor_codes, existing=True), profiles)
    profiles = with_code_columns(profiles, vendor_codes)
    prices = load_prices(resolve_path(config, config.rules.prices, existing=True))
    paths = rule_paths or [resolve_path(config, p, existing=True) for p in config.rules.paths]
    rules = load_rules(paths, profiles, prices)
    builtin = [rule for profile in profiles.values() for rule in builtin_rules(profile)]
    clashes = {r.rule_id for r in rules} & {r.rule_id for r in builtin}
    if clashes:
        raise RuleFileError([f"rule name(s) {sorted(clashes)} are reserved for built-in data-quality rules"])
    return Library(profiles, prices, rules + builtin, tuple(paths), vendor_codes)


def build_window_store(profiles: dict[str, Profile], slots: int | Mapping[str, RingLayout],
                       initial_devices: int = 64) -> WindowStore:
    """The window store the rules expect: a block per type (`slots` for all, or a ring layout per type), jump
    detection from the profiles' max_step, and the out-of-range column's arrivals recorded as events."""
    max_steps = {name: {m.name: m.max_step for m in p.metrics if m.max_step} for name, p in profiles.items()}
    sporadic = {name: (OUT_OF_RANGE_METRIC, *(m.name for m in p.metrics if m.sporadic)) for name, p in profiles.items()}
    sizes = slots if isinstance(slots, int) else {n: layout.slots for n, layout in slots.items()}
    long_rings = {} if isinstance(slots, int) else {n: (layout.long_columns, layout.long_slots)
                                                    for n, layout in slots.items()}
    return WindowStore({n: p.stored_names for n, p in profiles.items()}, sizes, initial_devices, max_steps,
                       (OUT_OF_RANGE_METRIC,), sporadic, {n: p.interval_seconds for n, p in profiles.items()},
                       {n: p.silence_limit for n, p in profiles.items()}, {n: p.max_gap for n, p in profiles.items()},
                       {n: {q.name: q.default for q in p.parameters} for n, p in profiles.items()}, long_rings)


RECORDED_FOR_ABOVE = 60.0  # a rule with a longer `for` has its pending devices' samples recorded for its evidence


def window_layouts(profiles: dict[str, Profile], rules: list[Rule], minimum: int) -> dict[str, RingLayout]:
    """The ring layout of each appliance type for its rules (see layout_for); at least `minimum` slots."""
    return {name: layout_for([r for r in rules if r.appliance == name], profile, minimum)
            for name, profile in profiles.items()}


def layout_for(rules: list[Rule], profile: Profile, minimum: int) -> RingLayout:
    """The ring of every column spans a ticket's evidence (SECONDS_BEFORE_ONSET before the onset up to a
    detection at most RECORDED_FOR_ABOVE later; a slower rule's devices are recorded while it is pending) and
    the windows that fit in it. A column read over a longer window is kept that long in the long ring too; an
    expression read over one keeps every column its rule reads there. Sized for every column by the longest
    span one needed, a 1 Hz air conditioner kept 15 minutes of 21 columns for one compressor flag."""
    interval = profile.interval_seconds
    after_onset = max((r.for_seconds for r in rules if r.for_seconds <= RECORDED_FOR_ABOVE), default=0.0)
    slots = max(minimum, slots_spanning(SECONDS_BEFORE_ONSET + after_onset, interval))
    stored = set(profile.stored_names)
    formulas = {d.name: d.expr.metrics for d in profile.derived}
    long_columns: set[str] = set()
    long_slots = 0
    for rule in rules:
        for key, seconds in rule.expr.windows.items():
            needed = slots_spanning(seconds, interval)
            if needed <= slots:
                continue
            long_slots = max(long_slots, needed)
            read = {key} if key in stored else set(rule.expr.metrics)
            long_columns |= {c for name in read for c in ({name} if name in stored else formulas.get(name, ()))}
    ordered = tuple(c for c in profile.stored_names if c in long_columns)
    return RingLayout(slots, ordered, long_slots if ordered else 0)
