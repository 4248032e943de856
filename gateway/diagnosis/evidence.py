"""Freeze the telemetry around a fault's onset into the ticket, so nobody can invent or deny it later."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.engine.evaluator import AlertTransition
from gateway.store.window import SECONDS_BEFORE_ONSET, WindowSnapshot


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
            "ts": [round(t, 3) for t in window.ts.tolist()],  # Python's exact rounding: times name samples
            "metrics": dict(zip(window.metric_names, _numbers(window.values), strict=True)),
        }
    return evidence


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


def _numbers(values: npt.NDArray[Any]) -> list[Any]:
    """Readings as (nested) lists of numbers to 3 decimals, None for NaN: numpy for the whole window (a value
    at a time in Python cost 3 ms of the pipeline thread for a 900-sample ticket). numpy's rounding may differ
    from Python's in the last bit of a rare value, which a reading can take and a timestamp cannot."""
    rounded = np.round(values.astype(np.float64), 3).astype(object)
    rounded[np.isnan(values)] = None
    listed: list[Any] = rounded.tolist()
    return listed


def build_finding(transition: AlertTransition, evidence: dict[str, Any],
                  ruled_out: list[tuple[str, str, list[str]]]) -> dict[str, Any]:
    """What one rule concluded about one appliance, with its evidence; tickets are built from findings."""
    rule, diagnosis = transition.rule, transition.rule.diagnosis
    excluded = {cause for cause, _, _ in ruled_out}
    return {
        "rule": rule.rule_id,
        "code": diagnosis.code,
        "title": {"en": diagnosis.title_en, "zh": diagnosis.title_zh},
        "explanation": {"en": diagnosis.explanation_en, "zh": diagnosis.explanation_zh},
        "severity": diagnosis.severity,
        "category": diagnosis.category,
        "causes": [{"cause": c.cause, "likelihood": c.likelihood, "reason": c.reason}
                   for c in diagnosis.causes if c.cause not in excluded],
        "ruled_out": [{"cause": cause, "because": because, "metrics": metrics}
                      for cause, because, metrics in ruled_out],
        "checks": list(diagnosis.checks),
        "parts": list(diagnosis.parts),
        "service_items": list(diagnosis.service_items),
        "onset_ts": transition.onset_ts,
        "detected_ts": transition.at_ts,
        "evidence": evidence,
    }
