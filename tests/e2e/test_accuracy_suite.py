"""The standard accuracy suite: every scenario in firmware_sim/scenarios run through a real gateway in replay
mode, scored against its ground truth, held to the suite's thresholds (recall >= 0.98, top-cause accuracy
>= 0.9, at most 1 false ticket per 1,000 appliance-days, no duplicates). The healthy fleet alone is 30
simulated days of 40 appliances; the suite runs on two processes and takes a few minutes."""

from __future__ import annotations

import pytest

from firmware_sim.scoring import format_report, meets
from gateway.accuracy_cli import STANDARD_SUITE, score_scenarios

pytestmark = pytest.mark.e2e


def test_the_standard_suite_meets_its_thresholds() -> None:
    paths = sorted(STANDARD_SUITE.glob("*.yaml"))
    assert len(paths) >= 4
    results = score_scenarios(paths, workers=2, parts=2)
    problems = {}
    for scenario, report, stats in results:
        print(format_report(report))
        assert stats["messages"] > 0
        assert report.tickets > 0 or scenario.name.startswith("healthy")
        if missing := meets(report):
            problems[scenario.name] = missing
    assert problems == {}
    names = {scenario.name for scenario, _, _ in results}
    assert {"healthy-30-days", "each-fault-alone", "faults-with-noise", "heavy-usage"} <= names
