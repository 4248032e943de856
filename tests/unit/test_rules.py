from pathlib import Path

import pytest

from gateway.config import PROJECT_ROOT
from gateway.engine.durations import parse_duration
from gateway.engine.profiles import ProfileError, load_profiles, parse_profile
from gateway.engine.rules import RuleFileError, load_rules, parse_rule_file

PROFILES = load_profiles(PROJECT_ROOT / "rules" / "profiles")

GOOD = """
groups:
  - name: g
    appliance: washer
    rules:
      - alert: too_much_vibration
        expr: vibration > 2 and drum_speed > 800
        for: 30s
        diagnosis:
          code: WM-VIB-01
          title: {en: Unbalanced drum, zh: 滚筒不平衡}
          severity: minor
          causes:
            - {cause: Load unbalanced, likelihood: 0.6, reason: Vibration only at high spin}
            - {cause: Worn shock absorbers, likelihood: 0.3, reason: Persists across loads}
"""


def test_shipped_library_loads_with_at_least_25_rules_across_five_types() -> None:
    from gateway.config import GatewayConfig
    from gateway.engine.library import load_library

    library = load_library(GatewayConfig())
    written = [r for r in library.rules if r.group != "builtin_data_quality"]
    assert len(written) >= 25
    assert {r.appliance for r in written} == {"air_conditioner", "refrigerator", "washer", "water_heater",
                                              "dishwasher"}
    assert {r.diagnosis.category for r in written} == {"fault", "maintenance", "data_quality"}


def test_good_rule_parses() -> None:
    rules, errors = parse_rule_file(GOOD, "good.yaml", PROFILES)
    assert errors == []
    [rule] = rules
    assert rule.for_seconds == 30
    assert rule.diagnosis.code == "WM-VIB-01"
    assert [c.cause for c in rule.diagnosis.causes] == ["Load unbalanced", "Worn shock absorbers"]
    assert rule.diagnosis.category == "fault"
    assert rule.source == "good.yaml:6"
    assert len(rule.version) == 12


def test_version_changes_with_the_rule_text() -> None:
    [a], _ = parse_rule_file(GOOD, "x.yaml", PROFILES)
    [b], _ = parse_rule_file(GOOD.replace("vibration > 2", "vibration > 3"), "x.yaml", PROFILES)
    assert a.version != b.version


def test_every_error_is_reported_with_file_line_group_and_rule() -> None:
    broken = (GOOD.replace("for: 30s", "for: soon\n        colour: red")
              .replace("drum_speed > 800", "drum_rpm > 800")
              .replace("severity: minor", "severity: awful"))
    rules, errors = parse_rule_file(broken, "broken.yaml", PROFILES)
    assert rules == []
    assert len(errors) == 4, errors
    text = "\n".join(errors)
    assert "broken.yaml:7: group 'g', rule 'too_much_vibration': bad expr: column 19: unknown metric 'drum_rpm'" in text
    assert "broken.yaml:8: group 'g', rule 'too_much_vibration': key 'for' must be a duration" in text
    assert "broken.yaml:9: group 'g', rule 'too_much_vibration': unknown key 'colour'" in text
    assert "broken.yaml:13: group 'g', rule 'too_much_vibration': diagnosis 'severity' must be one of" in text


def test_unknown_appliance_and_invalid_yaml() -> None:
    _, errors = parse_rule_file(GOOD.replace("appliance: washer", "appliance: toaster"), "t.yaml", PROFILES)
    assert any("t.yaml:4: group 'g': key 'appliance' must be one of" in e for e in errors)
    _, errors = parse_rule_file("groups: [\n", "y.yaml", PROFILES)
    assert errors and errors[0].startswith("y.yaml:") and "not valid YAML" in errors[0]


def test_likelihoods_must_not_exceed_one() -> None:
    _, errors = parse_rule_file(GOOD.replace("likelihood: 0.3", "likelihood: 0.6"), "l.yaml", PROFILES)
    assert any("add up to more than 1" in e for e in errors)


def test_duplicate_rule_names_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    with pytest.raises(RuleFileError) as info:
        load_rules([tmp_path], PROFILES)
    assert "already defined" in str(info.value)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25),
                                               (12, 12), ("0s", 0), ("soon", None), ("-5", None), (-1, None)])
def test_parse_duration(text: str | int, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_profile_errors_name_the_file_and_metric() -> None:
    with pytest.raises(ProfileError, match=r"p.yaml: metric 'x': key 'valid' must be \[low, high\]"):
        parse_profile({"appliance": "a", "interval_seconds": 1, "metrics": {"x": {"unit": "C", "valid": [5, 1]}}},
                      "p.yaml")
    # the type name travels to the platform, whose schema (docs/upstream-api.yaml) takes snake_case names
    with pytest.raises(ProfileError, match="snake_case type name"):
        parse_profile({"appliance": "Heat Pump", "interval_seconds": 1, "metrics": {}}, "p.yaml")


def test_a_metric_may_name_itself_in_chinese_and_its_states() -> None:
    base = {"appliance": "a", "interval_seconds": 1}
    profile = parse_profile({**base, "metrics": {"mode": {"unit": "enum", "valid": [0, 9], "zh": "运行模式",
                                                          "states": {0: "off", 3: "cool"}}}}, "p.yaml")
    assert profile.metrics[0].zh == "运行模式" and profile.metrics[0].states == ((0.0, "off"), (3.0, "cool"))
    # YAML reads a bare `off` as false: the message says to quote the names
    with pytest.raises(ProfileError, match="key 'states' must map values to names"):
        parse_profile({**base, "metrics": {"mode": {"unit": "enum", "valid": [0, 9], "states": {0: False}}}},
                      "p.yaml")


def test_profile_parameters_and_max_gap_are_checked() -> None:
    base = {"appliance": "a", "interval_seconds": 60, "metrics": {"x": {"unit": "degC", "valid": [0, 50]}}}
    profile = parse_profile({**base, "max_gap": "5m", "parameters": {
        "band": {"unit": "K", "default": 1.5, "valid": [0, 5], "description": "dead band"}}}, "p.yaml")
    assert profile.max_gap == 300.0 and profile.parameter_units() == {"band": "K"}
    assert parse_profile(base, "p.yaml").max_gap == profile.silence_limit  # default: the silence limit
    for parameters, message in (
            ({"band": {"default": 9, "valid": [0, 5]}}, "key 'default' must be a number within"),
            ({"band": {"unit": "K"}}, "is a mapping with default"),
            ({"x": {"default": 1}}, "has the name of a reported metric"),
            ({"Band": {"default": 1}}, "snake_case"),
            ({"band": {"default": True}}, "key 'default' must be a number")):
        with pytest.raises(ProfileError, match=message):
            parse_profile({**base, "parameters": parameters}, "p.yaml")
    with pytest.raises(ProfileError, match="key 'max_gap' must be a duration"):
        parse_profile({**base, "max_gap": "soon"}, "p.yaml")
