"""Rule unit tests written as YAML beside the rules, in the spirit of Prometheus' `promtool test rules`.

    tests:
      - name: condenser fan fails
        appliance: air_conditioner
        interval: 1s
        series:                       # per device, per metric, in a compact notation
          ac1:
            compressor_on: "1*60"              # 60 samples of 1
            discharge_pressure: "2700*20 2700..4100*10 4100*30"   # a ramp over 10 samples
            indoor_coil_temperature: "_*60"    # missing
        covers: [condenser_airflow_loss]   # optional: the rules a near miss (expect: []) is about
        expect:                       # exactly these transitions, at these offsets from the first sample
          - {alert: condenser_airflow_loss, device: ac1, fires_at: 45s}
          - {alert: condenser_airflow_loss, device: ac1, resolves_at: 70s}

Anything that fires and is not expected fails the test, so a near-miss case is simply a test with `expect: []`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from gateway import yaml_input
from gateway.clock import FakeClock
from gateway.engine.durations import parse_duration
from gateway.engine.evaluator import AlertTransition, Transition
from gateway.engine.library import Library
from gateway.pipeline import Pipeline, PipelineSettings, slots_for
from gateway.protocol.topics import TopicKind, appliance_topic
from gateway.store.db import Database

BASE_TS = 1_700_000_000.0


class RuleTestError(Exception):
    """A rule test file is malformed."""


@dataclass(frozen=True)
class Outcome:
    name: str
    source: str
    passed: bool
    expected: list[str]
    got: list[str]
    covers: tuple[str, ...] = ()  # rules this case is about; a near miss names them, as nothing fires

    def fires(self, rule_id: str) -> bool:
        return any(e.startswith(f"{rule_id} on ") and " fires_at " in e for e in self.expected)

    def describe(self) -> str:
        if self.passed:
            return f"ok      {self.name}"
        missing = [e for e in self.expected if e not in self.got]
        unexpected = [g for g in self.got if g not in self.expected]
        return (f"FAILED  {self.name} ({self.source})\n"
                + "".join(f"          expected, did not happen: {m}\n" for m in missing)
                + "".join(f"          happened, not expected:   {u}\n" for u in unexpected)).rstrip()


def expand(notation: str | float | int) -> list[float]:
    """'1*3 2..4*3 _ 7' -> [1, 1, 1, 2, 3, 4, nan, 7]."""
    values: list[float] = []
    for token in str(notation).split():
        text, _, count_text = token.partition("*")
        count = int(count_text) if count_text else 1
        if count < 1:
            raise RuleTestError(f"bad repeat count in {token!r}")
        if text == "_":
            values.extend([math.nan] * count)
        elif ".." in text:
            start, end = (float(x) for x in text.split(".."))
            values.extend(np.linspace(start, end, count).tolist() if count > 1 else [end])
        else:
            values.extend([float(text)] * count)
    return values


def run_file(path: Path, library: Library) -> list[Outcome]:
    try:
        doc = yaml_input.load_file(path)
    except OSError as exc:
        raise RuleTestError(f"{path}: cannot read the rule test file: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RuleTestError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        raise RuleTestError(f"{path}: a rule test file is a mapping with a list under 'tests'")
    return [run_case(case, library, f"{path}#{i + 1}") for i, case in enumerate(doc["tests"])]


def run_case(case: dict[str, Any], library: Library, source: str) -> Outcome:
    """Play the series through the gateway's own Pipeline (ingest validation, live rule timing, inhibition by
    open incidents) and compare the incidents it opens and resolves with the expected ones."""
    profiles = library.profiles
    name = str(case.get("name", source))
    appliance = case.get("appliance")
    if appliance not in profiles:
        raise RuleTestError(f"{source}: 'appliance' must be one of {sorted(profiles)}")
    interval = parse_duration(case.get("interval", "1s"))
    if not interval:
        raise RuleTestError(f"{source}: 'interval' must be a duration")
    series = {device: {metric: expand(text) for metric, text in metrics.items()}
              for device, metrics in (case.get("series") or {}).items()}
    type_rules = [r for r in library.rules if r.appliance == appliance]
    known = {m.name for m in profiles[appliance].metrics}  # what an appliance can report
    for device, metrics in series.items():
        unknown = set(metrics) - known
        if unknown:
            raise RuleTestError(f"{source}: device {device}: unknown metric(s) {sorted(unknown)}")
    clock = FakeClock(BASE_TS)
    db = Database(":memory:")
    settings = PipelineSettings(site="rule-test", min_slots=slots_for(type_rules, interval, 64))
    pipeline = Pipeline(library, db, clock, settings, rules=type_rules)
    got: list[str] = []

    def account(found: list[AlertTransition], held: list[AlertTransition]) -> None:
        held_ids = {id(t) for t in held}
        for transition in found:
            if id(transition) in held_ids:
                continue  # held back by another open incident of the appliance: live opens nothing either
            verb = "fires_at" if transition.kind is Transition.FIRING else "resolves_at"
            got.append(_describe(transition.rule.rule_id, transition.device_id, verb, transition.at_ts - BASE_TS))

    pipeline.observers.append(account)
    steps = max((len(v) for m in series.values() for v in m.values()), default=0)
    try:
        for step in range(steps):
            ts = BASE_TS + step * interval
            clock.set(ts)
            for device, metrics in series.items():
                sample = {m: v[step] for m, v in metrics.items() if step < len(v) and not math.isnan(v[step])}
                if sample:
                    pipeline.feed(appliance_topic(device, TopicKind.TELEMETRY),
                                  orjson.dumps({"ts": ts, "type": appliance, "metrics": sample}))
            pipeline.evaluate()
            pipeline.tick(ts)
    finally:
        db.close()
    expected = [_describe(e["alert"], e["device"], verb, parse_duration(e[verb]) or 0.0)
                for e in case.get("expect") or [] for verb in ("fires_at", "resolves_at") if verb in e]
    covers = tuple(case.get("covers") or ()) + tuple(str(e["alert"]) for e in case.get("expect") or [])
    unknown_rules = set(covers) - {r.rule_id for r in type_rules}
    if unknown_rules:
        raise RuleTestError(f"{source}: 'covers' names unknown {appliance} rule(s) {sorted(unknown_rules)}")
    cadences = {r.rule_id: pipeline.evaluator.cadence_of(r.rule_id) for r in type_rules}
    slack = {rule_id: cadence + interval if cadence else 0.0 for rule_id, cadence in cadences.items()}
    return Outcome(name, source, _matches(expected, got, slack), expected, got, covers)


def _matches(expected: list[str], got: list[str], slack: dict[str, float]) -> bool:
    """Every expected transition happened, at its offset or at most one cadence later (live evaluates
    long-window rules once per cadence of each device's time), and nothing else happened."""
    remaining = list(got)
    for text in expected:
        alert, device, verb, offset = _parse(text)
        match = next((g for g in remaining if _parse(g)[:3] == (alert, device, verb)
                      and offset <= _parse(g)[3] <= offset + slack.get(alert, 0.0)), None)
        if match is None:
            return False
        remaining.remove(match)
    return not remaining


def _describe(alert: str, device: str, verb: str, offset: float) -> str:
    return f"{alert} on {device} {verb} {offset:g}s"


def _parse(text: str) -> tuple[str, str, str, float]:
    alert, _, device, verb, offset = text.split(" ")
    return alert, device, verb, float(offset.removesuffix("s"))


def find_test_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        folder = path / "tests" if (path / "tests").is_dir() else path
        files.extend(sorted(folder.glob("*.test.yaml")) if folder.is_dir() else [path])
    return files
