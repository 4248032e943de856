from typing import Any

from gateway.diagnosis.differential import lead, rank


def finding(rule: str, severity: str, causes: list[tuple[str, float]], ruled_out: list[tuple[str, str]] = (),
            detected: float = 0.0) -> dict[str, Any]:
    return {"rule": rule, "severity": severity, "detected_ts": detected,
            "causes": [{"cause": c, "likelihood": p, "reason": f"{rule} says {c}"} for c, p in causes],
            "ruled_out": [{"cause": c, "because": why} for c, why in ruled_out]}


def test_a_cause_several_rules_point_to_ranks_first() -> None:
    candidates, ruled_out = rank([
        finding("high_head", "major", [("fan motor", 0.5), ("dirty coil", 0.3)]),
        finding("hot_discharge", "major", [("undercharge", 0.5), ("fan motor", 0.4)]),
    ])
    assert [c["cause"] for c in candidates] == ["fan motor", "undercharge", "dirty coil"]
    assert candidates[0]["supported_by"] == ["high_head", "hot_discharge"]
    assert candidates[0]["reason"] == "high_head says fan motor hot_discharge says fan motor"
    assert abs(sum(c["likelihood"] for c in candidates) - 1.0) < 0.01
    assert ruled_out == []


def test_evidence_rules_an_alternative_out() -> None:
    candidates, ruled_out = rank([
        finding("hot_discharge", "major", [("undercharge", 0.5), ("fan motor", 0.4)],
                ruled_out=[("undercharge", "superheat is normal (6 K)")]),
    ])
    assert [c["cause"] for c in candidates] == ["fan motor"]
    assert candidates[0]["likelihood"] == 1.0
    assert ruled_out == [{"cause": "undercharge", "because": ["superheat is normal (6 K)"], "rules": ["hot_discharge"],
                          "metrics": []}]


def test_the_most_severe_finding_leads() -> None:
    findings = [finding("a", "minor", [("x", 1.0)], detected=1), finding("b", "critical", [("y", 1.0)], detected=5)]
    assert lead(findings)["rule"] == "b"
