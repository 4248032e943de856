"""Warnings `rules check` gives about rules that load but cannot work as written."""

from __future__ import annotations

from gateway.engine.expr import CompiledExpr
from gateway.engine.profiles import Profile
from gateway.engine.rules import Rule


def impossible_comparisons(rules: list[Rule], profiles: dict[str, Profile]) -> list[str]:
    """Each `metric op literal` that no value within the metric's valid range satisfies: ingest drops values
    outside the range, so such a comparison is never true (a typo in a threshold, or a unit slip: 120 for 1.20)."""
    warnings = []
    for rule in rules:
        profile = profiles.get(rule.appliance)
        if profile is None:
            continue
        expressions: list[tuple[str, CompiledExpr]] = [("expr", rule.expr)]
        expressions += [("clear", rule.clear)] if rule.clear is not None else []
        expressions += [(f"unless of cause {e.cause}", e.expr) for e in rule.exclusions]
        for where, expr in expressions:
            for comparison in expr.comparisons:
                if comparison.bound is None:
                    continue
                metric, op, value = comparison.bound
                spec = profile.metric(metric)
                if spec is not None and _never(op, value, spec.low, spec.high):
                    warnings.append(f"{rule.source}: rule '{rule.rule_id}' {where}: '{comparison.text}' can never "
                                    f"hold: {metric} is valid from {spec.low:g} to {spec.high:g} {spec.unit}")
    return warnings


def _never(op: str, value: float, low: float, high: float) -> bool:
    return {
        ">": value >= high, ">=": value > high, "<": value <= low, "<=": value < low,
        "==": not low <= value <= high, "!=": low == high == value,
    }[op]
