"""Small builders shared by the unit tests."""

from __future__ import annotations

from gateway.config import PROJECT_ROOT
from gateway.engine.profiles import Profile, load_profiles
from gateway.engine.rules import Rule, parse_rule_file

PROFILES: dict[str, Profile] = load_profiles(PROJECT_ROOT / "rules" / "profiles")


def washer_rule(expr: str = "vibration > 2", for_: str = "10s", keep: str = "0s", name: str = "shaky") -> Rule:
    text = f"""
groups:
  - name: test
    appliance: washer
    rules:
      - alert: {name}
        expr: {expr}
        for: {for_}
        keep_firing_for: {keep}
        diagnosis:
          code: T-1
          title: {{en: Shaky, zh: 抖动}}
          severity: minor
          causes: [{{cause: c, likelihood: 1.0, reason: r}}]
"""
    rules, errors = parse_rule_file(text, "test.yaml", PROFILES)
    assert not errors, errors
    return rules[0]
