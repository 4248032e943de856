"""Freeze the telemetry around a fault's onset into the ticket, so nobody can invent or deny it later."""

from __future__ import annotations

import math
from typing import Any

from gateway.engine.evaluator import AlertTransition
from gateway.store.window import WindowSnapshot

SECONDS_BEFORE_ONSET = 300.0


def build_evidence(transition: AlertTransition, snapshot: WindowSnapshot | None,
                   seconds_before: float = SECONDS_BEFORE_ONSET) -> dict[str, Any]:
    rule = transition.rule
    evidence: dict[str, Any] = {
        "rule": {"id": rule.rule_id, "version": rule.version, "expr": rule.expr.source,
                 "for_seconds": rule.for_seconds, "source": rule.source},
        "onset_ts": transition.onset_ts,
        "detected_ts": transition.at_ts,
        "observed": [
            {"quantity": o.quantity, "op": o.op, "threshold": _number(o.threshold), "value": _number(o.value)}
            for o in transition.observations
        ],
        "window": {"ts": [], "metrics": {}},
    }
    if snapshot is not None:
        window = snapshot.between(transition.onset_ts - seconds_before, transition.at_ts)
        evidence["window"] = {
            "ts": [round(float(t), 3) for t in window.ts],
            "metrics": {name: [_number(float(v)) for v in window.values[i]]
                        for i, name in enumerate(window.metric_names)},
        }
    return evidence


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)
