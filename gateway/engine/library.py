"""The rule library as the gateway runs it: profiles, price table, rule files and the built-in data-quality rules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config import GatewayConfig, resolve_path
from gateway.engine.data_quality import builtin_rules
from gateway.engine.profiles import OUT_OF_RANGE_METRIC, Profile, load_profiles
from gateway.engine.rules import Rule, RuleFileError, load_rules
from gateway.engine.vendor_codes import VendorCodes, load_vendor_codes, with_code_columns
from gateway.prices import PriceTable, load_prices
from gateway.store.window import WindowStore


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


def build_window_store(profiles: dict[str, Profile], slots: int | dict[str, int],
                       initial_devices: int = 64) -> WindowStore:
    """The window store the rules expect: a block per type, jump detection from the profiles' max_step, and the
    out-of-range column's arrivals recorded as events."""
    max_steps = {name: {m.name: m.max_step for m in p.metrics if m.max_step} for name, p in profiles.items()}
    sporadic = {name: (OUT_OF_RANGE_METRIC, *(m.name for m in p.metrics if m.sporadic)) for name, p in profiles.items()}
    return WindowStore({n: p.stored_names for n, p in profiles.items()}, slots, initial_devices, max_steps,
                       (OUT_OF_RANGE_METRIC,), sporadic, {n: p.interval_seconds for n, p in profiles.items()},
                       {n: p.silence_limit for n, p in profiles.items()}, {n: p.max_gap for n, p in profiles.items()},
                       {n: {q.name: q.default for q in p.parameters} for n, p in profiles.items()})
