"""Runs every shipped rule test (rules/tests/*.test.yaml) and the broken-rule-file corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import PROJECT_ROOT, GatewayConfig
from gateway.engine.library import load_library
from gateway.engine.profiles import load_profiles
from gateway.engine.rules import parse_rule_file
from gateway.prices import load_prices
from gateway.ruletest import RuleTestError, expand, find_test_files, run_suite

PROFILES = load_profiles(PROJECT_ROOT / "rules" / "profiles")
PRICES = load_prices(PROJECT_ROOT / "rules" / "prices.yaml")
LIBRARY = load_library(GatewayConfig())


def load(rules: list[Path], profiles: tuple[Path, ...]):  # type: ignore[no-untyped-def]
    return load_library(GatewayConfig(), rules, profiles)


SUITE = run_suite(find_test_files([PROJECT_ROOT / "rules", PROJECT_ROOT / "rules" / "examples"]), LIBRARY, load,
                  whole_library=True)
CASES = SUITE.outcomes
BAD_FILES = sorted((PROJECT_ROOT / "tests" / "rule_files").glob("*.bad.yaml"))


@pytest.mark.parametrize("outcome", CASES, ids=[c.name for c in CASES])
def test_shipped_rule_case(outcome) -> None:  # type: ignore[no-untyped-def]
    assert outcome.passed, outcome.describe()


def test_every_rule_has_a_firing_case_and_a_near_miss_and_every_test_file_runs() -> None:
    assert SUITE.gaps == []
    assert SUITE.errors == []
    assert SUITE.ok


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


WASHER_RULE = """
groups:
  - name: w
    appliance: washer
    rules:
      - alert: {name}
        expr: vibration > 2
        diagnosis:
          code: T-1
          title: {{en: Shaky, zh: 抖动}}
          severity: minor
          causes: [{{cause: c, likelihood: 1.0, reason: r}}]
          service_items: [diagnosis_visit]
"""


def test_a_test_file_names_its_rule_files_and_each_rule_needs_a_firing_case_and_a_near_miss(tmp_path: Path) -> None:
    write(tmp_path, "shaky.yaml", WASHER_RULE.format(name="shaky"))
    tests = write(tmp_path, "shaky.test.yaml", """
rule_files: [shaky.yaml]
tests:
  - name: shakes
    appliance: washer
    series: {w1: {vibration: "3*3"}}
    expect: [{alert: shaky, device: w1, fires_at: 0s}]
""")
    result = run_suite([tests], LIBRARY, load)
    assert [o.passed for o in result.outcomes] == [True]
    assert len(result.gaps) == 1 and "rule 'shaky' has no near miss" in result.gaps[0]
    assert not result.ok
    tests.write_text(tests.read_text() + """
  - name: near miss
    appliance: washer
    covers: [shaky]
    series: {w1: {vibration: "2*3"}}
    expect: []
""")
    assert run_suite([tests], LIBRARY, load).ok


def test_a_malformed_test_file_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    good = PROJECT_ROOT / "rules" / "tests" / "washer.test.yaml"
    broken = [write(tmp_path, "a.test.yaml", "tests: [1, 2"),
              write(tmp_path, "b.test.yaml", "tests:\n  - {name: x, appliance: toaster}\n"),
              write(tmp_path, "c.test.yaml", "rule_files: [nowhere.yaml]\ntests: []\n"),
              write(tmp_path, "d.test.yaml",
                    "tests:\n  - {name: x, appliance: washer, series: {w: {vibration: '1*x'}}}\n"),
              write(tmp_path, "e.test.yaml", "rule_files: [broken.yaml]\ntests: []\n"),
              write(tmp_path, "f.test.yaml", "tests:\n  - {name: x, appliance: washer, series: {w: {vibration: '1'}},"
                                             " expect: [{alert: a, device: w, fires_at: soon}]}\n")]
    write(tmp_path, "broken.yaml", "groups: 3\n")
    result = run_suite([*broken, good], LIBRARY, load)
    errors = result.errors
    assert len(errors) == 6, errors
    assert "a.test.yaml: not valid YAML" in errors[0]
    assert "'appliance' must be one of" in errors[1]
    assert "nowhere.yaml, which does not exist" in errors[2]
    assert "bad repeat count in '1*x'" in errors[3] or "bad sample notation '1*x'" in errors[3]
    assert "do not load" in errors[4] and "broken.yaml:1" in errors[4]
    assert "fires_at must be a duration from the first sample" in errors[5]
    assert result.outcomes and all(o.passed for o in result.outcomes)  # washer.test.yaml still ran
    assert not result.ok


def test_a_malformed_case_does_not_raise() -> None:
    with pytest.raises(RuleTestError, match="bad sample notation"):
        expand("1..2..3")


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
