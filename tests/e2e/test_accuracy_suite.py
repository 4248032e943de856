"""The accuracy suite: every scenario in firmware_sim/scenarios and the generated scenarios of the CI seeds
(fleets, brands, dialects, rates and faults drawn at random; firmware_sim/generate.py) run through a real
gateway in replay mode, scored against their ground truth, held to the thresholds (recall >= 0.98, top-cause
accuracy >= 0.9, precision >= 0.95, at most 1 false ticket per 1,000 appliance-days, no duplicates). It runs on
two processes and takes about ten minutes."""

from __future__ import annotations

import pytest

from firmware_sim.scoring import format_report, meets
from gateway.accuracy_cli import CI_SEEDS, STANDARD_SUITE, generated, score_scenarios

pytestmark = pytest.mark.e2e


def test_the_standard_suite_and_the_ci_seeds_meet_the_thresholds() -> None:
    paths: list[str] = [str(p) for p in sorted(STANDARD_SUITE.glob("*.yaml"))]
    assert len(paths) >= 4
    results = score_scenarios(paths + generated(CI_SEEDS), workers=2, parts=2)
    problems = {}
    for scenario, report, stats in results:
        print(format_report(report))
        assert stats["messages"] > 0
        assert report.tickets > 0 or report.expected == 0
        if missing := meets(report):
            problems[scenario.name] = missing
    assert problems == {}
    names = {scenario.name for scenario, _, _ in results}
    assert {"healthy-10-days", "each-fault-alone", "faults-with-noise", "heavy-usage"} <= names
    assert {f"generated-{seed}" for seed in CI_SEEDS} <= names
