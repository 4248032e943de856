from gateway.engine.lint import impossible_comparisons
from gateway.engine.rules import parse_rule_file
from tests.unit.helpers import PROFILES

RULE = """
groups:
  - name: g
    appliance: washer
    rules:
      - alert: a
        expr: {expr}
        diagnosis:
          code: T-1
          title: {{en: T, zh: T}}
          severity: minor
          causes: [{{cause: c, likelihood: 1.0, reason: r}}]
"""


def warnings(expr: str) -> list[str]:
    rules, errors = parse_rule_file(RULE.format(expr=expr), "x.yaml", PROFILES)
    assert errors == []
    return impossible_comparisons(rules, PROFILES)


def test_a_comparison_no_valid_value_satisfies_is_warned_about() -> None:
    # vibration is valid from 0 to 10 g, water_level from 0 to 100 percent
    [warning] = warnings("vibration > 12 and phase == 2")
    assert "x.yaml:6: rule 'a' expr: 'vibration > 12' can never hold: vibration is valid from 0 to 10 g" in warning
    assert len(warnings("water_level >= 100.5 or 120 < water_level or water_level < 0 or phase == 9")) == 4
    assert warnings("vibration >= 10 or water_level <= 0 or 3 > vibration or water_level != 200") == []
