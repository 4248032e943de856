"""Runs every shipped rule test (rules/tests/*.test.yaml) and the broken-rule-file corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import PROJECT_ROOT, GatewayConfig
from gateway.engine.library import load_library
from gateway.engine.profiles import load_profiles
from gateway.engine.rules import parse_rule_file
from gateway.prices import load_prices
from gateway.ruletest import expand, find_test_files, run_file

PROFILES = load_profiles(PROJECT_ROOT / "rules" / "profiles")
PRICES = load_prices(PROJECT_ROOT / "rules" / "prices.yaml")
LIBRARY = load_library(GatewayConfig())
RULES = [r for r in LIBRARY.rules if r.group != "builtin_data_quality"]
CASES = [outcome for file in find_test_files([PROJECT_ROOT / "rules"])
         for outcome in run_file(file, LIBRARY)]
BAD_FILES = sorted((PROJECT_ROOT / "tests" / "rule_files").glob("*.bad.yaml"))


@pytest.mark.parametrize("outcome", CASES, ids=[c.name for c in CASES])
def test_shipped_rule_case(outcome) -> None:  # type: ignore[no-untyped-def]
    assert outcome.passed, outcome.describe()


@pytest.mark.parametrize("rule_id", [r.rule_id for r in RULES])
def test_every_rule_has_a_firing_case_and_a_near_miss(rule_id: str) -> None:
    assert any(c.fires(rule_id) for c in CASES), f"{rule_id}: no test case where it must fire"
    assert any(rule_id in c.covers and not c.fires(rule_id) for c in CASES), f"{rule_id}: no near-miss case"


def test_notation() -> None:
    assert expand("1*3 2..4*3 _ 7") == [1, 1, 1, 2, 3, 4, pytest.approx(float("nan"), nan_ok=True), 7]
    assert expand(5) == [5.0]


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.name for p in BAD_FILES])
def test_broken_rule_file_gives_its_message(path: Path) -> None:
    text = path.read_text()
    expected = [line.removeprefix("# expect: ").strip() for line in text.splitlines() if line.startswith("# expect: ")]
    assert expected, f"{path.name} must say which message it expects (# expect: ...)"
    _, errors = parse_rule_file(text, path.name, PROFILES, PRICES)
    for message in expected:
        assert any(message in error for error in errors), (message, errors)
    assert len(errors) == len(expected), errors
