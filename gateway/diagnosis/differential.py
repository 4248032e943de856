"""Differential diagnosis: the findings of every rule that fired on one appliance, merged into ranked candidates.

A finding is what one rule concluded (its diagnosis, the causes it proposes with their likelihoods and reasons,
and the causes the evidence ruled out). Candidates are scored by summing a cause's likelihood over the rules
that propose it, weighted by severity, then normalised: a cause several independent rules point to ranks first.
Each candidate says which rules support it; each ruled-out cause says what evidence excluded it.
"""

from __future__ import annotations

from typing import Any

SEVERITY_WEIGHT = {"critical": 1.5, "major": 1.0, "minor": 0.7, "info": 0.5}


def rank(findings: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(candidates best first, ruled-out causes)."""
    scores: dict[str, float] = {}
    reasons: dict[str, list[str]] = {}
    supporters: dict[str, list[str]] = {}
    ruled_out: dict[str, dict[str, Any]] = {}
    for finding in findings:
        weight = SEVERITY_WEIGHT.get(finding["severity"], 1.0)
        for excluded in finding.get("ruled_out", []):
            ruled_out.setdefault(excluded["cause"], {"cause": excluded["cause"], "because": [],
                                                     "rules": [], "metrics": []})
            entry = ruled_out[excluded["cause"]]
            for metric in excluded.get("metrics", []):  # findings of older versions name none
                if metric not in entry["metrics"]:
                    entry["metrics"].append(metric)
            if excluded["because"] not in entry["because"]:
                entry["because"].append(excluded["because"])
            if finding["rule"] not in entry["rules"]:
                entry["rules"].append(finding["rule"])
        for cause in finding["causes"]:
            name = cause["cause"]
            scores[name] = scores.get(name, 0.0) + cause["likelihood"] * weight
            reasons.setdefault(name, [])
            if cause["reason"] not in reasons[name]:
                reasons[name].append(cause["reason"])
            if finding["rule"] not in supporters.setdefault(name, []):  # a rule that fired twice supports once
                supporters[name].append(finding["rule"])
    for name in ruled_out:
        scores.pop(name, None)
    total = sum(scores.values()) or 1.0
    candidates = [
        {"cause": name, "likelihood": round(score / total, 3), "reason": " ".join(reasons[name]),
         "supported_by": supporters[name]}
        for name, score in sorted(scores.items(), key=lambda item: -item[1])
    ]
    return candidates, list(ruled_out.values())


def lead(findings: list[dict[str, Any]]) -> dict[str, Any]:
    """The finding that names the ticket: the most severe, then the earliest."""
    return min(findings, key=lambda f: (-SEVERITY_WEIGHT.get(f["severity"], 1.0), f["detected_ts"]))
